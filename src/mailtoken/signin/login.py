"""Interactive sign-in: device code (default; works over SSH and without a TTY) or browser + PKCE."""

from __future__ import annotations

import os
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

from .. import providers, state, tokens, ui
from .. import store as stores
from ..config import Account
from ..errors import MailtokenError, SignInRequired, UsageError
from ..providers.base import Engine, ExitCondition, Grant
from . import device

LOGIN_TIMEOUT = 600.0


def login(acct: Account, config_path: str, method: str, timeout: float | None = None) -> str:
    """Sign in, store the grant and the first access token. Returns the username that signed in."""
    engine = providers.engine_for(acct)
    if engine.grantless:
        from ..graph import consent
        from . import apponly

        who = apponly.login(acct, config_path)
        consent.after_login(acct, config_path, "app")
        return who
    if method == "default":
        method = _default_method(acct)
    # Check the store before asking a human to sign in: a grant we cannot keep is a wasted sign-in.
    store, note = stores.choose_for_login(acct)
    net_timeout = tokens.NET_TIMEOUT
    started = time.time()
    if method == "device":
        grant = _device(acct, engine, net_timeout, timeout)
    elif method == "resume":
        grant = _resume(acct, engine, net_timeout, timeout)
    elif method in ("browser", "paste"):
        grant = _interactive(acct, engine, method, net_timeout, timeout or LOGIN_TIMEOUT)
    else:  # pragma: no cover - argparse restricts it
        raise UsageError(f"unknown login method {method}")
    if grant.username and grant.username.lower() != acct.email.lower():
        ui.say(
            f"{acct.name}: warning: signed in as {grant.username}, but the config says email = {acct.email}; "
            "the token is for the account that signed in (fine for a shared mailbox, else sign in again)"
        )
    previous = stores.recall(acct.name)
    warning = tokens.save_sign_in(acct, store, grant, started, config_path)
    if previous and previous.get("store") != store.name:
        _forget_old(acct, previous["store"])
    if note:
        ui.say(f"{acct.name}: {note}")
    if warning:
        ui.say(f"{acct.name}: warning: {warning}")
    ui.say(f"{acct.name}: signed in as {grant.username or acct.email}; grant kept in {store.describe(acct.name)}")
    from ..graph import consent

    consent.after_login(acct, config_path, method, timeout)  # send = "graph": the Graph token too
    return grant.username


def _forget_old(acct: Account, name: str) -> None:
    try:
        stores.by_name(name).delete(acct.name)
    except Exception as exc:  # the old copy is garbage now; failing to remove it must not fail the login
        ui.debug(f"{acct.name}: could not remove the old grant from {name}: {type(exc).__name__}")


def _device(acct: Account, engine: Engine, net_timeout: float, timeout: float | None) -> Grant:
    flow = engine.start_device_flow(acct, net_timeout)
    info = flow.info
    url = info.get("verification_uri") or info.get("verification_url")
    device.tell(acct, str(url), info["user_code"])
    device.show(info["user_code"], acct.copy_code)
    return _wait(acct, info, timeout, lambda waiting: engine.finish_device_flow(acct, flow, waiting))


def _resume(acct: Account, engine: Engine, net_timeout: float, timeout: float | None) -> Grant:
    """Finish the sign-in `login --no-wait` started; keep it for another --resume while its code is valid."""
    flow = device.load_pending(acct)
    code_expires = float(flow["expires_at"])
    ui.say(f"{acct.name}: waiting for the sign-in with the code {flow['user_code']}")
    try:
        grant = _wait(acct, flow, timeout, lambda waiting: engine.resume_device_flow(acct, flow, waiting, net_timeout))
    except Exception:
        if time.time() >= code_expires:
            device.drop_pending(acct.name)
        raise
    device.drop_pending(acct.name)
    return grant


def _wait(
    acct: Account, flow: dict[str, Any], timeout: float | None, finish: Callable[[ExitCondition], Grant]
) -> Grant:
    expires_at = float(flow.get("expires_at") or time.time() + int(flow.get("expires_in", 900)))
    if timeout:
        expires_at = min(expires_at, time.time() + timeout)
        flow["expires_at"] = expires_at
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
        return finish(waiting)
    finally:
        if tty:
            sys.stderr.write("\n")


def browser_available() -> bool:
    if os.environ.get("BROWSER"):
        return True
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _default_method(acct: Account) -> str:
    """The device code flow, unless the provider refuses it: then the browser, or --paste without one."""
    spec = providers.spec(acct.provider)
    if spec.get("device_flow", True):
        return "device"
    if browser_available():
        ui.say(f"{acct.name}: {spec['device_flow_refused']}: signing in with the browser instead")
        return "browser"
    ui.say(f"{acct.name}: {spec['device_flow_refused']}, and no browser is here: sign in anywhere, then paste")
    return "paste"


