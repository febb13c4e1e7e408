"""What `mailtoken login` adds for an account with send = "graph": a Graph token from the new grant, now.

The browser flows consent to Graph's permissions in the same sign-in (providers/microsoft.py puts them in the
authorize request, as msal's extra_scopes_to_consent does). A device code covers one resource only (Entra
refuses to redeem one that spans two, AADSTS28000), so after a device sign-in whose grant cannot yet get a
Graph token (AADSTS65001, no consent), login shows a second code, for Graph's permissions alone. Either way
the Graph token is fetched before login returns: a missing permission shows now, not in the mail client.
"""

from __future__ import annotations

import time

from .. import providers, tokens, ui
from ..config import Account
from ..deadline import Deadline
from ..errors import SignInRequired
from . import scopes, sendmail


def _unconsented(exc: SignInRequired) -> bool:
    return "65001" in exc.message or "consent_required" in (exc.detail or "")


def after_login(acct: Account, config_path: str, method: str, timeout: float | None = None) -> None:
    if acct.send != "graph":
        return
    what = "the Mail.Send application permission" if providers.app_only(acct) else ", ".join(scopes.names(acct))
    try:
        _graph_token(acct, config_path)
    except SignInRequired as exc:
        if providers.app_only(acct) or method not in ("device", "resume") or not _unconsented(exc):
            raise SignInRequired(
                f"signed in for mail, but Microsoft Graph refuses a token for sending: {sendmail.consent_hint(acct)}",
                account=acct.name,
                detail=exc.detail or exc.message,
            ) from None
        ui.say(f"{acct.name}: sending with Microsoft Graph needs your consent to {what}: one more code")
        _second_device_code(acct, config_path, timeout)
    ui.say(f"{acct.name}: sending with Microsoft Graph works ({what})")


def _graph_token(acct: Account, config_path: str) -> None:
    tokens.get(
        acct,
        config_path,
        Deadline(tokens.NET_TIMEOUT * 2),
        resource=sendmail.RESOURCE,
        min_validity=float("inf"),
        serve_stale=False,
    )


def _second_device_code(acct: Account, config_path: str, timeout: float | None) -> None:
    from .. import lock
    from .. import store as stores
    from ..fast import record
    from ..signin import device, login

    engine = providers.engine_for(acct)
    started = time.time()
    flow = engine.start_device_flow(acct, tokens.NET_TIMEOUT, resource=sendmail.RESOURCE)
    info = flow.info
    url = info.get("verification_uri") or info.get("verification_url")
    ui.say(f"{acct.name}: to let mailtoken send as {acct.email}, open {url} and enter the code {info['user_code']}")
    device.show(info["user_code"], acct.copy_code)
    grant = login._wait(acct, info, timeout, lambda waiting: engine.finish_device_flow(acct, flow, waiting))
    # Entra's refresh tokens are not tied to a resource: this newer one serves the mail token as well.
    store, _state = stores.for_account(acct)
    with lock.account_lock(acct.name, tokens.SIGN_IN_LOCK_WAIT):
        _rec, warning = tokens.commit(
            acct, store, grant, started, record.config_stamp(config_path), resource=sendmail.RESOURCE
        )
    if warning:
        ui.say(f"{acct.name}: warning: {warning}")
