"""msmtp and mpop (one author, one config syntax) and the curl shell snippet."""

from __future__ import annotations

from ..quoting import msmtprc, sh_always
from .base import Target, _header

# msmtp's `from` treats these as patterns (%U user, %H host, %C canonical host, %M mail name; ? * [ globs),
# with no escape: an address holding one cannot be written there.
_MSMTP_FROM_PATTERNS = ("%U", "%H", "%C", "%M", "?", "*", "[")


def msmtp(t: Target) -> str:
    if any(p in t.email for p in _MSMTP_FROM_PATTERNS):
        sender = (
            "# No `from`: msmtp would read %U %H %C %M ? * [ in this address as patterns; give the sender with\n"
            "# msmtp -f ADDRESS, or let msmtp take it from the message (msmtp -t --read-envelope-from).\n"
        )
    else:
        sender = f"from {msmtprc(t.email)}\n"
    return _header(t, "msmtp") + (
        "# ~/.msmtprc (mode 0600). msmtp keeps only passwordeval's first line and ignores its exit status.\n"
        f"account {msmtprc(t.name)}\n"
        f"host {msmtprc(t.smtp.host)}\n"
        f"port {t.smtp.port}\n"
        "tls on\n"
        "tls_starttls on\n"
        "tls_trust_file system\n"
        "# XOAUTH2: every provider offers it (Exchange Online has no OAUTHBEARER).\n"
        "auth xoauth2\n"
        f"user {msmtprc(t.email)}\n"
        f"{sender}"
        f"passwordeval {msmtprc(t.command())}\n"
    )


def mpop(t: Target) -> str:
    a = t.name
    return _header(t, "mpop") + (
        "# ~/.mpoprc (mode 0600), run with: mpop ACCOUNT. mpop keeps only passwordeval's first line.\n"
        f"# First: mkdir -p ~/Mail/{a}/cur ~/Mail/{a}/new ~/Mail/{a}/tmp (mpop does not create the maildir)\n"
        f"account {msmtprc(a)}\n"
        f"host {msmtprc(t.pop.host)}\n"
        f"port {t.pop.port}\n"
        "# POP3S: TLS from the first byte (port 995), no STLS.\n"
        "tls on\n"
        "tls_starttls off\n"
        "tls_trust_file system\n"
        "# XOAUTH2 (mpop 1.4.11 or later); mpop sends Exchange Online's two-step AUTH XOAUTH2 itself.\n"
        "auth xoauth2\n"
        f"user {msmtprc(t.email)}\n"
        f"passwordeval {msmtprc(t.command())}\n"
        "# Without keep, mpop deletes every message it fetched from the server.\n"
        "keep on\n"
        "# By name, not mpop's default ~/.mpop_uidls/%U_at_%H: the address would become part of a path.\n"
        f"uidls_file {msmtprc(f'~/.mpop_uidls/{a}')}\n"
        f"delivery maildir {msmtprc(f'~/Mail/{a}')}\n"
    )


def curl(t: Target) -> str:
    fn = "curl_" + t.ident
    return _header(t, "curl") + (
        "# A shell function: source this file, then call it with a URL and curl options.\n"
        "# The token reaches curl on stdin (--config -), never on its command line, where ps would show it.\n"
        f"{fn}() {{\n"
        "    local _mt_token  # a separate line: `local x=$(cmd)` would hide cmd's exit status\n"
        f"    _mt_token=$({t.command()}) || return\n"
        f'    printf \'oauth2-bearer = "%s"\\n\' "$_mt_token" |\n'
        f'        curl --silent --show-error --config - --user {sh_always(t.email)} --ssl-reqd "$@"\n'
        "}\n"
        "# Examples:\n"
        f"#   {fn} {sh_always(f'imaps://{t.imap}/INBOX?ALL')}\n"
        f"#   {fn} {sh_always(f'imaps://{t.imap}/INBOX;UID=1')}\n"
        f"#   {fn} {sh_always(f'pop3s://{t.pop}/1')}\n"
        f"#   {fn} {sh_always(f'smtp://{t.smtp}')} --mail-from {sh_always(t.email)} --mail-rcpt 'bob@example.org'"
        " --upload-file message.eml\n"
    )
