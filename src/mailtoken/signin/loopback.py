"""The loopback receiver of `login --browser`: where the browser brings the authorization response home.

Its rules (issue 11, point 2; docs/security.md):

- Connections are served concurrently, each with its own timeout bounded by the sign-in's deadline: a browser's
  preconnect, or any local process holding a connection open, cannot keep the real redirect waiting.
- `localhost` is bound on both loopback families on one port. Browsers try ::1 as well as 127.0.0.1, and a
  family left unbound is one another local user could bind to receive the code. The redirect stays
  http://localhost:PORT: Entra ignores the port only for `localhost` ("In all other cases, the port component is
  not ignored") and does not support [::1] (learn.microsoft.com/entra/identity-platform/reply-url).
- Only an answer carrying this sign-in's `state` ends the wait, with its code or its error; any other request
  is answered and ignored. The right answer's page waits for the code to be redeemed, so it says what happened.
"""

from __future__ import annotations

import errno
import html
import http.server
import math
import secrets
import selectors
import socket
import threading
import time
import urllib.parse
from typing import Any

from ..errors import SignInRequired, UsageError

# How long one connection may sit without sending its request: enough for a slow browser, short enough that
# idle connections do not pile up.
CONNECTION_TIMEOUT = 10.0
# Beyond this many open connections new ones are closed at once, so a local flood cannot exhaust threads.
MAX_CONNECTIONS = 64
# A free port whose other loopback family is taken is given up for another one, this many times.
PORT_TRIES = 20
# The longest the answer's page waits for the code to be redeemed before it says "see the terminal".
OUTCOME_WAIT = 60.0

_FAMILIES = {
    "localhost": ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")),
    "127.0.0.1": ((socket.AF_INET, "127.0.0.1"),),
    "::1": ((socket.AF_INET6, "::1"),),
}


