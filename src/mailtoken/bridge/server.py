"""`mailtoken serve`: asyncio listeners that speak each protocol until login, then splice to the upstream.

Per connection: the allow-list at accept (others are dropped before a byte is sent), the per-listener limit,
local TLS (STARTTLS or implicit), the protocol machine (pure, in smtp.py/imap.py/pop3.py) until Login, the
sign-in (auth.py), then two byte pumps. One stderr line per event, never a secret. SIGTERM/SIGINT: stop
accepting, give open sessions DRAIN seconds, exit 0. NOTIFY_SOCKET gets READY=1 and STOPPING=1.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import itertools
import os
import signal
import socket
import ssl
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from .. import errors
from ..config import Account, Config
from ..errors import ConfigError, TemporaryFailure
from . import auth, graph_session, imap, pop3, smtp, tls
from .config import GRAPH, Listener, upstream_of
from .events import ClientSide, UpstreamSide
from .passwords import Verifier
from .session import CHUNK, Session, log

DRAIN = 10.0


@dataclass(frozen=True)
class Machines:
    """A protocol's two pure machines (their keyword arguments differ per protocol, hence `...`)."""

    client: Callable[..., ClientSide]
    upstream: Callable[..., UpstreamSide]
    default_capabilities: list[str]


MACHINES = {
    "smtp": Machines(smtp.ClientSide, smtp.UpstreamSide, smtp.DEFAULT_CAPABILITIES),
    "imap": Machines(imap.ClientSide, imap.UpstreamSide, imap.DEFAULT_CAPABILITIES),
    "pop3": Machines(pop3.ClientSide, pop3.UpstreamSide, pop3.DEFAULT_CAPABILITIES),
}


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
    machines: Machines
    local_ctx: ssl.SSLContext | None
    capabilities: object = None
    active: int = 0
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


def _peer(writer: asyncio.StreamWriter) -> tuple[str, str]:
    peer = writer.get_extra_info("peername") or ("?", 0)
    host = str(peer[0])
    return host, (f"[{host}]:{peer[1]}" if ":" in host else f"{host}:{peer[1]}")


class Bridge:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.verifier = Verifier()
        self.tokens = auth.TokenSource(cfg.path)
        self.graph_tokens = graph_session.GraphTokens(cfg.path)
        self.upstream_ctx = tls.upstream_context()
        self.states = [self._prepare(lst) for lst in cfg.serve]
        self.ids = itertools.count(1)
        self.stopping = asyncio.Event()
        self.idle: set[asyncio.Task[None]] = set()  # sessions waiting for a client's command before login

    def _prepare(self, lst: Listener) -> ListenerState:
        acct = self.cfg.account(lst.account)
        graph = lst.upstream == GRAPH
        upstream = ("Microsoft Graph", 443, "https") if graph else upstream_of(lst, acct)
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
        machines = MACHINES[lst.protocol]
        caps = graph_session.listener_capabilities(acct) if graph else list(machines.default_capabilities)
        return ListenerState(lst, acct, upstream, machines, ctx, caps)

    # -- lifecycle -----------------------------------------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        servers: list[asyncio.Server] = []
        for state in self.states:
            lst = state.listener
            try:
                server = await asyncio.start_server(
                    functools.partial(self._accept, state), lst.host, lst.port, backlog=512, limit=CHUNK
                )
            except OSError as exc:
                for s in servers:
                    s.close()
                raise TemporaryFailure(f"{lst.name}: cannot listen ({exc.strerror or exc})") from None
            servers.append(server)
            host, port, mode = state.upstream
            where = host if lst.upstream == GRAPH else f"{host}:{port} {mode}"
            log(f"{lst.name}: listening (account {lst.account}, upstream {where}, local TLS {lst.local_tls})")
            if lst.upstream == GRAPH:
                continue  # nothing to probe: the bridge takes the message itself
            if "probe_only" in inspect.signature(state.machines.upstream).parameters:
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

    def _spawn(self, state: ListenerState, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        state.tasks.add(task)
        task.add_done_callback(state.tasks.discard)
        return task

    async def _probe(self, state: ListenerState) -> None:
        """Learn what the upstream offers (SMTP EHLO, POP3 CAPA, after TLS) before the first client asks."""
        host, port, mode = state.upstream
        machine = state.machines.upstream(user="", token="", starttls=mode == "starttls", probe_only=True)
        try:
            up = await auth.sign_in(host, port, mode == "implicit", machine, self.upstream_ctx, timeout=15)
        except auth.UpstreamFailed as exc:
            log(f"{state.listener.name}: upstream probe: {exc.text}")
            return
        if state.capabilities in (None, [], ()):
            state.capabilities = up.capabilities
        up.writer.close()

    # -- one connection ------------------------------------------------------------------------------------

    async def _accept(self, state: ListenerState, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
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


# asyncio gives every TLS connection a 256 KiB read buffer (SSLProtocol.max_size); glibc serves it from the
# heap once its mmap threshold has grown, zero-filled, so each idle upstream session would cost 256 KiB of RSS.
# A TLS record carries at most 16 KiB: 32 KiB reads lose nothing (bench/bridge.py: 287 -> 77 KB per IDLE session).
SSL_READ_BUFFER = 32 * 1024


async def _main(cfg: Config) -> int:
    import asyncio.sslproto

    asyncio.sslproto.SSLProtocol.max_size = SSL_READ_BUFFER
    bridge = Bridge(cfg)
    asyncio.get_running_loop().set_exception_handler(_quiet)
    return await bridge.run()


def _quiet(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    # asyncio's default handler prints tracebacks (which may show buffers); one line instead.
    exc = context.get("exception")
    log(f"event loop: {context.get('message', '')} ({type(exc).__name__ if exc else 'no exception'})")
