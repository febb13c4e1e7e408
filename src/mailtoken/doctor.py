"""`mailtoken test ACCOUNT`: sign in to the mail servers with the account's token, and explain what went wrong.

For each protocol it really authenticates (XOAUTH2, the response on a continuation line so long tokens fit
every server's line limit), then does one harmless command that only works on a connected mailbox: IMAP
`LIST` + `SELECT INBOX` (Exchange answers "authenticated but not connected" there), POP `STAT`, and for SMTP
nothing (no mail is sent). One line per protocol: the server's reply and, on failure, a diagnosis.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import re
import ssl
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import errors
from .config import Account
from .diagnosis import LABEL, Claims, diagnose
from .fast import sasl

PROTOCOLS = ("imap", "pop", "smtp")
# scheme -> implicit TLS?  Plain schemes mean STARTTLS: a bearer token never crosses the wire in clear text.
SCHEMES = {
    "imap": {"imaps": True, "imap": False},
    "pop": {"pop3s": True, "pops": True, "pop3": False, "pop": False},
    "smtp": {"smtps": True, "smtp": False, "submission": False},
}
DEFAULT_PORTS = {"imap": 993, "pop": 995, "smtp": 587}
IMPLICIT_TLS_PORTS = frozenset({993, 995, 465})
# The delegated permission each protocol needs in the token (Exchange Online).
MAX_REPLY = 240


@dataclass(frozen=True)
class Server:
    protocol: str
    host: str
    port: int
    implicit_tls: bool

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass
class Result:
    server: Server
    ok: bool
    reply: str
    detail: str = ""  # on success: what the follow-up command showed; on failure: the diagnosis
    exit_code: int = errors.EX_OK

    def line(self) -> str:
        head = f"{LABEL[self.server.protocol]:<4} {self.server!s:<28} {'ok' if self.ok else 'FAILED'}"
        reply = f'"{self.reply}"' if self.reply else "(no reply)"
        return f"{head}: {reply}" + (f": {self.detail}" if self.detail else "")


# --- which servers ------------------------------------------------------------------------------------------


def servers(acct: Account, wanted: dict[str, str | None], host: str | None) -> list[Server]:
    """The servers to try: the provider's unless a URL (or --host) overrides them."""
    from . import clientconf

    defaults = clientconf.target(acct, helper=clientconf.CONTRIB_HELPER, hook="-")
    chosen = [p for p in PROTOCOLS if wanted.get(p) is not None] or list(PROTOCOLS)
    result = []
    for proto in chosen:
        default = getattr(defaults, proto)
        spec = wanted.get(proto) or ""
        result.append(parse_server(proto, spec, host or default.host, default.port))
    return result


def parse_server(protocol: str, spec: str, default_host: str, default_port: int) -> Server:
    scheme, sep, rest = spec.partition("://")
    if not sep:
        scheme, rest = "", spec
    if scheme and scheme.lower() not in SCHEMES[protocol]:
        known = ", ".join(f"{s}://" for s in SCHEMES[protocol])
        raise errors.UsageError(f"--{protocol}: '{scheme}://' is not a {LABEL[protocol]} URL scheme (use {known})")
    rest = rest.strip("/")
    host, port = default_host, default_port
    if rest:
        match = re.fullmatch(r"\[?([^\]]*?)\]?(?::(\d+))?", rest)
        if not match or not match.group(1):
            raise errors.UsageError(f"--{protocol}: '{spec}' is not HOST, HOST:PORT or a URL like imaps://HOST:PORT")
        host = match.group(1)
        port = int(match.group(2)) if match.group(2) else (DEFAULT_PORTS[protocol] if scheme else default_port)
    implicit = SCHEMES[protocol][scheme.lower()] if scheme else port in IMPLICIT_TLS_PORTS
    return Server(protocol, host, port, implicit)


# --- the checks --------------------------------------------------------------------------------------------


class _Failed(Exception):
    """A check's end: the stage it reached and what the server said."""

    def __init__(self, stage: str, reply: str) -> None:
        super().__init__(stage)
        self.stage = stage  # connect, tls, mechs, auth, mailbox
        self.reply = reply


def _clean(text: Any) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    text = " ".join(str(text).split())
    return str(text) if len(text) <= MAX_REPLY else text[: MAX_REPLY - 3] + "..."


def _challenge(data: bytes | str) -> str:
    """A server's SASL error challenge, decoded (Dovecot sends JSON like {"status":"invalid_token"})."""
    raw = data.encode() if isinstance(data, str) else data
    try:
        return _clean(base64.b64decode(raw.strip(), validate=True))
    except (binascii.Error, ValueError):
        return _clean(raw)


