"""What happens between a client's Login and its reply: local password, token, upstream XOAUTH2 sign-in.

Tokens come from the in-process token machinery (tokens.get), one asyncio.Lock per account so that many
sessions wait for one refresh; a new connection always gets a token with at least MIN_VALIDITY left
(Exchange's High Volume Email refuses tokens about to expire).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .. import errors
from ..config import Account
from ..errors import MailtokenError, SignInRequired
from .events import Authenticated, Failed, LoginResult, Send, StartTLS, UpstreamSide

if TYPE_CHECKING:
    from ..fast.record import Record
    from .passwords import Verifier

MIN_VALIDITY = 600
TOKEN_TIMEOUT = 30.0
UPSTREAM_TIMEOUT = 30.0
# After the upstream refused a token, fetch a new one at most this often per account (no refresh storms).
FORCE_INTERVAL = 300.0


class TokenSource:
    def __init__(self, config_path: str) -> None:
        self.config_path = config_path
        self._locks: dict[str, asyncio.Lock] = {}
        self._cache: dict[str, Record] = {}
        self._forced: dict[str, float] = {}

    async def get(self, acct: Account, *, refused: str | None = None) -> Record:
        """A record with >= MIN_VALIDITY left; with REFUSED (a token the upstream turned down) a newer one."""
        from .. import tokens
        from ..deadline import Deadline

        lock = self._locks.setdefault(acct.name, asyncio.Lock())
        async with lock:
            rec = self._cache.get(acct.name)
            if rec is not None and rec.expires - time.time() >= MIN_VALIDITY and rec.token != refused:
                return rec
            min_validity: float = MIN_VALIDITY
            if refused is not None and rec is not None and rec.token == refused:
                if time.monotonic() - self._forced.get(acct.name, -FORCE_INTERVAL) < FORCE_INTERVAL:
                    return rec
                self._forced[acct.name] = time.monotonic()
                min_validity = 10.0**9  # anything on disk is too short: ask the identity platform
            deadline = Deadline(TOKEN_TIMEOUT)
            rec = await asyncio.to_thread(tokens.get, acct, self.config_path, deadline, min_validity=min_validity)
            self._cache[acct.name] = rec
            return rec


@dataclass
class Upstream:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    pending: bytes
    capabilities: object


@dataclass
class Outcome:
    result: LoginResult
    text: str  # for the client
    log: str  # for stderr
    upstream: Upstream | None = None


class UpstreamFailed(Exception):
    def __init__(self, kind: str, text: str) -> None:
        super().__init__(text)
        self.kind, self.text = kind, text


async def sign_in(
    host: str,
    port: int,
    implicit: bool,
    machine: UpstreamSide,
    ctx: ssl.SSLContext,
    timeout: float = UPSTREAM_TIMEOUT,
) -> Upstream:
    """Connect and run an UpstreamSide machine to Authenticated; UpstreamFailed otherwise."""
    try:
        return await asyncio.wait_for(_sign_in(host, port, implicit, machine, ctx), timeout)
    except asyncio.TimeoutError:
        raise UpstreamFailed("temporary", f"upstream {host}:{port} did not answer within {timeout:g} s") from None


async def _sign_in(host: str, port: int, implicit: bool, machine: UpstreamSide, ctx: ssl.SSLContext) -> Upstream:
    where = f"{host}:{port}"
    try:
        reader, writer = await asyncio.open_connection(
            host, port, ssl=ctx if implicit else None, server_hostname=host if implicit else None
        )
    except ssl.SSLError as exc:
        raise UpstreamFailed("temporary", f"TLS with upstream {where} failed: {_ssl_reason(exc)}") from None
    except OSError as exc:
        raise UpstreamFailed("temporary", f"cannot connect to upstream {where}: {exc.strerror or exc}") from None
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                raise UpstreamFailed("temporary", f"upstream {where} closed the connection during sign-in")
            for event in machine.receive(data):
                if isinstance(event, Send):
                    writer.write(event.data)
                elif isinstance(event, StartTLS):
                    await writer.drain()
                    try:
                        await writer.start_tls(ctx, server_hostname=host)
                    except ssl.SSLError as exc:
                        why = _ssl_reason(exc)
                        raise UpstreamFailed("temporary", f"TLS with upstream {where} failed: {why}") from None
                elif isinstance(event, Authenticated):
                    await writer.drain()
                    return Upstream(reader, writer, event.pending, machine.capabilities)
                elif isinstance(event, Failed):
                    raise UpstreamFailed(event.kind, event.text)
            await writer.drain()
    except BaseException as exc:
        writer.close()
        if isinstance(exc, (ConnectionError, OSError)) and not isinstance(exc, ssl.SSLError):
            raise UpstreamFailed("temporary", f"upstream {where} broke the connection: {exc.strerror or exc}") from None
        if isinstance(exc, ssl.SSLError):
            raise UpstreamFailed("temporary", f"TLS with upstream {where} failed: {_ssl_reason(exc)}") from None
        raise


def _ssl_reason(exc: ssl.SSLError) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verify failed ({exc.verify_message}): check SSL_CERT_FILE or the upstream host name"
    return exc.reason or type(exc).__name__


def login_names(acct: Account) -> dict[str, str]:
    """Lower-cased login name -> the address as the config spells it (the XOAUTH2 user upstream)."""
    return {a.lower(): a for a in (acct.email, *acct.shared)}


async def check_password(
    acct: Account, user: str, password: str, source: str, verifier: Verifier
) -> tuple[str, str] | Outcome:
    """(the address logged in as, the device) for a good local password; the failure's Outcome otherwise."""
    address = login_names(acct).get(user.lower())
    device: str | None = None
    try:
        if address is not None:
            device = await verifier.check(acct.name, password)
    except MailtokenError as exc:  # the password file became unreadable or unsafe: say so, keep serving
        return Outcome("temporary", "the bridge cannot check passwords now", errors.one_line(exc.message))
    if address is None or device is None:
        delay = verifier.failed(source)
        await asyncio.sleep(delay)
        why = "not an address of the account" if address is None else "wrong password"
        return Outcome("bad_password", "", f"login {user!r} failed ({why}; next failure waits longer)")
    verifier.succeeded(source)
    return address, device


