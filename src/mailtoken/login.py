"""Interactive sign-in: device code (default; works over SSH and without a TTY) or browser + PKCE."""

from __future__ import annotations

import http.server
import os
import sys
import threading
import time
import urllib.parse
from typing import Any

from . import fsutil, providers, record, tokens, ui
from . import store as stores
from .config import Account
from .errors import SignInRequired, UsageError

LOGIN_TIMEOUT = 600.0


def login(acct: Account, config_path: str, method: str, timeout: float | None = None) -> str:
    """Sign in, store the grant and the first access token. Returns the username that signed in."""
    # Check the store before asking a human to sign in: a grant we cannot keep is a wasted sign-in.
    store, note = stores.choose_for_login(acct)
    engine = providers.engine(acct.provider)
    net_timeout = tokens.NET_TIMEOUT
    started = time.time()
    if method == "device":
        grant = _device(acct, engine, net_timeout, timeout)
    elif method == "browser":
        grant = _browser(acct, engine, net_timeout, timeout or LOGIN_TIMEOUT)
    else:  # pragma: no cover - argparse restricts it
        raise UsageError(f"unknown login method {method}")
    if grant.username and grant.username.lower() != acct.email.lower():
        ui.say(
            f"{acct.name}: warning: signed in as {grant.username}, but the config says email = {acct.email}; "
            "the token is for the account that signed in (fine for a shared mailbox, else sign in again)"
        )
    previous = stores.recall(acct.name)
    warning = tokens.save_grant(acct, store, grant.blob)
    stores.remember(acct.name, {"store": store.name, "username": grant.username, "signed_in": int(time.time())})
    record.write(
        tokens.record_path(acct.name),
        tokens.make_record(acct, grant.access_token, grant.expires_in, started, record.config_stamp(config_path)),
    )
    if previous and previous.get("store") != store.name:
        _forget_old(acct, previous["store"])
    if note:
        ui.say(f"{acct.name}: {note}")
    if warning:
        ui.say(f"{acct.name}: warning: {warning}")
    ui.say(f"{acct.name}: signed in as {grant.username or acct.email}; grant kept in {store.describe()}")
    return grant.username


def _forget_old(acct: Account, name: str) -> None:
    try:
        stores.by_name(name).delete(acct.name)
    except Exception as exc:  # the old copy is garbage now; failing to remove it must not fail the login
        ui.debug(f"{acct.name}: could not remove the old grant from {name}: {type(exc).__name__}")


def _device(acct: Account, engine: Any, net_timeout: float, timeout: float | None) -> Any:
    app, cache, flow = engine.start_device_flow(acct, net_timeout)
    expires_at = float(flow.get("expires_at") or time.time() + int(flow.get("expires_in", 900)))
    if timeout:
        expires_at = min(expires_at, time.time() + timeout)
        flow["expires_at"] = expires_at
    url = flow.get("verification_uri") or flow.get("verification_url")
    ui.say(f"{acct.name}: to sign in as {acct.email}, open {url} and enter the code {flow['user_code']}")
    tty = sys.stderr.isatty()
    last = [0.0]

    def waiting(flow: dict[str, Any]) -> bool:
        left = int(expires_at - time.time())
        if tty:
            sys.stderr.write(
                f"\rmailtoken: waiting for sign-in, code {flow['user_code']} expires in "
                f"{max(left, 0) // 60}:{max(left, 0) % 60:02d} "
            )
            sys.stderr.flush()
        elif time.time() - last[0] >= 60:
            last[0] = time.time()
            ui.say(f"{acct.name}: waiting for sign-in ({max(left, 0) // 60} min left)")
        return left <= 0

    try:
        return engine.finish_device_flow(acct, app, cache, flow, waiting)
    finally:
        if tty:
            sys.stderr.write("\n")


class _Receiver(http.server.BaseHTTPRequestHandler):
    result: dict[str, str] | None = None

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
        if "code" not in query and "error" not in query:
            self.send_response(404)
            self.end_headers()
            return
        type(self).result = query
        ok = "code" in query
        body = (
            "<html><body><h1>mailtoken: signed in</h1><p>You can close this window.</p></body></html>"
            if ok
            else "<html><body><h1>mailtoken: sign-in failed</h1><p>See the terminal.</p></body></html>"
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # the query holds the code: never log it
        pass


def browser_available() -> bool:
    if os.environ.get("BROWSER"):
        return True
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _browser(acct: Account, engine: Any, net_timeout: float, timeout: float) -> Any:
    handler = type("Receiver", (_Receiver,), {"result": None})
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    port = server.server_address[1]
    try:
        # Entra ignores the port of a http://localhost redirect URI, so any free port works.
        app, cache, flow = engine.start_auth_code_flow(acct, f"http://localhost:{port}", net_timeout)
        url = flow["auth_uri"]
        ui.say(f"{acct.name}: to sign in as {acct.email}, open this URL in a browser on this machine:")
        print(url, file=sys.stderr, flush=True)
        if browser_available():
            import webbrowser

            threading.Thread(target=webbrowser.open, args=(url,), daemon=True).start()
        end = time.monotonic() + timeout
        server.timeout = 1.0
        while handler.result is None:
            if time.monotonic() > end:
                raise SignInRequired(
                    "no answer from the browser in time: run 'mailtoken login' again", account=acct.name
                )
            server.handle_request()
        return engine.finish_auth_code_flow(acct, app, cache, flow, handler.result)
    finally:
        server.server_close()


def logout(acct: Account) -> list[str]:
    """Remove every stored token of the account; returns what was removed."""
    removed = []
    if fsutil.remove(tokens.record_path(acct.name)):
        removed.append("access-token record")
    if fsutil.remove(tokens.rescue_path(acct.name)):
        removed.append("rescued grant")
    state = stores.recall(acct.name)
    names = ["file", "keyring"]
    for name in names:
        store = stores.by_name(name)
        try:
            store.check()
            if store.delete(acct.name):
                removed.append(f"grant in {store.describe()}")
        except Exception:
            if state and state.get("store") == name:
                raise
    if stores.forget(acct.name):
        removed.append("account state")
    return removed
