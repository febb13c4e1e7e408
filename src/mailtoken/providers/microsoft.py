"""Microsoft identity platform through msal (PublicClientApplication): device code, auth code + PKCE, refresh.

msal is imported here only, and only when a network call is due. Shared msal plumbing is in entra.py.
"""

from __future__ import annotations

import json
import warnings
from typing import Any

from .. import providers
from ..config import Account
from ..errors import MailtokenError, SignInRequired
from . import entra, errors
from .base import ExitCondition, Flow, Grant, RotatedGrant, token_problem

grantless = False


def scopes_for(acct: Account, resource: str | None = None) -> list[str]:
    """The delegated scopes of one token request: the mail token's, or ("graph") the Graph token's."""
    if resource == "graph":
        from ..graph import scopes

        return scopes.delegated(acct)
    resource_url = providers.cloud(acct.provider, acct.cloud)["resource"]
    return [f"{resource_url}/{scope}" for scope in providers.spec(acct.provider)["scopes"]]


def _extra_consent(acct: Account) -> list[str]:
    """Scopes of other resources this account's sign-in consents to (Graph's, for send = "graph")."""
    return scopes_for(acct, "graph") if getattr(acct, "send", "smtp") == "graph" else []


def _app(acct: Account, cache: Any, session: Any) -> Any:
    import msal

    return entra.call(
        acct,
        lambda: msal.PublicClientApplication(acct.client_id, token_cache=cache, **entra.app_kwargs(acct, session)),
        session,
    )


def _blob(cache: Any) -> str:
    # Access tokens live in the record; storing them in the grant would only grow it.
    data = json.loads(cache.serialize())
    data["AccessToken"] = {}
    return json.dumps(data, separators=(",", ":"), sort_keys=True)


def _with_refresh_token(blob: str, refresh_token: str) -> str:
    """The stored grant with its refresh token replaced: for an answer that rotated it but that msal refused."""
    data = json.loads(blob)
    for item in (data.get("RefreshToken") or {}).values():
        item["secret"] = refresh_token
    return json.dumps(data, separators=(",", ":"), sort_keys=True)


def refresh(acct: Account, blob: str, timeout: float, resource: str | None = None) -> Grant:
    import msal

    cache = msal.SerializableTokenCache()
    try:
        cache.deserialize(blob)
    except ValueError:
        raise SignInRequired(
            f"sign-in required (the stored grant is unreadable): run 'mailtoken login {acct.name}'", account=acct.name
        ) from None
    session = entra.session(acct, timeout, hold_on_answer=True)
    app = _app(acct, cache, session)
    accounts = app.get_accounts()
    if not accounts:
        raise SignInRequired(
            f"sign-in required (no account in the grant): run 'mailtoken login {acct.name}'", account=acct.name
        )
    by_name = [a for a in accounts if (a.get("username") or "").lower() == acct.email.lower()]
    account = (by_name or accounts)[0]
    try:
        # We decide when to refresh (record.refresh_at), so always ask msal for a new token here.
        result = entra.call(
            acct,
            # Entra's refresh tokens are multi-resource: the same grant yields the Graph token (if consented).
            lambda: app.acquire_token_silent_with_error(
                scopes_for(acct, resource), account=account, force_refresh=True
            ),
            session,
        )
        return entra.grant(acct, result, lambda: _blob(cache), session, refreshing=True)
    except MailtokenError as exc:
        rotated, answer = session.answers.rotated, session.answers.answer
        if rotated and rotated not in cache.serialize():
            # msal refused an answer that had already rotated the refresh token: keep the new one anyway, and
            # say what was wrong with the answer rather than how msal tripped over it.
            problem = token_problem(answer.get("access_token"), answer.get("expires_in", 3600)) if answer else None
            error = errors.temporary(f"the identity platform's answer {problem}", acct.name) if problem else exc
            raise RotatedGrant(_with_refresh_token(blob, rotated), error) from None
        raise


def start_device_flow(acct: Account, timeout: float, resource: str | None = None) -> Flow:
    import msal

    cache = msal.SerializableTokenCache()
    session = entra.session(acct, timeout)
    app = _app(acct, cache, session)
    # One resource per device code: Entra lets /devicecode consent to several, then refuses to redeem the code
    # (AADSTS28000); graph/consent.py asks for a second code when the Graph scopes were never consented.
    flow = entra.call(acct, lambda: app.initiate_device_flow(scopes=scopes_for(acct, resource)), session)
    if "user_code" not in flow:
        raise entra.with_wait(errors.from_answer(errors.ENTRA, flow, acct.name), session)
    return Flow(flow, (app, cache, session))


def finish_device_flow(acct: Account, flow: Flow, exit_condition: ExitCondition) -> Grant:
    app, cache, session = flow.context
    result = entra.call(
        acct, lambda: app.acquire_token_by_device_flow(flow.info, exit_condition=exit_condition), session
    )
    again = f"run 'mailtoken login {acct.name}' again"
    if result.get("error") == "authorization_pending":
        raise SignInRequired(f"sign-in not completed in time: {again}", account=acct.name)
    if result.get("error") == "expired_token":
        raise SignInRequired(f"the code expired before sign-in finished: {again}", account=acct.name)
    if result.get("error") in ("access_denied", "authorization_declined"):
        raise SignInRequired(f"sign-in was declined: {again} to retry", account=acct.name)
    return entra.grant(acct, result, lambda: _blob(cache), session)


def resume_device_flow(acct: Account, info: dict[str, Any], exit_condition: ExitCondition, timeout: float) -> Grant:
    """Finish a device flow that another process started (`login --no-wait`, then `login --resume`)."""
    import msal

    cache = msal.SerializableTokenCache()
    session = entra.session(acct, timeout)
    return finish_device_flow(acct, Flow(info, (_app(acct, cache, session), cache, session)), exit_condition)


def start_auth_code_flow(acct: Account, redirect_uri: str, timeout: float, consent: bool = False) -> Flow:
    import msal

    cache = msal.SerializableTokenCache()
    session = entra.session(acct, timeout)
    app = _app(acct, cache, session)
    with warnings.catch_warnings():
        # msal warns about the query response mode; our loopback receiver reads the query, and stderr is the user's.
        warnings.simplefilter("ignore", UserWarning)
        flow = entra.call(
            acct,
            # The Graph scopes ride along for consent only (msal's extra_scopes_to_consent, which only its own
            # acquire_token_interactive has): the authorize request may name several resources, the code's
            # redemption names one (finish_auth_code_flow).
            lambda: app.initiate_auth_code_flow(
                scopes_for(acct) + _extra_consent(acct),
                redirect_uri=redirect_uri,
                login_hint=acct.email,
                **({"prompt": "consent"} if consent else {}),
            ),
        )
    return Flow(flow, (app, cache, session))


def finish_auth_code_flow(acct: Account, flow: Flow, response: dict[str, str]) -> Grant:
    app, cache, session = flow.context
    if response.get("state") != flow.info.get("state"):
        raise SignInRequired(
            "the browser's answer does not belong to this sign-in (state mismatch): try again", account=acct.name
        )
    if "error" in response:
        raise errors.from_answer(errors.ENTRA, response, acct.name)
    result = entra.call(
        acct, lambda: app.acquire_token_by_auth_code_flow(flow.info, response, scopes=scopes_for(acct)), session
    )
    return entra.grant(acct, result, lambda: _blob(cache), session)