def _imap_error(exc: Exception) -> str:
    # imaplib: "SELECT command error: BAD [b'User is authenticated but not connected.']"
    text = str(exc)
    match = re.search(r"error: (\w+) \[b['\"](.*)['\"]\]$", text)
    return _clean(f"{match.group(1)} {match.group(2)}" if match else text)


def check_imap(server: Server, user: str, token: str, ctx: ssl.SSLContext, timeout: float) -> tuple[str, str]:
    import imaplib

    try:
        conn: imaplib.IMAP4
        if server.implicit_tls:
            conn = imaplib.IMAP4_SSL(server.host, server.port, ssl_context=ctx, timeout=timeout)
        else:
            conn = imaplib.IMAP4(server.host, server.port, timeout=timeout)
    except OSError as exc:
        raise _Failed(_net_stage(exc), _clean(exc)) from None
    try:
        if not server.implicit_tls:
            try:
                conn.starttls(ssl_context=ctx)
            except OSError as exc:
                raise _Failed("tls", _clean(exc)) from None
            except conn.error as exc:
                raise _Failed("tls", _imap_error(exc)) from None
        mechs = [c[5:] for c in conn.capabilities if c.upper().startswith("AUTH=")]
        if "XOAUTH2" not in (m.upper() for m in mechs):
            raise _Failed("mechs", "CAPABILITY " + " ".join(conn.capabilities))
        challenges: list[str] = []
        first = [sasl.xoauth2_raw(user, token).encode()]

        def answer(challenge: bytes) -> bytes:
            if first:
                return first.pop()
            challenges.append(_challenge(base64.b64encode(challenge)))
            return b""  # RFC 7628: an empty response ends a failed exchange

        try:
            _typ, data = conn.authenticate("XOAUTH2", answer)
        except conn.error as exc:
            reply = _imap_error(exc)
            raise _Failed("auth", f"{reply} ({challenges[-1]})" if challenges else reply) from None
        auth_reply = _clean(b" ".join(d for d in data if isinstance(d, bytes)))  # type: ignore[misc]
        try:
            conn.list('""', "INBOX")
            _typ, count = conn.select("INBOX", readonly=True)
        except conn.error as exc:
            raise _Failed("mailbox", _imap_error(exc)) from None
        return auth_reply, f"INBOX holds {_clean(count[0])} messages"
    finally:
        with contextlib.suppress(OSError, imaplib.IMAP4.error):
            conn.logout()


def check_pop(server: Server, user: str, token: str, ctx: ssl.SSLContext, timeout: float) -> tuple[str, str]:
    import poplib

    try:
        conn: Any
        if server.implicit_tls:
            conn = poplib.POP3_SSL(server.host, server.port, timeout=timeout, context=ctx)
        else:
            conn = poplib.POP3(server.host, server.port, timeout=timeout)
    except (OSError, poplib.error_proto) as exc:
        raise _Failed(_net_stage(exc), _clean(exc)) from None
    try:
        if not server.implicit_tls:
            try:
                conn.stls(context=ctx)
            except (OSError, poplib.error_proto) as exc:
                raise _Failed("tls", _clean(exc)) from None
        # poplib has no AUTH: _shortcmd is the documented-by-use way (the response goes on its own line, which
        # keeps a 2,500-character token clear of POP's 512-byte command limit).
        stage = "mechs"  # until the server takes AUTH XOAUTH2, a refusal means it lacks the mechanism
        try:
            reply = conn._shortcmd("AUTH XOAUTH2")
            if reply.startswith(b"+OK"):
                raise _Failed("mechs", _clean(reply))
            stage = "auth"
            reply = conn._shortcmd(sasl.xoauth2(user, token))
            if not reply.startswith(b"+OK"):
                challenge = _challenge(reply[1:])
                try:
                    reply = conn._shortcmd("")
                except poplib.error_proto as exc:
                    raise _Failed("auth", f"{_clean(exc.args[0])} ({challenge})") from None
        except poplib.error_proto as exc:
            raise _Failed(stage, _clean(exc.args[0] if exc.args else exc)) from None
        try:
            count, size = conn.stat()
        except poplib.error_proto as exc:
            raise _Failed("mailbox", _clean(exc.args[0] if exc.args else exc)) from None
        return _clean(reply), f"STAT: {count} messages"
    finally:
        with contextlib.suppress(OSError, poplib.error_proto):
            conn.quit()