def _interactive(acct: Account, engine: Engine, method: str, net_timeout: float, timeout: float) -> Grant:
    from ..providers.base import ConsentNeeded

    run = _browser if method == "browser" else _paste
    try:
        return run(acct, engine, net_timeout, timeout)
    except ConsentNeeded:
        # Google sends a refresh token only when the user consents; an earlier consent means none came back.
        ui.say(f"{acct.name}: the provider sent no refresh token (the app was allowed before): consent once more")
    try:
        return run(acct, engine, net_timeout, timeout, consent=True)
    except ConsentNeeded:
        raise SignInRequired(
            "the provider sent no refresh token even after consent: remove the app's access in your account's "
            f"security settings, then run 'mailtoken login {acct.name}' again",
            account=acct.name,
        ) from None


def _paste(acct: Account, engine: Engine, net_timeout: float, timeout: float, **flow_kw: Any) -> Grant:
    """The browser flow without a listener here: the user pastes the address the browser was sent to."""
    from . import paste

    redirect = acct.redirect_uri or f"http://{providers.spec(acct.provider).get('loopback_host', 'localhost')}"
    flow = engine.start_auth_code_flow(acct, redirect, net_timeout, **flow_kw)
    ui.say(f"{acct.name}: to sign in as {acct.email}, open this URL in a browser on any machine:")
    print(flow.info["auth_uri"], file=sys.stderr, flush=True)
    ui.say(
        f"{acct.name}: after sign-in the browser goes to {redirect}... and may show an error page: copy the whole "
        "address from its address bar, paste it here and press Enter:"
    )
    return engine.finish_auth_code_flow(acct, flow, paste.read_redirect(acct, redirect, timeout))


def _loopback(acct: Account) -> tuple[str, int, str | None]:
    """Host and port to receive the browser's redirect on, and the fixed redirect URI if the account has one
    (a fixed port is what `ssh -L PORT:127.0.0.1:PORT` needs); else the provider's host on a free port."""
    from ..providers.base import is_loopback_http

    uri = acct.redirect_uri
    if uri is None:
        return providers.spec(acct.provider).get("loopback_host", "localhost"), 0, None
    if not is_loopback_http(uri):
        raise UsageError(
            f"redirect_uri is {uri}, which no listener on this machine can receive: sign in with "
            f"'mailtoken login {acct.name} --paste'",
            account=acct.name,
        )
    parts = urllib.parse.urlsplit(uri)
    return parts.hostname or "localhost", parts.port or 80, uri


def _browser(acct: Account, engine: Engine, net_timeout: float, timeout: float, **flow_kw: Any) -> Grant:
    from . import loopback

    host, port, fixed = _loopback(acct)
    with loopback.Receiver(host, port, acct.name) as receiver:
        # Entra and Google accept any port on a loopback redirect URI, so a free port works unless one is fixed.
        redirect = fixed or f"http://{host}:{receiver.port}"
        flow = engine.start_auth_code_flow(acct, redirect, net_timeout, **flow_kw)
        receiver.start(flow.info["state"], timeout)
        url = flow.info["auth_uri"]
        ui.say(f"{acct.name}: to sign in as {acct.email}, open this URL in a browser on this machine:")
        print(url, file=sys.stderr, flush=True)
        if browser_available():
            import webbrowser

            threading.Thread(target=webbrowser.open, args=(url,), daemon=True).start()
        answer = receiver.wait()
        try:
            grant = engine.finish_auth_code_flow(acct, flow, answer)
        except Exception as exc:
            from ..providers.base import ConsentNeeded

            if isinstance(exc, ConsentNeeded):
                receiver.done("one more step", "The provider asks for your consent: a new sign-in page opens.")
            else:
                why = exc.message if isinstance(exc, MailtokenError) else "an internal error"
                receiver.done("sign-in failed", f"{why}. Go back to the terminal where mailtoken runs.")
            raise
        receiver.done(
            "signed in",
            f"{acct.name} is signed in as {grant.username or acct.email}. "
            "You can close this tab and go back to the terminal where mailtoken runs.",
        )
        return grant


def logout(acct: Account) -> list[str]:
    """Remove everything kept for the account (state.py lists it); returns what was removed."""
    removed = []
    remembered = stores.recall(acct.name)
    # The keyring is probed only where a grant may be: probing it can be slow, and needless where none is.
    only_file = acct.store == "file" and (not remembered or remembered.get("store") == "file")
    for name in ["file"] if only_file else ["file", "keyring"]:
        store = stores.by_name(name)
        try:
            store.check()
            if store.delete(acct.name):
                removed.append(f"grant in {store.describe(acct.name)}")
        except Exception:
            if remembered and remembered.get("store") == name:
                raise
    if providers.engine_for(acct).grantless and not acct.client_secret_cmd and not acct.certificate:
        from ..providers import credentials

        if credentials.forget_secret(acct):  # what `login` stored for this app-only account
            removed.append("the app's client secret in the keyring")
    removed += state.forget(acct.name)
    return removed
