"""Mail user agents: mutt, neomutt, aerc and s-nail."""

from __future__ import annotations

from ..quoting import aerc as aerc_value
from ..quoting import muttrc, sh
from .base import Target, _header


def _mutt_common(t: Target) -> str:
    q = muttrc
    return (
        "# Single quotes: mutt expands backticks and $VARIABLES inside double quotes, never inside single ones.\n"
        f"set from = {q(t.email)}\n"
        f"set folder = {q(f'imaps://{t.url_user}@{t.imap}/')}\n"
        "set spoolfile = '+INBOX'\n"
        "set postponed = '+Drafts'\n"
        "# No Fcc: batch mode (mutt -s ... < body) cannot Fcc to IMAP. Interactively: set record = '+Sent Items'\n"
        "unset record\n"
        "# XOAUTH2, not OAUTHBEARER: Exchange Online offers only XOAUTH2, and its tokens are too long for\n"
        "# (neo)mutt's OAUTHBEARER buffer (about 510 characters).\n"
        "set imap_authenticators = 'xoauth2'\n"
        f"set imap_oauth_refresh_command = {q(t.command())}\n"
        f"set smtp_url = {q(f'smtp://{t.url_user}@{t.smtp}/')}\n"
        "set smtp_authenticators = 'xoauth2'\n"
        f"set smtp_oauth_refresh_command = {q(t.command())}\n"
        "set ssl_force_tls = yes\n"
        "set ssl_starttls = yes\n"
    )


def neomutt(t: Target) -> str:
    return (
        _header(t, "neomutt")
        + "# ~/.config/neomutt/neomuttrc. NeoMutt runs the command at every connection.\n"
        + _mutt_common(t)
        + "# POP: NeoMutt 20220429 (Debian 12) has no XOAUTH2 for POP, and its OAUTHBEARER takes tokens of\n"
        + "# at most about 510 characters (Microsoft's are longer): use IMAP, or mutt 2.x for POP.\n"
    )


def mutt(t: Target) -> str:
    return (
        _header(t, "mutt")
        + "# ~/.muttrc (mutt 2.0 or later for XOAUTH2). mutt runs the command at every connection.\n"
        + _mutt_common(t)
        + '# POP (mutt -f "$pop_host", or <fetch-mail>):\n'
        + f"set pop_host = {muttrc(f'pops://{t.url_user}@{t.pop}/')}\n"
        + "set pop_authenticators = 'xoauth2'\n"
        + f"set pop_oauth_refresh_command = {muttrc(t.command())}\n"
    )


def aerc(t: Target) -> str:
    v = aerc_value
    return _header(t, "aerc") + (
        "# ~/.config/aerc/accounts.conf (mode 0600).\n"
        "# aerc 0.14 runs source-cred-cmd once, when it starts: restart aerc within the token's lifetime\n"
        "# (about an hour). outgoing-cred-cmd-cache = false asks mailtoken at every send.\n"
        f"[{t.name}]\n"
        f"source = {v(f'imaps+xoauth2://{t.url_user}@{t.imap}')}\n"
        f"source-cred-cmd = {v(t.command())}\n"
        f"outgoing = {v(f'smtp+xoauth2://{t.url_user}@{t.smtp}')}\n"
        "# yes, not true: aerc 0.14 takes only yes here.\n"
        "smtp-starttls = yes\n"
        f"outgoing-cred-cmd = {v(t.command())}\n"
        "outgoing-cred-cmd-cache = false\n"
        f"from = {v(t.email)}\n"
        "default = INBOX\n"
    )


def s_nail(t: Target) -> str:
    a, macro = t.name, f"mailtoken-{t.ident}"
    return _header(t, "s-nail") + (
        "# ~/.mailrc (as root, s-nail ignores $HOME: point MAILRC at this file), then: s-nail -A ACCOUNT.\n"
        "# s-nail's quoting follows sh. It has no xoauth2 keyword: its 'oauthbearer' sends XOAUTH2.\n"
        "set v15-compat\n"
        "# Certificates are checked, never asked about (the default, 'ask', offers to accept any).\n"
        "set tls-verify=strict\n"
        "# The token is the password: this macro asks mailtoken for it before every command and before each\n"
        "# message is composed. When mailtoken fails it leaves no password and quits with 77, so s-nail\n"
        "# never logs in with an empty one (on a terminal it asks for a password instead: press Ctrl-C).\n"
        f"define {macro} {{\n"
        f"  vput ! password {t.command()}\n"
        "  if $? -ne 0\n"
        "    unset password\n"
        f"    echoerr {sh(f'mailtoken: no token for {t.account}; not logging in (see the line above)')}\n"
        "    xit 77\n"
        "  endif\n"
        '  vput csop password trim "$password"\n'
        "}\n"
        f"account {sh(a)} {{\n"
        f"  set from={sh(t.email)}\n"
        f"  set folder={sh(f'imaps://{t.url_user}@{t.imap}')}\n"
        "  set inbox=+INBOX\n"
        "  set imap-auth=oauthbearer\n"
        f"  set mta={sh(f'submission://{t.url_user}@{t.smtp}')}\n"
        "  set smtp-use-starttls smtp-auth=oauthbearer\n"
        "  # In scripts: an error (a failed send) is then the exit status.\n"
        "  set sendwait\n"
        f"  set on-main-loop-tick={macro} on-compose-enter={macro}\n"
        "}\n"
    )
