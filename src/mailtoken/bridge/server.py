"""`mailtoken serve`: asyncio listeners that speak each protocol until login, then splice to the upstream.

Per connection: the allow-list at accept (others are dropped before a byte is sent), the per-listener limit,
local TLS (STARTTLS or implicit), the protocol machine (pure, in smtp.py/imap.py/pop3.py) until Login, the
sign-in (auth.py), then two byte pumps. One stderr line per event, never a secret. SIGTERM/SIGINT: stop
accepting, give open sessions DRAIN seconds, exit 0. NOTIFY_SOCKET gets READY=1 and STOPPING=1.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import itertools
import os
import signal
import socket
import ssl
import sys
import time
from dataclasses import dataclass, field

from .. import errors
from ..config import Account, Config
from ..errors import ConfigError, TemporaryFailure
from . import auth, tls
from .config import Listener, upstream_of
from .events import Close, Login, Send, Splice, StartTLS
from .passwords import Verifier

DRAIN = 10.0
PRE_LOGIN_LIMIT = 300.0  # seconds from connect to login, however busy the client keeps the line
MAX_LINE = 8192
CHUNK = 256 * 1024
MODULES = {"smtp": "smtp", "imap": "imap", "pop3": "pop3"}


def log(line: str) -> None:
    try:
        sys.stderr.write(f"mailtoken serve: {errors.one_line(line)}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def sd_notify(message: str) -> None:
    """systemd's notify protocol (sd_notify(3)): one datagram to $NOTIFY_SOCKET; nothing without it."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address or address[0] not in "/@":
        return
    target = "\0" + address[1:] if address[0] == "@" else address
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(target)
        sock.sendall(message.encode())


@dataclass
class ListenerState:
    listener: Listener
    account: Account
    upstream: tuple[str, int, str]
    module: object
    local_ctx: ssl.SSLContext | None
    capabilities: object = None
    active: int = 0
    tasks: set = field(default_factory=set)


def _peer(writer: asyncio.StreamWriter) -> tuple[str, str]:
    peer = writer.get_extra_info("peername") or ("?", 0)
    host = str(peer[0])
    return host, (f"[{host}]:{peer[1]}" if ":" in host else f"{host}:{peer[1]}")