def check_smtp(server: Server, user: str, token: str, ctx: ssl.SSLContext, timeout: float) -> tuple[str, str]:
    import smtplib

    try:
        # local_hostname: smtplib would otherwise ask reverse DNS (getfqdn), which can stall for seconds.
        conn: smtplib.SMTP
        if server.implicit_tls:
            conn = smtplib.SMTP_SSL(server.host, server.port, "localhost", timeout=timeout, context=ctx)
        else:
            conn = smtplib.SMTP(server.host, server.port, "localhost", timeout=timeout)
    except (OSError, smtplib.SMTPException) as exc:
        raise _Failed(_net_stage(exc), _clean(exc)) from None
    try:
        conn.ehlo()
        if not server.implicit_tls:
            try:
                conn.starttls(context=ctx)
            except (OSError, smtplib.SMTPException) as exc:
                raise _Failed("tls", _clean(exc)) from None
            conn.ehlo()
        offered = conn.esmtp_features.get("auth", "").upper().split()
        if "XOAUTH2" not in offered:
            raise _Failed("mechs", f"EHLO AUTH {' '.join(offered)}" if offered else "EHLO offers no AUTH")
        # docmd, not auth(): the response on its own line, as Dovecot limits the AUTH line to 1 KB.
        code, text = conn.docmd("AUTH", "XOAUTH2")
        if code == 334:
            code, text = conn.docmd(sasl.xoauth2(user, token))
        if code == 334:
            challenge = _challenge(text)
            code, text = conn.docmd("")
            text = f"{text.decode('utf-8', 'replace')} ({challenge})".encode()
        reply = _clean(f"{code} {text.decode('utf-8', 'replace')}")
        if code != 235:
            raise _Failed("auth", reply)
        return reply, "no mail sent"
    except smtplib.SMTPServerDisconnected as exc:
        raise _Failed("connect", _clean(exc)) from None
    finally:
        with contextlib.suppress(OSError, smtplib.SMTPException):
            conn.quit()


CHECKS: dict[str, Callable[..., tuple[str, str]]] = {"imap": check_imap, "pop": check_pop, "smtp": check_smtp}


def _net_stage(exc: BaseException) -> str:
    import ssl

    return "tls" if isinstance(exc, ssl.SSLError) else "connect"


# --- the command --------------------------------------------------------------------------------------------


def ssl_context(cafile: str | None) -> ssl.SSLContext:
    if cafile is not None:
        try:
            return ssl.create_default_context(cafile=cafile)
        except (OSError, ssl.SSLError) as exc:
            raise errors.ConfigError(f"--cafile {cafile}: cannot be loaded ({exc})") from None
    import truststore

    # The operating system's trust store, as for every HTTPS call (providers/http.py).
    return truststore.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


def check(
    server: Server, user: str, token: str, claims: Claims, ctx: ssl.SSLContext, timeout: float, account: str
) -> Result:
    try:
        reply, detail = CHECKS[server.protocol](server, user, token, ctx, timeout)
    except _Failed as failure:
        diagnosis, code = diagnose(server.protocol, str(server), failure.stage, failure.reply, user, claims, account)
        return Result(server, False, failure.reply, diagnosis, code)
    except (OSError, EOFError) as exc:  # a connection lost mid-way
        diagnosis, code = diagnose(server.protocol, str(server), _net_stage(exc), "", user, claims, account)
        return Result(server, False, _clean(exc) or type(exc).__name__, diagnosis, code)
    return Result(server, True, reply, detail)


def run(
    acct: Account,
    config_path: str,
    wanted: dict[str, str | None],
    *,
    host: str | None,
    user: str | None,
    cafile: str | None,
    timeout: float,
    emit: Callable[[str], None],
) -> int:
    from . import tokens
    from .deadline import Deadline

    plan = servers(acct, wanted, host)
    ctx = ssl_context(cafile)
    deadline = Deadline(timeout)
    with deadline.enforced(acct.name):
        rec = tokens.get(acct, config_path, deadline)
    mailbox = user or rec.user
    claims = Claims.of(rec.token)
    left = max(0, int(rec.expires - time.time()))
    emit(f"token {acct.name}: sign-in {rec.user}, valid for {left // 60} min, {claims.summary()}")
    from concurrent.futures import ThreadPoolExecutor

    # All servers at once (each sign-in can take seconds at Exchange), the lines still in protocol order.
    results = []
    with ThreadPoolExecutor(max_workers=len(plan)) as pool:
        futures = [pool.submit(check, s, mailbox, rec.token, claims, ctx, timeout, acct.name) for s in plan]
        for future in futures:
            result = future.result()
            emit(result.line())
            results.append(result)
    failed = [r for r in results if not r.ok]
    if failed:
        names = ", ".join(LABEL[r.server.protocol] for r in failed)
        # stderr too: the report may be going to a file or a pipe.
        print(f"mailtoken: {acct.name}: {names} failed (see the lines above)", file=sys.stderr, flush=True)
    return errors.most_severe({r.exit_code for r in failed})
