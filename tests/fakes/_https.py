"""Threaded HTTP(S) listeners for the fakes: each request becomes one Request, the handler returns a Reply.

Kept apart from the identity-platform logic so that other fakes (a generic OIDC provider) can reuse it.
"""

from __future__ import annotations

import json
import socketserver
import ssl
import sys
import threading
import traceback
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from html import escape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import trustme


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    form: dict[str, str]
    headers: dict[str, str]  # names lower-cased
    body: bytes
    listener: str


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False  # close the connection without answering
    truncate: bool = False  # announce the full length, send half, close
    trickle: float = 0.0  # seconds between bytes: headers and body dribble out (a socket timeout never fires)


def json_reply(obj: Any, status: int = 200) -> Reply:
    return Reply(status, json.dumps(obj).encode())


def html_reply(title: str, inner: str, status: int = 200) -> Reply:
    page = f"<!DOCTYPE html><html><head><title>{escape(title)}</title></head><body>{inner}</body></html>"
    return Reply(status, page.encode(), "text/html; charset=utf-8")


def first_values(qs: str) -> dict[str, str]:
    return {k: v[0] for k, v in urllib.parse.parse_qs(qs, keep_blank_values=True).items()}


def throwaway_tls(ca_pem: Path, *names: str) -> ssl.SSLContext:
    """Server context with a certificate for ``names`` from a fresh CA whose certificate goes to ``ca_pem``."""
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(ca_pem))
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(ctx)
    return ctx


class Listener(ThreadingHTTPServer):
    daemon_threads = True  # a hung or idle keep-alive client must never block stop()
    request_queue_size = 128  # benchmarks open ~50 connections at once; the default 5 drops SYNs

    def __init__(
        self, host: str, name: str, handle: Callable[[Request], Reply], ssl_ctx: ssl.SSLContext | None
    ) -> None:
        self.name, self.handle, self.ssl_ctx = name, handle, ssl_ctx
        self.stopping = threading.Event()  # set at close(): a trickling answer stops there
        super().__init__((host, 0), _Handler)
        scheme = "https" if ssl_ctx else "http"
        self.url = f"{scheme}://{host}:{self.server_port}"

    def serve_in_thread(self) -> None:
        # A short poll interval keeps shutdown() fast; the cost is a few idle wake-ups per second.
        threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True, name=f"fake-{self.name}").start()

    def close(self) -> None:
        self.stopping.set()
        self.shutdown()
        self.server_close()

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls getfqdn(), a reverse DNS lookup that can stall for seconds.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def get_request(self) -> tuple[Any, Any]:
        conn, addr = super().get_request()
        if self.ssl_ctx is not None:
            # Handshake later, in the worker thread: a slow client must not stall the accept loop.
            conn = self.ssl_ctx.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
        return conn, addr

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.ssl_ctx is not None:
            request.settimeout(10)
            try:
                request.do_handshake()
            except (OSError, ValueError):
                return
        super().finish_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError, ssl.SSLError)):
            return  # clients that hang up (timeouts, killed processes) are part of the tests
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as requests.Session expects
    server_version = "FakeEntra/1.0"
    sys_version = ""
    timeout = 30  # idle keep-alive connections release their thread eventually
    disable_nagle_algorithm = True  # headers and body go out in two writes: Nagle + delayed ACK cost 40 ms
    server: Listener

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        url = urllib.parse.urlsplit(self.path)
        is_form = "x-www-form-urlencoded" in self.headers.get("Content-Type", "")
        form = first_values(body.decode("utf-8", "replace")) if is_form else {}
        headers = {k.lower(): v for k, v in self.headers.items()}
        req = Request(self.command, url.path, first_values(url.query), form, headers, body, self.server.name)
        try:
            reply = self.server.handle(req)
        except Exception:
            traceback.print_exc()
            reply = json_reply({"error": "fake_internal_error", "error_description": traceback.format_exc()}, 500)
        self._send(reply)

    do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

    def _send(self, reply: Reply) -> None:
        if reply.drop:
            self.close_connection = True
            return
        if reply.trickle:
            head = f"HTTP/1.1 {reply.status} OK\r\nContent-Type: {reply.content_type}\r\n"
            head += f"Content-Length: {len(reply.body)}\r\n\r\n"
            for byte in head.encode() + reply.body:
                try:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                except OSError:
                    break
                if self.server.stopping.wait(reply.trickle):
                    break
            self.close_connection = True
            return
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(reply.body[: len(reply.body) // 2] if reply.truncate else reply.body)
        if reply.truncate:
            self.close_connection = True
