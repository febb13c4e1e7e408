"""Microsoft identity platform through msal (PublicClientApplication): device code, auth code + PKCE, refresh.

msal is imported here only, and only when a network call is due.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Callable
from typing import Any

from .. import providers
from ..config import Account
from ..errors import ConfigError, MailtokenError, SignInRequired, TemporaryFailure
from .base import Grant

# msal logs token responses at ERROR when they are not JSON; keep its records off stderr.
logging.getLogger("msal").addHandler(logging.NullHandler())
logging.getLogger("msal").propagate = False


def authority_for(acct: Account) -> str:
    if acct.authority:
        return acct.authority
    return f"{providers.cloud(acct.provider, acct.cloud)['authority_host']}/{acct.tenant}"


def scopes_for(acct: Account, resource: str | None = None) -> list[str]:
    """The delegated scopes of one token request: the mail token's, or ("graph") the Graph token's."""
    if resource == "graph":
        from ..graph import scopes

        return scopes.delegated(acct)
    resource_url = providers.cloud(acct.provider, acct.cloud)["resource"]
    return [f"{resource_url}/{scope}" for scope in providers.spec(acct.provider)["scopes"]]


def _causes(exc: BaseException) -> list[BaseException]:
    """`exc` and what it wraps (requests wraps urllib3, which wraps the socket error)."""
    seen: list[BaseException] = []
    todo: list[object] = [exc]
    while todo and len(seen) < 20:
        item = todo.pop()
        if not isinstance(item, BaseException) or any(item is s for s in seen):
            continue
        seen.append(item)
        todo += [item.__cause__, item.__context__, getattr(item, "reason", None), *item.args]
    return seen


def _host(exc: BaseException) -> str:
    import urllib.parse

    request = getattr(exc, "request", None)
    url = getattr(request, "url", None) or ""
    # The host only: the path and query of a token request are harmless, but nothing else goes in a message.
    return urllib.parse.urlsplit(url).netloc or "the identity platform"


def _network_error(exc: BaseException, acct: Account) -> MailtokenError:
    import requests

    kinds = {type(c).__name__ for c in _causes(exc)}
    if isinstance(exc, requests.exceptions.SSLError):
        what = f"TLS with {_host(exc)} failed (a proxy, or REQUESTS_CA_BUNDLE, may be wrong)"
    elif isinstance(exc, requests.exceptions.Timeout):
        what = "the identity platform did not answer in time"
    elif isinstance(exc, requests.exceptions.HTTPError) and exc.response is not None:
        what = f"the identity platform answered HTTP {exc.response.status_code}"
    elif isinstance(exc, requests.exceptions.ChunkedEncodingError) or "IncompleteRead" in kinds:
        what = "the identity platform's answer was cut off"
    elif "NameResolutionError" in kinds or "gaierror" in kinds:
        what = f"cannot resolve {_host(exc)} (DNS failure, or offline?)"
    elif "ConnectionRefusedError" in kinds:
        what = f"{_host(exc)} refused the connection (network down, or a proxy needed?)"
    elif "RemoteDisconnected" in kinds or "ConnectionResetError" in kinds:
        what = "the identity platform closed the connection without answering"
    elif isinstance(exc, requests.exceptions.ConnectionError):
        what = "cannot connect to the identity platform (network down or DNS failure?)"
    elif isinstance(exc, ValueError):
        what = "the identity platform sent an answer that is not valid JSON"
    else:
        what = f"network error ({type(exc).__name__})"
    return _temporary(what, acct)


def _temporary(what: str, acct: Account) -> TemporaryFailure:
    return _with_wait(TemporaryFailure(f"temporary failure: {what}: try again later", account=acct.name))


def _with_wait(error: TemporaryFailure) -> TemporaryFailure:
    """Say how long the identity platform asked us to wait, when its answer had a Retry-After."""
    wait = _answers.retry_after
    if wait:
        error.retry_after = wait
        later = "try again later"
        base = error.message[: -len(later)] if error.message.endswith(later) else error.message + ": "
        error.message = f"{base}try again in {wait} s (the identity platform asked to wait)"
    return error


class _Answers:
    """What the last HTTP answer said beyond its body: msal keeps the headers to itself."""

    retry_after: int | None = None
    # Set while refreshing: once an answer is in, it may carry a rotated refresh token (see deadline.hold).
    hold_on_answer = False


_answers = _Answers()


def _retry_after(value: str | None) -> int | None:
    if not value:
        return None
    try:
        seconds = int(value.strip())
    except ValueError:
        import email.utils
        import time

        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = int(when.timestamp() - time.time())
    return max(1, min(seconds, 600))  # a bogus header must not stop refreshes for long


def _session(timeout: float) -> Any:
    """The HTTP client for msal: what msal would build itself (a timeout, one retry for failed connects), and
    a look at each answer's status line and Retry-After."""
    import requests
    import requests.adapters

    from .. import deadline

    class Session(requests.Session):
        def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            kwargs.setdefault("timeout", timeout)
            response = super().request(method, url, *args, **kwargs)
            if _answers.hold_on_answer and method.upper() == "POST" and response.status_code == 200:
                deadline.hold()  # this answer may hold the rotated refresh token: nothing may drop it now
            if response.status_code == 429 or response.status_code >= 500:
                _answers.retry_after = _retry_after(response.headers.get("Retry-After"))
            return response

    _answers.retry_after = None
    session = Session()
    adapter = requests.adapters.HTTPAdapter(max_retries=1)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def _call(acct: Account, fn: Callable[[], Any]) -> Any:
    """Run an msal call, turning transport failures into temporary errors (never a grant-killing one)."""
    import requests
    from msal.exceptions import MsalServiceError

    try:
        return fn()
    except MailtokenError:
        raise
    except requests.exceptions.RequestException as exc:
        raise _network_error(exc, acct) from None
    except MsalServiceError as exc:
        # msal raises this for an HTTP 5xx answer ("HTTP Error: 503"), before looking at its body.
        status = str(exc).rsplit(" ", 1)[-1]
        raise _temporary(f"the identity platform answered HTTP {status}", acct) from None
    except ValueError as exc:
        text = str(exc)
        if "Unable to get authority configuration" in text and not isinstance(exc.__context__, json.JSONDecodeError):
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
            acct.client_id,
            authority=authority_for(acct),
            token_cache=cache,
            http_client=_session(timeout),
            **kwargs,
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
        error = providers.error_from_response(result, acct.name)
        raise _with_wait(error) if isinstance(error, TemporaryFailure) else error
    claims = result.get("id_token_claims") or {}
    return Grant(
        access_token=result["access_token"],
        expires_in=int(result.get("expires_in", 3600)),
        blob=_blob(cache),
        username=str(claims.get("preferred_username") or ""),
    )


