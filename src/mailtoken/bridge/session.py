"""One client connection of the bridge: local TLS, the protocol machine until login, the sign-in, the splice.

Driven by server.py, which accepts the connection (allow-list, limits) and owns the listener's state.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import sys
import time
from typing import TYPE_CHECKING

from .. import errors
from ..config import Account
from ..errors import ConfigError
from . import auth, graph_session
from .config import GRAPH
from .events import ClientSide, Close, Event, Login, Send, Splice, StartTLS

if TYPE_CHECKING:
    from .server import Bridge, ListenerState

PRE_LOGIN_LIMIT = 300.0  # seconds from connect to login, however busy the client keeps the line
MAX_LINE = 8192
CHUNK = 256 * 1024


def log(line: str) -> None:
    try:
        sys.stderr.write(f"mailtoken serve: {errors.one_line(line)}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


class Session:
    def __init__(
        self,
        bridge: Bridge,
        state: ListenerState,
        tag: str,
        ip: str,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.bridge, self.state, self.tag, self.ip = bridge, state, tag, ip
        self.reader, self.writer = reader, writer
        self.upstream: auth.Upstream | None = None
        self.up_bytes = self.down_bytes = 0
        self.started = time.monotonic()
        self.outcome = "before login"
        self.messages = 0  # submitted with Graph (upstream = "graph")

    def note(self, text: str) -> None:
        log(f"{self.tag}: {text}")

    def summary(self) -> str:
        sent = f"{self.messages} message(s) sent with Graph; " if self.state.listener.upstream == GRAPH else ""
        return (
            f"{self.outcome}; {sent}client->upstream {self.up_bytes} bytes, upstream->client {self.down_bytes} "
            f"bytes, {time.monotonic() - self.started:.1f} s"
        )

    def close(self) -> None:
        for w in (self.writer, self.upstream.writer if self.upstream else None):
            if w is not None:
                with contextlib.suppress(Exception):
                    w.close()

    def _tls_context(self) -> ssl.SSLContext:
        ctx = self.state.local_ctx
        if ctx is None:  # server.py makes one for every listener whose local_tls is not "none"
            raise ConfigError(f"{self.state.listener.name}: local TLS without a certificate")
        return ctx

    async def run(self) -> None:
        lst = self.state.listener
        log(f"{self.tag}: connect")
        if lst.local_tls == "implicit":
            try:
                await self.writer.start_tls(self._tls_context(), ssl_handshake_timeout=lst.idle_timeout)
            except (ssl.SSLError, OSError, asyncio.TimeoutError) as exc:
                self.outcome = f"TLS handshake failed ({_reason(exc)})"
                return
        kwargs: dict[str, object] = {
            "capabilities": self.state.capabilities,
            "tls_active": lst.local_tls == "implicit",
            "starttls_available": lst.local_tls == "starttls",
            "max_line": MAX_LINE,
        }
        if lst.protocol != "smtp" and lst.local_tls == "starttls":
            kwargs["require_tls"] = True  # no password in clear where TLS is on offer
        machine = self.state.machines.client(**kwargs)
        events = list(machine.greeting())
        while True:
            while events:
                event = events.pop(0)
                if isinstance(event, Send):
                    self.writer.write(event.data)
                elif isinstance(event, StartTLS):
                    await self.writer.drain()
                    try:
                        await self.writer.start_tls(self._tls_context(), ssl_handshake_timeout=lst.idle_timeout)
                    except (ssl.SSLError, OSError, asyncio.TimeoutError) as exc:
                        self.outcome = f"STARTTLS failed ({_reason(exc)})"
                        return
                elif isinstance(event, Login):
                    events[:0] = await self._login(machine, event)
                elif isinstance(event, Splice):
                    await self._splice(event.pending)
                    return
                elif isinstance(event, Close):
                    with contextlib.suppress(OSError):
                        await self.writer.drain()
                    return
            task = asyncio.current_task()
            try:
                await self.writer.drain()
                if self.bridge.stopping.is_set():
                    self.outcome = "closed by shutdown before login"
                    return
                if task is not None:
                    self.bridge.idle.add(task)
                # Silence ends a session after idle_timeout; a trickle (a byte a minute) after PRE_LOGIN_LIMIT.
                left = self.started + max(PRE_LOGIN_LIMIT, lst.idle_timeout) - time.monotonic()
                if left <= 0:
                    self.outcome = f"no login within {max(PRE_LOGIN_LIMIT, lst.idle_timeout):g} s"
                    return
                data = await asyncio.wait_for(self.reader.read(65536), min(lst.idle_timeout, left))
            except asyncio.CancelledError:
                if not self.bridge.stopping.is_set():
                    raise
                self.outcome = "closed by shutdown before login"
                return
            except asyncio.TimeoutError:
                limit = max(PRE_LOGIN_LIMIT, lst.idle_timeout)
                late = time.monotonic() - self.started >= limit
                self.outcome = f"no login within {limit:g} s" if late else f"idle for {lst.idle_timeout} s before login"
                return
            except (ConnectionError, OSError, ssl.SSLError) as exc:
                self.outcome = f"client connection broke before login ({_reason(exc)})"
                return
            finally:
                if task is not None:
                    self.bridge.idle.discard(task)
            if not data:
                self.outcome = "client left before login" if self.outcome == "before login" else self.outcome
                return
            events = list(machine.receive(data))

    async def _login(self, machine: ClientSide, event: Login) -> list[Event]:
        state, bridge = self.state, self.bridge
        host, port, mode = state.upstream

        async def connect(user: str, token: str) -> auth.Upstream:
            up_machine = state.machines.upstream(user=user, token=token, starttls=mode == "starttls")
            return await auth.sign_in(host, port, mode == "implicit", up_machine, bridge.upstream_ctx)

        async def notify(acct: Account, message: str) -> None:
            from .. import notify as notices

            with contextlib.suppress(Exception):
                await asyncio.to_thread(notices.signin_required, acct, message)

        def fire(acct: Account, message: str) -> None:
            bridge._spawn(state, notify(acct, message))

        if state.listener.upstream == GRAPH:
            outcome = await graph_session.login(
                state.account, event.user, event.password, self.ip, bridge.verifier, bridge.graph_tokens, fire
            )
        else:
            outcome = await auth.login(
                state.account, event.user, event.password, self.ip, bridge.verifier, bridge.tokens, connect, fire
            )
        log(f"{self.tag}: {outcome.log}")
        self.outcome = "authenticated" if outcome.result == "ok" else f"login {outcome.result}"
        if outcome.upstream is not None:
            self.upstream = outcome.upstream
            if outcome.upstream.capabilities:
                state.capabilities = outcome.upstream.capabilities
        return list(machine.login_done(outcome.result, outcome.text))

    async def _splice(self, pending: bytes) -> None:
        if self.state.listener.upstream == GRAPH:
            await graph_session.take_messages(self, pending)  # the bridge itself is the upstream
            return
        up = self.upstream
        if up is None:  # a machine asked to splice without a login: a bug, never a relay without sign-in
            raise ConfigError("splice without an upstream")
        if up.pending:
            self.writer.write(up.pending)
            self.down_bytes += len(up.pending)
        if pending:
            up.writer.write(pending)
            self.up_bytes += len(pending)
        await asyncio.gather(self.writer.drain(), up.writer.drain())
        for w in (self.writer, up.writer):
            # Deeper write buffers: fewer pauses per megabyte when one side is TLS and the other is not.
            with contextlib.suppress(AttributeError, NotImplementedError):
                w.transport.set_write_buffer_limits(high=4 * CHUNK)
        upward = asyncio.ensure_future(self._pump(self.reader, up.writer, "up"))
        downward = asyncio.ensure_future(self._pump(up.reader, self.writer, "down"))
        try:
            done, _ = await asyncio.wait({upward, downward}, return_when=asyncio.FIRST_COMPLETED)
            if downward in done:
                upward.cancel()  # the server is gone: nothing the client sends can go anywhere
            else:
                # The client finished sending: let the server's last replies through, briefly.
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(asyncio.shield(downward), 10)
                downward.cancel()
        finally:
            for task in (upward, downward):
                task.cancel()
            await asyncio.gather(upward, downward, return_exceptions=True)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, direction: str) -> None:
        try:
            while data := await reader.read(CHUNK):
                writer.write(data)
                if direction == "up":
                    self.up_bytes += len(data)
                else:
                    self.down_bytes += len(data)
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()
        except (ConnectionError, OSError, ssl.SSLError):
            pass


def _reason(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    if isinstance(exc, ssl.SSLError):
        return exc.reason or type(exc).__name__
    return getattr(exc, "strerror", None) or type(exc).__name__
