"""Programs that sync, fetch or filter mail: mbsync, offlineimap3, getmail6 and imapfilter."""

from __future__ import annotations

from ..quoting import ini_interpolated, ini_raw, lua, mbsyncrc, python
from .base import Target, _header


def mbsync(t: Target) -> str:
    a = t.name
    return _header(t, "mbsync") + (
        "# ~/.mbsyncrc. Needs the Cyrus SASL XOAUTH2 plugin: libsasl2-modules-kdexoauth2 on Debian and Ubuntu.\n"
        "# PassCmd runs at every login, so a long-running mbsync always sends a fresh token.\n"
        f"# First: mkdir -p ~/Mail/{a}\n"
        f"IMAPAccount {a}\n"
        f"Host {t.imap.host}\n"
        f"Port {t.imap.port}\n"
        f"User {mbsyncrc(t.email)}\n"
        f"PassCmd {mbsyncrc(t.command())}\n"
        "AuthMechs XOAUTH2\n"
        "SSLType IMAPS\n"
        "\n"
        f"IMAPStore {a}-remote\n"
        f"Account {a}\n"
        "\n"
        f"MaildirStore {a}-local\n"
        f"Path ~/Mail/{a}/\n"
        f"Inbox ~/Mail/{a}/INBOX\n"
        "SubFolders Verbatim\n"
        "\n"
        f"Channel {a}\n"
        f"Far :{a}-remote:\n"
        f"Near :{a}-local:\n"
        "Patterns *\n"
        "Create Near\n"
        "SyncState *\n"
    )


def offlineimap3(t: Target) -> str:
    a, q = t.name, ini_interpolated
    return _header(t, "offlineimap3") + (
        "# ~/.offlineimaprc. The pythonfile is mailtoken's hook: it defines token() and fresh_token().\n"
        "# offlineimap interpolates values: a % in them is written %%.\n"
        "[general]\n"
        f"accounts = {a}\n"
        f"pythonfile = {q(t.hook)}\n"
        "\n"
        f"[Account {a}]\n"
        f"localrepository = {a}-local\n"
        f"remoterepository = {a}-remote\n"
        "\n"
        f"[Repository {a}-local]\n"
        "type = Maildir\n"
        f"localfolders = ~/Mail/{a}\n"
        "\n"
        f"[Repository {a}-remote]\n"
        "type = IMAP\n"
        f"remotehost = {q(t.imap.host)}\n"
        f"remoteport = {t.imap.port}\n"
        f"remoteuser = {q(t.email)}\n"
        "ssl = yes\n"
        "sslcacertfile = OS-DEFAULT\n"
        "auth_mechanisms = XOAUTH2\n"
        "# offlineimap3 evaluates this once per run; fresh_token() asks mailtoken again at every login, so\n"
        "# autorefresh mode keeps working past the first token's expiry (token() returns a plain str instead).\n"
        "# helper= is used when offlineimap's Python cannot import mailtoken's dependencies.\n"
        f"oauth2_access_token_eval = {q(f'fresh_token({python(t.account)}, helper={python(t.helper)})')}\n"
    )


def getmail6(t: Target) -> str:
    a, q = t.name, ini_raw
    command = ", ".join(python(arg) for arg in t.argv())
    return _header(t, "getmail6") + (
        f"# ~/.config/getmail/{a}.getmailrc, run with: getmail --rcfile {a}.getmailrc\n"
        "# IMAP only: getmail6 6.18 has XOAUTH2 for IMAP retrievers; POP3 XOAUTH2 arrives in 6.19.04.\n"
        f"# First: mkdir -p ~/Mail/{a}/cur ~/Mail/{a}/new ~/Mail/{a}/tmp\n"
        "[retriever]\n"
        "type = SimpleIMAPSSLRetriever\n"
        f"server = {q(t.imap.host)}\n"
        f"port = {t.imap.port}\n"
        f"username = {q(t.email)}\n"
        "use_xoauth2 = True\n"
        f"password_command = ({command})\n"
        'mailboxes = ("INBOX",)\n'
        "\n"
        "[destination]\n"
        "type = Maildir\n"
        f"path = ~/Mail/{a}/\n"
        "\n"
        "[options]\n"
        "read_all = false\n"
        "delete = false\n"
    )


def imapfilter(t: Target) -> str:
    fn = f"mailtoken_{t.ident}"
    return _header(t, "imapfilter", "--") + (
        "-- ~/.imapfilter/config.lua, run with: imapfilter (add -t /etc/ssl/certs: it ignores SSL_CERT_FILE).\n"
        "-- Refuse a certificate nothing vouches for (by default imapfilter offers to store it) and check names.\n"
        "options.certificates = false\n"
        "options.hostnames = true\n"
        "options.timeout = 60\n"
        "\n"
        "-- The XOAUTH2 string from mailtoken, read anew at every call. io.popen, not pipe_from(): pipe_from keeps\n"
        "-- the newline, which would end the AUTHENTICATE line early.\n"
        "function mailtoken_xoauth2(command)\n"
        "  local pipe = io.popen(command)\n"
        '  local line = pipe:read("*l")\n'
        "  local ok = pipe:close()\n"
        '  if not ok or not line or line == "" then\n'
        '    error("mailtoken failed (" .. command .. "): not logging in", 0)\n'
        "  end\n"
        "  return line\n"
        "end\n"
        "\n"
        "-- A new connection with a fresh token each call: an account made once at the top of the file keeps\n"
        "-- its first token, which a become_daemon loop outlives (the next login after an hour fails).\n"
        f"function {fn}()\n"
        "  return IMAP {\n"
        f"    server = {lua(t.imap.host)},\n"
        f"    port = {t.imap.port},\n"
        f"    username = {lua(t.email)},\n"
        f"    oauth2 = mailtoken_xoauth2({lua(t.command('xoauth2'))}),\n"
        '    ssl = "auto",\n'
        "  }\n"
        "end\n"
        "\n"
        "-- Runs rules(account) every INTERVAL seconds as a daemon, logging in afresh each round; a failed round\n"
        "-- (offline, sign-in needed) is reported and the next one tries again.\n"
        "function mailtoken_daemon(interval, connect, rules)\n"
        "  become_daemon(interval, function()\n"
        "    local ok, err = pcall(function()\n"
        "      local account = connect()\n"
        "      rules(account)\n"
        "      account:logout()\n"
        "    end)\n"
        '    if not ok then print("mailtoken_daemon: " .. tostring(err)) end\n'
        "  end)\n"
        "end\n"
        "\n"
        "-- Your rules, for example:\n"
        "-- local function rules(account)\n"
        '--   account.INBOX:contain_from("boss@example.org"):copy_messages(account["Important"])\n'
        "-- end\n"
        f"-- rules({fn}())                      -- once\n"
        f"-- mailtoken_daemon(300, {fn}, rules)  -- every 5 minutes\n"
    )
