#!/usr/bin/env python3
"""Python's imaplib, poplib and smtplib signing in with a mailtoken account (SASL XOAUTH2). Stdlib only.

    python3 mailtoken_mail.py work alice@contoso.com                      # IMAP and POP: count INBOX
    python3 mailtoken_mail.py work alice@contoso.com --send bob@example.org --subject "Hello"

Each connection asks `mailtoken token ACCOUNT` (a cached token costs a file read), so long-running code
never holds a stale token. The SASL responses go on their own lines: no line-length limit is hit by the
2,500-character tokens Microsoft issues.
"""

from __future__ import annotations

import argparse
import base64
import imaplib
import poplib
import smtplib
import ssl
import subprocess
from email.message import EmailMessage

IMAP = ("outlook.office365.com", 993)
POP = ("outlook.office365.com", 995)
SMTP = ("smtp.office365.com", 587)
TIMEOUT = 60


def token(account: str) -> str:
    result = subprocess.run(
        ["mailtoken", "token", account], capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    if result.returncode != 0:
        raise SystemExit(result.stderr.strip() or f"mailtoken exited with {result.returncode}")
    return result.stdout.strip()


def xoauth2(user: str, access_token: str) -> str:
    """The unencoded XOAUTH2 string: imaplib and smtplib base64-encode it themselves."""
    return f"user={user}\x01auth=Bearer {access_token}\x01\x01"


def imap_inbox(account: str, user: str) -> int:
    """Sign in over IMAPS and return how many messages INBOX holds."""
    sent = []

    def respond(challenge: bytes) -> bytes:
        # First the XOAUTH2 string; after a refusal the server sends an error challenge: answer empty.
        if sent:
            return b""
        sent.append(True)
        return xoauth2(user, token(account)).encode()

    with imaplib.IMAP4_SSL(*IMAP, ssl_context=ssl.create_default_context(), timeout=TIMEOUT) as imap:
        imap.authenticate("XOAUTH2", respond)
        _typ, data = imap.select("INBOX", readonly=True)
        return int(data[0])


def pop_stat(account: str, user: str) -> int:
    """Sign in over POP3S and return how many messages the mailbox holds."""
    pop = poplib.POP3_SSL(*POP, context=ssl.create_default_context(), timeout=TIMEOUT)
    try:
        # poplib has no AUTH command: send it by hand, the response on its own line (POP lines are short).
        pop._shortcmd("AUTH XOAUTH2")
        reply = pop._shortcmd(base64.b64encode(xoauth2(user, token(account)).encode()).decode())
        if not reply.startswith(b"+OK"):
            pop._shortcmd("")  # answer the error challenge; raises poplib.error_proto with the server's reply
        return pop.stat()[0]
    finally:
        pop.quit()


def smtp_send(account: str, user: str, to: str, subject: str) -> None:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = user, to, subject
    msg.set_content("Sent with Python's smtplib and a mailtoken access token.\n")
    sent = []

    def respond(challenge: bytes | None = None) -> str:
        # As for IMAP: the string first, an empty answer to an error challenge.
        if sent:
            return ""
        sent.append(True)
        return xoauth2(user, token(account))

    with smtplib.SMTP(*SMTP, timeout=TIMEOUT) as smtp:
        smtp.starttls(context=ssl.create_default_context())
        # initial_response_ok=False: the response goes on its own line, clear of servers' 1 KB AUTH-line limits.
        smtp.auth("XOAUTH2", respond, initial_response_ok=False)
        smtp.send_message(msg)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("account", help="mailtoken account name")
    parser.add_argument("user", help="mailbox address (user= in XOAUTH2)")
    parser.add_argument("--send", metavar="RCPT", help="also send a test message to RCPT over SMTP")
    parser.add_argument("--subject", default="mailtoken test")
    args = parser.parse_args()
    print(f"IMAP INBOX: {imap_inbox(args.account, args.user)} messages")
    print(f"POP: {pop_stat(args.account, args.user)} messages")
    if args.send:
        smtp_send(args.account, args.user, args.send, args.subject)
        print(f"SMTP: sent to {args.send}")


if __name__ == "__main__":
    main()