async def login(
    acct: Account,
    user: str,
    password: str,
    source: str,
    verifier: Verifier,
    token_source: TokenSource,
    connect: Callable[[str, str], Awaitable[Upstream]],
    notify: Callable[[Account, str], None],
) -> Outcome:
    """Check the local password, get a token, sign in upstream. CONNECT(user, token) is a coroutine → Upstream."""
    checked = await check_password(acct, user, password, source, verifier)
    if isinstance(checked, Outcome):
        return checked
    address, device = checked
    signin = f"sign-in required: run 'mailtoken login {acct.name}'"
    refused: str | None = None
    last = "the server refused the account's token"
    for _attempt in range(2):
        try:
            rec = await token_source.get(acct, refused=refused)
        except SignInRequired as exc:
            notify(acct, exc.message)
            return Outcome("signin_required", signin, f"login {address} (device {device}): {exc.message}")
        except MailtokenError as exc:
            text = "temporary failure getting a token: try again later"
            return Outcome("temporary", text, f"login {address} (device {device}): {errors.one_line(exc.message)}")
        if refused is not None and rec.token == refused:
            break  # no newer token to try (one forced refresh per FORCE_INTERVAL)
        try:
            up = await connect(address, rec.token)
        except UpstreamFailed as exc:
            if exc.kind == "auth":
                last = exc.text
                if refused is None:
                    refused = rec.token  # revoked early, or expired there: one more try with a new token
                    continue
                break
            advice = f"; run 'mailtoken test {acct.name}' to see why" if exc.kind == "protocol" else ""
            return Outcome("temporary", exc.text, f"login {address} (device {device}): {exc.text}{advice}")
        return Outcome("ok", "", f"login {address} (device {device}) ok, upstream signed in", up)
    return Outcome(
        "bad_password", last, f"login {address} (device {device}): {last}; run 'mailtoken test {acct.name}' to see why"
    )
