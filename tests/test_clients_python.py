"""Issue 4: Python's imaplib, poplib and smtplib (contrib/python), STARTTLS ports, and the negative control."""

from __future__ import annotations

import base64
import imaplib
import poplib
import smtplib
import ssl
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import EMAIL
from tests.servers import drivers
from tests.servers.dovecot import Dovecot
from tests.servers.stack import LONG_TOKEN, MailStack


def _example() -> str:
    return (drivers.CONTRIB / "python" / "mailtoken_mail.py").read_text()


def test_python_example_imap_pop_smtp(mailstack: MailStack) -> None:
    env = mailstack.user("python")
    logins = drivers.python_example(mailstack, env, _example())
    assert {login.method for login in logins.values()} == {"XOAUTH2"}


def test_python_example_with_an_entra_sized_token(mailstack: MailStack) -> None:
    """imaplib, poplib and smtplib (initial_response_ok=False) all send the response on its own line."""
    env = mailstack.user("python-long", LONG_TOKEN)
    logins = drivers.python_example(mailstack, env, _example())
    assert set(logins) == {"imap", "pop3", "submission"}


def _raw(token: str) -> bytes:
    return f"user={EMAIL}\x01auth=Bearer {token}\x01\x01".encode()


def _ctx(stack: MailStack) -> ssl.SSLContext:
    return stack.tls.client_context()


def test_starttls_ports(mailstack: MailStack) -> None:
    """IMAP on the STARTTLS port and POP3 with STLS, with an Entra-sized token."""
    token = mailstack.token(mailstack.user("python-long", LONG_TOKEN))
    ports, mark = mailstack.server.ports, mailstack.server.mark()
    with imaplib.IMAP4("127.0.0.1", ports.imap, timeout=30) as imap:
        imap.starttls(ssl_context=_ctx(mailstack))
        imap.authenticate("XOAUTH2", lambda _challenge: _raw(token))
        assert imap.select("INBOX", readonly=True)[0] == "OK"
    pop = poplib.POP3("127.0.0.1", ports.pop3, timeout=30)
    pop.stls(context=_ctx(mailstack))
    pop._shortcmd("AUTH XOAUTH2")
    assert pop._shortcmd(base64.b64encode(_raw(token)).decode()).startswith(b"+OK")
    pop.quit()
    for service in ("imap", "pop3"):
        assert "TLS" in mailstack.server.wait_login(mark, service, EMAIL, "XOAUTH2").line


def _refused(servers: list[Dovecot], token: str, ctx: ssl.SSLContext) -> dict[str, str]:
    """Try TOKEN on IMAP, POP and SMTP, each on its own Dovecot and all at once (see spare_dovecots);
    return what each server answered."""
    raw = f"user={EMAIL}\x01auth=Bearer {token}\x01\x01".encode()
    imap_server, pop_server, smtp_server = servers

    def imap() -> str:
        with imaplib.IMAP4_SSL("127.0.0.1", imap_server.ports.imaps, ssl_context=ctx, timeout=30) as conn:
            sent: list[bytes] = []
            with pytest.raises(imaplib.IMAP4.error) as err:
                conn.authenticate("XOAUTH2", lambda ch: b"" if sent else (sent.append(raw) or raw))
            return str(err.value)

    def pop() -> str:
        conn = poplib.POP3_SSL("127.0.0.1", pop_server.ports.pop3s, context=ctx, timeout=30)
        try:
            conn._shortcmd("AUTH XOAUTH2")
            challenge = conn._shortcmd(base64.b64encode(raw).decode())
            assert not challenge.startswith(b"+OK")
            with pytest.raises(poplib.error_proto) as err:
                conn._shortcmd("")
            return str(err.value)
        finally:
            conn.quit()

    def submission() -> str:
        with smtplib.SMTP("127.0.0.1", smtp_server.ports.submission, timeout=30) as conn:
            conn.starttls(context=ctx)
            code, _ = conn.docmd("AUTH", "XOAUTH2")
            assert code == 334
            code, text = conn.docmd(base64.b64encode(raw).decode())
            if code == 334:
                code, text = conn.docmd("")
            return f"{code} {text.decode()}"

    with ThreadPoolExecutor(3) as pool:
        futures = {name: pool.submit(fn) for name, fn in (("imap", imap), ("pop3", pop), ("submission", submission))}
        return {name: future.result(timeout=60) for name, future in futures.items()}


def test_negative_control_made_up_token_is_refused(mailstack: MailStack) -> None:
    """The server really checks: a token the identity platform never issued fails on every protocol, after
    Dovecot asked the introspection endpoint each time (auth cache off)."""
    with mailstack.spare_dovecots("negative") as servers:
        before = mailstack.fake.counts["introspect"]
        marks = [server.mark() for server in servers]
        answers = _refused(servers, "made-up-" + "x" * 400, _ctx(mailstack))
        assert "Authentication failed" in answers["imap"], answers
        assert answers["pop3"].startswith("b'-ERR"), answers
        assert answers["submission"].startswith("535 "), answers
        assert mailstack.fake.counts["introspect"] - before == 3
        for server, mark, service in zip(servers, marks, ("imap", "pop3", "submission"), strict=True):
            assert server.logins(mark) == []
            assert server.wait_failed(mark, service).user == EMAIL