def refresh(acct: Account, blob: str, timeout: float, resource: str | None = None) -> Grant:
    import msal

    if providers.app_only(acct):  # client credentials: no grant, a new token from the app's own credential
        from . import microsoft_app

        return microsoft_app.acquire(acct, timeout, resource)
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
    _answers.hold_on_answer = True
    try:
        result = _call(
            # Entra's refresh tokens are multi-resource: the same grant yields the Graph token (if consented).
            acct,
            lambda: app.acquire_token_silent_with_error(
                scopes_for(acct, resource), account=account, force_refresh=True
            ),
        )
    finally:
        _answers.hold_on_answer = False
    return _grant(acct, result, cache)


def start_device_flow(acct: Account, timeout: float, resource: str | None = None) -> tuple[Any, Any, dict[str, Any]]:
    import msal

    cache = msal.SerializableTokenCache()
    app = _app(acct, cache, timeout)
    # One resource per device code: Entra lets /devicecode consent to several, then refuses to redeem the code
    # (AADSTS28000); graph/consent.py asks for a second code when the Graph scopes were never consented.
    flow = _call(acct, lambda: app.initiate_device_flow(scopes=scopes_for(acct, resource)))
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
        # The Graph scopes ride along for consent only (msal's extra_scopes_to_consent, which only its own
        # acquire_token_interactive has): the authorize request may name several resources, the code's
        # redemption names one (finish_auth_code_flow).
        flow = _call(
            acct,
            lambda: app.initiate_auth_code_flow(
                scopes_for(acct) + _extra_consent(acct), redirect_uri=redirect_uri, login_hint=acct.email
            ),
        )
    return app, cache, flow


def finish_auth_code_flow(acct: Account, app: Any, cache: Any, flow: dict[str, Any], response: dict[str, str]) -> Grant:
    if response.get("state") != flow.get("state"):
        raise SignInRequired(
            "the browser's answer does not belong to this sign-in (state mismatch): try again", account=acct.name
        )
    if "error" in response:
        raise providers.error_from_response(response, acct.name)
    result = _call(acct, lambda: app.acquire_token_by_auth_code_flow(flow, response, scopes=scopes_for(acct)))
    return _grant(acct, result, cache)


def _extra_consent(acct: Account) -> list[str]:
    """Scopes of other resources this account's sign-in consents to (Graph's, for send = "graph")."""
    return scopes_for(acct, "graph") if getattr(acct, "send", "smtp") == "graph" else []


def resume_device_flow(
    acct: Account, flow: dict[str, Any], exit_condition: Callable[[dict[str, Any]], bool], timeout: float
) -> Grant:
    """Finish a device flow that another process started (`login --no-wait`, then `login --resume`)."""
    import msal

    cache = msal.SerializableTokenCache()
    return finish_device_flow(acct, _app(acct, cache, timeout), cache, flow, exit_condition)