def _listen(family: int, address: str, port: int) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # SO_REUSEADDR lets a fixed port be taken again at once after a sign-in (TIME_WAIT); on Linux it never
        # allows a second listener on the same address. SO_REUSEPORT, which would, is never set.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((address, port))
        sock.listen(16)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _shown(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _bind(host: str, port: int, account: str) -> list[socket.socket]:
    """Listening sockets on every loopback family `host` names, all on one port (`port`, or a free one)."""
    families = _FAMILIES.get(host, _FAMILIES["localhost"])
    for _attempt in range(PORT_TRIES if port == 0 else 1):
        bound: list[socket.socket] = []
        family, address = families[0]
        try:
            for family, address in families:  # noqa: B007 - the failing one is named below
                chosen = bound[0].getsockname()[1] if bound else port
                try:
                    bound.append(_listen(family, address, chosen))
                except OSError as exc:
                    # No IPv6 loopback here (disabled, or a container without it): no one else can bind it either.
                    if bound and exc.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
                        continue
                    raise
            return bound
        except OSError as exc:
            for sock in bound:
                sock.close()
            if port == 0 and bound and exc.errno == errno.EADDRINUSE:
                continue  # another program holds this port on the other family: take another port
            where = _shown(address, port) if port else f"a free port on {address}"
            if port and exc.errno == errno.EADDRINUSE:
                why = "another program listens there"
            else:
                why = exc.strerror or type(exc).__name__
            raise UsageError(
                f"cannot listen on {where} for the browser's answer ({why}): free it, or change redirect_uri",
                account=account,
            ) from None
    raise UsageError(
        f"cannot find a port free on every loopback address after {PORT_TRIES} tries: try again",
        account=account,
    )


_PAGE = (
    '<!DOCTYPE html><html><head><meta charset="utf-8"><title>mailtoken: {title}</title></head>'
    '<body style="font-family:sans-serif;max-width:40em;margin:3em auto">'
    "<h1>mailtoken: {title}</h1><p>{text}</p></body></html>"
)


class Receiver:
    """Listening sockets and the threads serving them, until `close()`. A context manager."""

    def __init__(self, host: str, port: int, account: str) -> None:
        self.account = account
        self._sockets = _bind(host, port, account)
        self.port: int = self._sockets[0].getsockname()[1]
        self._state = ""
        self._end = math.inf
        self._answer: dict[str, str] | None = None
        self._answered = threading.Event()
        self._outcome: tuple[str, str] | None = None
        self._outcome_ready = threading.Event()
        self._lock = threading.Lock()
        self._open = 0
        self._handlers: list[threading.Thread] = []
        self._stop = threading.Event()
        self._acceptor: threading.Thread | None = None

    def __enter__(self) -> Receiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self, state: str, timeout: float) -> None:
        """Serve, waiting for the answer with `state`, for `timeout` seconds from now at most."""
        self._state = state
        self._end = time.monotonic() + timeout
        self._acceptor = threading.Thread(target=self._accept_loop, name="loopback-accept", daemon=True)
        self._acceptor.start()

    def wait(self) -> dict[str, str]:
        """The authorization response carrying the right state (code or error), or SignInRequired at the deadline."""
        while not self._answered.wait(max(0.0, min(1.0, self._end - time.monotonic()))):
            if time.monotonic() >= self._end:
                raise SignInRequired(
                    f"no answer from the browser in time: run 'mailtoken login {self.account} --browser' again",
                    account=self.account,
                )
        assert self._answer is not None
        return self._answer

    def done(self, title: str, text: str) -> None:
        """What the answer's page says (plain text; escaped here), once the code is redeemed or refused."""
        with self._lock:
            if self._outcome is None:
                self._outcome = (title, text)
        self._outcome_ready.set()

    def close(self) -> None:
        self.done("sign-in not finished", "See the terminal where mailtoken runs.")
        self._stop.set()
        if self._acceptor is not None:
            self._acceptor.join(2)
        for sock in self._sockets:
            sock.close()
        # Let the answer's page reach the browser before the process exits; idle connections are not waited for.
        deadline = time.monotonic() + 2
        for thread in list(self._handlers):
            if getattr(thread, "answering", False):
                thread.join(max(0.0, deadline - time.monotonic()))

    # -- serving ---------------------------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        with selectors.DefaultSelector() as sel:
            for sock in self._sockets:
                sel.register(sock, selectors.EVENT_READ)
            while not self._stop.is_set():
                for key, _ in sel.select(0.2):
                    try:
                        conn, peer = key.fileobj.accept()  # type: ignore[union-attr]
                    except OSError:
                        continue
                    self._serve(conn, peer)

    def _serve(self, conn: socket.socket, peer: Any) -> None:
        with self._lock:
            full = self._open >= MAX_CONNECTIONS
            if not full:
                self._open += 1
        if full:
            conn.close()
            return
        conn.setblocking(True)
        thread = threading.Thread(target=self._handle, args=(conn, peer), name="loopback-conn", daemon=True)
        self._handlers = [t for t in self._handlers if t.is_alive()] + [thread]
        thread.start()

    def _handle(self, conn: socket.socket, peer: Any) -> None:
        try:
            _Handler(conn, peer, self)  # type: ignore[arg-type]  # a server in all that the handler uses
        except Exception:  # noqa: S110 - one broken connection must not end the sign-in; the query holds the code
            pass
        finally:
            conn.close()
            with self._lock:
                self._open -= 1

    def connection_timeout(self) -> float:
        return max(0.1, min(CONNECTION_TIMEOUT, self._end - time.monotonic()))

    def take(self, query: dict[str, str]) -> str:
        """Judge one request's query: "answer" (this sign-in's), "foreign" (a wrong or missing state) or "other"."""
        if "code" not in query and "error" not in query:
            return "other"
        if not secrets.compare_digest(query.get("state", "").encode(), self._state.encode()):
            return "foreign"
        with self._lock:
            if self._answer is None:
                self._answer = query
        self._answered.set()
        return "answer"

    def outcome(self) -> tuple[str, str]:
        self._outcome_ready.wait(OUTCOME_WAIT)
        return self._outcome or ("still working", "See the terminal where mailtoken runs.")


class _Handler(http.server.BaseHTTPRequestHandler):
    server: Receiver  # type: ignore[assignment]

    def setup(self) -> None:
        self.timeout = self.server.connection_timeout()  # type: ignore[misc]  # per connection, by design
        super().setup()

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        parts = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
        verdict = self.server.take(query)
        if verdict == "answer":
            threading.current_thread().answering = True  # type: ignore[attr-defined]
            title, text = self.server.outcome()
            self._page(200, title, text)
        elif verdict == "foreign":
            self._page(
                400,
                "not this sign-in",
                "This answer belongs to another sign-in, so mailtoken ignored it and is still waiting. "
                "Go back to the sign-in page mailtoken opened, or to the terminal for its address.",
            )
        else:
            self._page(404, "nothing here", "mailtoken is waiting for the sign-in page to send the browser here.")

    def _page(self, status: int, title: str, text: str) -> None:
        body = _PAGE.format(title=html.escape(title), text=html.escape(text)).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Referrer-Policy", "no-referrer")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # the query holds the code: never log it
        pass