class Bridge:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.verifier = Verifier()
        self.tokens = auth.TokenSource(cfg.path)
        self.upstream_ctx = tls.upstream_context()
        self.states = [self._prepare(lst) for lst in cfg.serve]
        self.ids = itertools.count(1)
        self.stopping = asyncio.Event()
        self.idle: set[asyncio.Task] = set()  # sessions waiting for a client's command before login

    def _prepare(self, lst: Listener) -> ListenerState:
        acct = self.cfg.account(lst.account)
        upstream = upstream_of(lst, acct)
        ctx = None
        if lst.local_tls != "none":
            cert, key = lst.cert, lst.key
            if cert is None or key is None:
                cert, key, missing = tls.ensure_self_signed([lst.host])
                if missing:
                    log(
                        f"{lst.name}: the generated certificate {cert} does not name {', '.join(missing)}: "
                        "delete it and its key to make a new one"
                    )
            ctx = tls.local_context(cert, key, f"{self.cfg.path}: [[serve]] #{lst.index} ({lst.protocol})")
        module = importlib.import_module(f"{__package__}.{MODULES[lst.protocol]}")
        caps = getattr(module, "DEFAULT_CAPABILITIES", None)
        return ListenerState(lst, acct, upstream, module, ctx, caps)

    # -- lifecycle -----------------------------------------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        servers = []
        for state in self.states:
            lst = state.listener
            try:
                server = await asyncio.start_server(
                    lambda r, w, s=state: self._accept(s, r, w), lst.host, lst.port, backlog=512, limit=CHUNK
                )
            except OSError as exc:
                for s in servers:
                    s.close()
                raise TemporaryFailure(f"{lst.name}: cannot listen ({exc.strerror or exc})") from None
            servers.append(server)
            host, port, mode = state.upstream
            log(
                f"{lst.name}: listening (account {lst.account}, upstream {host}:{port} {mode}, local TLS "
                f"{lst.local_tls})"
            )
            if "probe_only" in inspect.signature(state.module.UpstreamSide).parameters:
                self._spawn(state, self._probe(state))
        devices = self.verifier.devices()  # a broken or unsafe password file stops the bridge here (69/78)
        for state in self.states:
            if not any(d.account == state.account.name for d in devices.values()):
                log(
                    f"{state.listener.name}: no device password for account {state.account.name} yet: "
                    f"make one with 'mailtoken serve passwd NAME --account {state.account.name}'"
                )
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        sd_notify("READY=1")
        await self.stopping.wait()
        sd_notify("STOPPING=1")
        for server in servers:
            server.close()
        for task in list(self.idle):
            task.cancel()  # waiting for a client's next pre-login command: nothing to finish
        tasks = {t for s in self.states for t in s.tasks}
        log(f"stopping: {len(tasks)} open session(s), waiting up to {DRAIN:g} s")
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=DRAIN)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=2)
        log("stopped")
        return 0

    def _spawn(self, state: ListenerState, coro) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        state.tasks.add(task)
        task.add_done_callback(state.tasks.discard)
        return task

    async def _probe(self, state: ListenerState) -> None:
        """Learn what the upstream offers (SMTP EHLO, POP3 CAPA, after TLS) before the first client asks."""
        host, port, mode = state.upstream
        machine = state.module.UpstreamSide(user="", token="", starttls=mode == "starttls", probe_only=True)
        try:
            up = await auth.sign_in(host, port, mode == "implicit", machine, self.upstream_ctx, timeout=15)
        except auth.UpstreamFailed as exc:
            log(f"{state.listener.name}: upstream probe: {exc.text}")
            return
        if state.capabilities in (None, [], ()):
            state.capabilities = up.capabilities
        up.writer.close()

    # -- one connection ------------------------------------------------------------------------------------

    async def _accept(self, state: ListenerState, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        lst = state.listener
        ip, peer = _peer(writer)
        tag = f"{lst.name} #{next(self.ids)} {peer}"
        if not lst.allows(ip):
            log(f"{tag}: dropped (not in allow)")
            writer.transport.abort()
            return
        if state.active >= lst.max_connections or self.stopping.is_set():
            why = "stopping" if self.stopping.is_set() else f"max_connections {lst.max_connections} reached"
            log(f"{tag}: refused ({why})")
            writer.transport.abort()
            return
        state.active += 1
        task = asyncio.current_task()
        if task is not None:
            state.tasks.add(task)
        session = Session(self, state, tag, ip, reader, writer)
        try:
            await session.run()
        except asyncio.CancelledError:
            log(f"{tag}: cut off by shutdown")
        except Exception as exc:  # a bug must end one session with one line, never the bridge
            log(f"{tag}: internal error ({type(exc).__name__})")
        finally:
            state.active -= 1
            if task is not None:
                state.tasks.discard(task)
            session.close()
            log(f"{tag}: closed ({session.summary()})")


class Session:
    def __init__(self, bridge: Bridge, state: ListenerState, tag: str, ip: str, reader, writer) -> None:
        self.bridge, self.state, self.tag, self.ip = bridge, state, tag, ip
        self.reader, self.writer = reader, writer
        self.upstream: auth.Upstream | None = None
        self.up_bytes = self.down_bytes = 0
        self.started = time.monotonic()
        self.outcome = "before login"

    def summary(self) -> str:
        return (
            f"{self.outcome}; client->upstream {self.up_bytes} bytes, upstream->client {self.down_bytes} bytes, "
            f"{time.monotonic() - self.started:.1f} s"
        )

    def close(self) -> None:
        for w in (self.writer, self.upstream.writer if self.upstream else None):
            if w is not None:
                with contextlib.suppress(Exception):
                    w.close()

    async def run(self) -> None:
        lst = self.state.listener
        log(f"{self.tag}: connect")
        if lst.local_tls == "implicit":
            try:
                await self.writer.start_tls(self.state.local_ctx, ssl_handshake_timeout=lst.idle_timeout)
            except (ssl.SSLError, OSError, asyncio.TimeoutError) as exc:
                self.outcome = f"TLS handshake failed ({_reason(exc)})"
                return
        kwargs = {
            "capabilities": self.state.capabilities,
            "tls_active": lst.local_tls == "implicit",
            "starttls_available": lst.local_tls == "starttls",
            "max_line": MAX_LINE,
        }
        if lst.protocol != "smtp" and lst.local_tls == "starttls":
            kwargs["require_tls"] = True  # no password in clear where TLS is on offer
        machine = self.state.module.ClientSide(**kwargs)
        events = list(machine.greeting())
        while True:
            while events:
                event = events.pop(0)
                if isinstance(event, Send):
                    self.writer.write(event.data)
                elif isinstance(event, StartTLS):
                    await self.writer.drain()
                    try:
                        await self.writer.start_tls(self.state.local_ctx, ssl_handshake_timeout=lst.idle_timeout)
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
                self.bridge.idle.discard(task)  # type: ignore[arg-type]
            if not data:
                self.outcome = "client left before login" if self.outcome == "before login" else self.outcome
                return
            events = list(machine.receive(data))

    async def _login(self, machine, event: Login) -> list:
        state, bridge = self.state, self.bridge
        host, port, mode = state.upstream

        async def connect(user: str, token: str) -> auth.Upstream:
            up_machine = state.module.UpstreamSide(user=user, token=token, starttls=mode == "starttls")
            return await auth.sign_in(host, port, mode == "implicit", up_machine, bridge.upstream_ctx)

        async def notify(acct: Account, message: str) -> None:
            from .. import notify as notices

            with contextlib.suppress(Exception):
                await asyncio.to_thread(notices.signin_required, acct, message)

        def fire(acct: Account, message: str) -> None:
            bridge._spawn(state, notify(acct, message))

        outcome = await auth.login(
            state.account, event.user, event.password, self.ip, bridge.verifier, bridge.tokens, connect, fire
        )
        log(f"{self.tag}: {outcome.log}")
        self.outcome = "authenticated" if outcome.result == "ok" else f"login {outcome.result}"
        if outcome.upstream is not None:
            self.upstream = outcome.upstream
            if outcome.upstream.capabilities:
                state.capabilities = outcome.upstream.capabilities
        return list(machine.login_done(outcome.result, outcome.text))  # type: ignore[arg-type]

    async def _splice(self, pending: bytes) -> None:
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


class BridgeUnavailable(errors.MailtokenError):
    exit_code = errors.EX_UNAVAILABLE


def serve(cfg: Config) -> int:
    if sys.version_info < (3, 11):
        # asyncio's StreamWriter.start_tls (STARTTLS on both sides) came with Python 3.11.
        raise BridgeUnavailable("mailtoken serve needs Python 3.11 or later (this is " + sys.version.split()[0] + ")")
    if not cfg.serve:
        raise ConfigError(
            f'{cfg.path}: no [[serve]] tables: add one, like [[serve]] protocol = "smtp" account = "work"'
        )
    return asyncio.run(_main(cfg))


async def _main(cfg: Config) -> int:
    bridge = Bridge(cfg)
    asyncio.get_running_loop().set_exception_handler(_quiet)
    return await bridge.run()


def _quiet(loop: asyncio.AbstractEventLoop, context: dict) -> None:
    # asyncio's default handler prints tracebacks (which may show buffers); one line instead.
    exc = context.get("exception")
    log(f"event loop: {context.get('message', '')} ({type(exc).__name__ if exc else 'no exception'})")
