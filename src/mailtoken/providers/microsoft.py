"""Microsoft identity platform through msal (PublicClientApplication): device code, auth code + PKCE, refresh.

msal is imported here only, and only when a network call is due.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .. import providers
from ..config import Account
from ..errors import ConfigError, MailtokenError, SignInRequired, TemporaryFailure

# msal logs token responses at ERROR when they are not JSON; keep its records off stderr.
logging.getLogger("msal").addHandler(logging.NullHandler())
logging.getLogger("msal").propagate = False


@dataclass
class Grant:
    """What a successful sign-in or refresh yields: the new access token and the grant to store."""

    access_token: str
    expires_in: int
    blob: str
    username: str


def authority_for(acct: Account) -> str:
    if acct.authority:
        return acct.authority
    return f"{providers.cloud(acct.provider, acct.cloud)['authority_host']}/{acct.tenant}"


def scopes_for(acct: Account) -> list[str]:
    resource = providers.cloud(acct.provider, acct.cloud)["resource"]
    return [f"{resource}/{scope}" for scope in providers.spec(acct.provider)["scopes"]]


def _network_error(exc: BaseException, acct: Account) -> MailtokenError:
    import requests

    if isinstance(exc, requests.exceptions.SSLError):
        what = "TLS verification failed (a proxy or REQUESTS_CA_BUNDLE may be wrong)"
    elif isinstance(exc, requests.exceptions.Timeout):
        what = "the identity platform did not answer in time"
    elif isinstance(exc, requests.exceptions.HTTPError) and exc.response is not None:
        what = f"the identity platform answered HTTP {exc.response.status_code}"
    elif isinstance(exc, requests.exceptions.ConnectionError):
        what = "cannot connect to the identity platform (network down or DNS failure?)"
    elif isinstance(exc, ValueError):
        what = "the identity platform sent an answer that is not valid JSON"
    else:
        what = f"network error ({type(exc).__name__})"
    return TemporaryFailure(f"temporary failure: {what}: try again later", account=acct.name)


def _call(acct: Account, fn: Callable[[], Any]) -> Any:
    """Run an msal call, turning transport failures into temporary errors (never a grant-killing one)."""
    import requests

    try:
        return fn()
    except MailtokenError:
        raise
    except requests.exceptions.RequestException as exc:
        raise _network_error(exc, acct) from None
    except ValueError as exc:
        text = str(exc)
        if "Unable to get authority configuration" in text:
            raise ConfigError(
                f"the identity platform does not know the authority {authority_for(acct)} "
                "(check tenant/authority in the config)",
                account=acct.name,
            ) from None
        raise _network_error(exc, acct) from None


def _app(acct: Account, cache: Any, timeout: float) -> Any:
    import msal

    kwargs: dict[str, Any] = {}
    if acct.authority:
        # A custom authority (national cloud, test server) must not trigger instance discovery at Microsoft.
        kwargs["instance_discovery"] = False
    return _call(
        acct,
        lambda: msal.PublicClientApplication(
            acct.client_id, authority=authority_for(acct), token_cache=cache, timeout=timeout, **kwargs
        ),
    )


def _blob(cache: Any) -> str:
    # Access tokens live in the record; storing them in the grant would only grow it.
    data = json.loads(cache.serialize())
    data["AccessToken"] = {}
    return json.dumps(data, separators=(",", ":"), sort_keys=True)


def _grant(acct: Account, result: dict[str, Any] | None, cache: Any) -> Grant:
    if not result:
        raise SignInRequired(
            f"sign-in required (no usable grant): run 'mailtoken login {acct.name}'", account=acct.name
        )
    if "error" in result:
        raise providers.error_from_response(result, acct.name)
    claims = result.get("id_token_claims") or {}
    return Grant(
        access_token=result["access_token"],
        expires_in=int(result.get("expires_in", 3600)),
        blob=_blob(cache),
        username=str(claims.get("preferred_username") or ""),
    )


def refresh(acct: Account, blob: str, timeout: float) -> Grant:
    import msal

    cache = msal.SerializableTokenCache()
    try:
        cache.deserialize(blob)
    except ValueError:
        raise SignInRequired(
            f"sign-in required (the stored grant is unreadable): run 'mailtoken login {acct.name}'", account=acct.name
        ) from None
    app = _app(acct, cache, timeout)
    accounts = app.get_accounts()
    if not accounts:
        raise SignInRequired(
            f"sign-in required (no account in the grant): run 'mailtoken login {acct.name}'", account=acct.name
        )
    by_name = [a for a in accounts if (a.get("username") or "").lower() == acct.email.lower()]
    account = (by_name or accounts)[0]
    # We decide when to refresh (record.refresh_at), so always ask msal for a new token here.
    result = _call(
        acct, lambda: app.acquire_token_silent_with_error(scopes_for(acct), account=account, force_refresh=True)
    )
    return _grant(acct, result, cache)


def start_device_flow(acct: Account, timeout: float) -> tuple[Any, Any, dict[str, Any]]:
    import msal

    cache = msal.SerializableTokenCache()
    app = _app(acct, cache, timeout)
    flow = _call(acct, lambda: app.initiate_device_flow(scopes=scopes_for(acct)))
    if "user_code" not in flow:
        raise providers.error_from_response(flow, acct.name)
    return app, cache, flow


def finish_device_flow(
    acct: Account, app: Any, cache: Any, flow: dict[str, Any], exit_condition: Callable[[dict[str, Any]], bool]
) -> Grant:
    result = _call(acct, lambda: app.acquire_token_by_device_flow(flow, exit_condition=exit_condition))
    if result.get("error") == "authorization_pending":
        raise SignInRequired("sign-in not completed in time: run 'mailtoken login' again", account=acct.name)
    if result.get("error") == "expired_token":
        raise SignInRequired("the code expired before sign-in finished: run 'mailtoken login' again", account=acct.name)
    if result.get("error") in ("access_denied", "authorization_declined"):
        raise SignInRequired("sign-in was declined: run 'mailtoken login' again to retry", account=acct.name)
    return _grant(acct, result, cache)


def start_auth_code_flow(acct: Account, redirect_uri: str, timeout: float) -> tuple[Any, Any, dict[str, Any]]:
    import msal

    cache = msal.SerializableTokenCache()
    app = _app(acct, cache, timeout)
    with warnings.catch_warnings():
        # msal warns about the query response mode; our loopback receiver reads the query, and stderr is the user's.
        warnings.simplefilter("ignore", UserWarning)
        flow = _call(
            acct,
            lambda: app.initiate_auth_code_flow(scopes_for(acct), redirect_uri=redirect_uri, login_hint=acct.email),
        )
    return app, cache, flow


def finish_auth_code_flow(acct: Account, app: Any, cache: Any, flow: dict[str, Any], response: dict[str, str]) -> Grant:
    if response.get("state") != flow.get("state"):
        raise SignInRequired(
            "the browser's answer does not belong to this sign-in (state mismatch): try again", account=acct.name
        )
    if "error" in response:
        raise providers.error_from_response(response, acct.name)
    result = _call(acct, lambda: app.acquire_token_by_auth_code_flow(flow, response))
    return _grant(acct, result, cache)
