"""OAuth 2.0 / OpenID Connect on the standard library, for the providers msal cannot serve (Google, any other).

msal rejects an authority without a path segment (https://accounts.google.com), refuses a secret in a public
client (Google's desktop apps have a non-confidential one) and cannot send Google's access_type=offline. This
client speaks the protocol itself: discovery (OpenID Connect Discovery / RFC 8414), authorization code + PKCE
(RFC 7636), device authorization (RFC 8628), and refresh honouring rotation (a new refresh token replaces the
old one; none back means the old one stays). Provider quirks come from catalog.toml, error advice from
oauth2_errors.toml. It has the same functions as providers/microsoft.py and returns the same Grant.

The grant blob is JSON: the refresh token plus where and how to redeem it, so a refresh needs no discovery.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

from .. import providers
from ..config import Account
from ..errors import ConfigError, MailtokenError, SignInRequired, TemporaryFailure, UsageError
from . import credentials, httpjson
from .base import ConsentNeeded, Grant, url_problem

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
ENDPOINT_KEYS = ("authorization_endpoint", "token_endpoint", "device_authorization_endpoint")
BLOB_FORMAT = "mailtoken-oauth2"
_KINDS = {
    "signin": (SignInRequired, "sign-in required"),
    "config": (ConfigError, "the provider refused the request"),
    "temporary": (TemporaryFailure, "temporary failure at the provider"),
}


# --- settings -------------------------------------------------------------------------------------------


def _spec(acct: Account) -> dict[str, Any]:
    return providers.spec(acct.provider)


def scopes_for(acct: Account) -> list[str]:
    return list(acct.scopes) or list(_spec(acct).get("scopes", []))


def issuer_for(acct: Account) -> str | None:
    return acct.issuer or _spec(acct).get("issuer")


def check_url(url: str, what: str) -> str:
    problem = url_problem(url)
    if problem:
        raise ConfigError(f"{what} {problem}, not '{url}'")
    return url


def _error(acct: Account, status: int, doc: dict[str, Any], retry: str | None, refreshing: bool) -> MailtokenError:
    """The error the user sees for an OAuth error answer; unknown errors count as temporary."""
    error = str(doc.get("error") or "")
    if status == 429 or status >= 500 or not error:
        return httpjson.temporary(
            f"the provider answered HTTP {status}" + (f" ({error})" if error else ""), acct, retry
        )
    entry = providers.oauth2_error(acct.provider, error)
    cls, what = _KINDS[entry["kind"]]
    summary = _first_sentence(str(doc.get("error_description") or ""))
    cause = f"{error}: {summary}" if summary else error
    result = cls(
        f"{what} ({cause}): {entry['advice'].format(account=acct.name)}",
        account=acct.name,
        detail="; ".join(f"{k}={doc[k]}" for k in ("error_description", "error_uri") if doc.get(k)) or None,
    )
    if isinstance(result, TemporaryFailure):
        result.retry_after = httpjson.retry_seconds(retry)
    if isinstance(result, SignInRequired) and refreshing and error == "invalid_grant":
        result.grant_rejected = True  # the provider's verdict on this refresh token: it will not come back
    return result


def _first_sentence(text: str) -> str:
    text = text.replace("\r", " ").replace("\n", " ").strip()
    return text.split(". ")[0].rstrip(".")[:120]


# --- endpoints, client authentication ------------------------------------------------------------------------


def endpoints(acct: Account, timeout: float, known: dict[str, Any] | None = None) -> dict[str, Any]:
    """Where to send each request: the account's keys, then the catalog's, then what is `known` (a grant made
    with the same issuer), then discovery at the issuer."""
    spec = _spec(acct)
    issuer = issuer_for(acct)
    found: dict[str, Any] = {k: getattr(acct, k, None) or spec.get(k) for k in ENDPOINT_KEYS}
    found["issuer"] = issuer
    found["auth_methods"] = spec.get("auth_methods")
    if known and known.get("issuer") == issuer:
        for key in (*ENDPOINT_KEYS, "auth_methods"):
            found[key] = found.get(key) or known.get(key)
    # At sign-in, discover what the config leaves out; at a refresh, only a missing token endpoint.
    missing = not found["token_endpoint"] or (known is None and not all(found[k] for k in ENDPOINT_KEYS))
    if issuer and missing:
        doc = _discover(acct, issuer, timeout)
        for key in ENDPOINT_KEYS:
            found[key] = found[key] or doc.get(key)
        found["auth_methods"] = found["auth_methods"] or doc.get("token_endpoint_auth_methods_supported")
    if not found["token_endpoint"]:
        raise ConfigError(
            f"no token endpoint for provider '{acct.provider}': set issuer (for discovery) or token_endpoint",
            account=acct.name,
        )
    for key in ENDPOINT_KEYS:
        if found[key]:
            check_url(found[key], key)
    return found


def _discover(acct: Account, issuer: str, timeout: float) -> dict[str, Any]:
    url = check_url(issuer, "issuer").rstrip("/") + "/.well-known/openid-configuration"
    status, doc, retry = httpjson.exchange(acct, url, timeout)
    if status != 200:
        if status == 429 or status >= 500:
            raise httpjson.temporary(f"discovery at {url} answered HTTP {status}", acct, retry)
        raise ConfigError(f"discovery at {url} answered HTTP {status}: check issuer", account=acct.name)
    # OpenID Connect Discovery 1.0 section 4.3: a document for another issuer must not be used (mix-up).
    if str(doc.get("issuer", "")).rstrip("/") != issuer.rstrip("/"):
        raise ConfigError(
            f"discovery at {url} names another issuer ('{doc.get('issuer')}'): check issuer", account=acct.name
        )
    return doc


def _authenticate(acct: Account, form: dict[str, str], methods: list[str] | None, timeout: float) -> dict[str, str]:
    """Add the client's identity to a token request; returns extra headers (HTTP Basic, when that is the way)."""
    secret = credentials.client_secret(acct, timeout)
    if secret is None:
        form["client_id"] = acct.client_id
        return {}
    if methods and "client_secret_post" not in methods and "client_secret_basic" in methods:
        pair = f"{urllib.parse.quote(acct.client_id, safe='')}:{urllib.parse.quote(secret, safe='')}"
        return {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode()}
    form.update(client_id=acct.client_id, client_secret=secret)
    return {}


def _token_request(
    acct: Account, where: dict[str, Any], form: dict[str, str], timeout: float, hold: bool = False
) -> tuple[int, dict[str, Any], str | None]:
    headers = _authenticate(acct, form, where.get("auth_methods"), timeout)
    return httpjson.exchange(acct, where["token_endpoint"], timeout, form, headers, hold=hold)


# --- grants -----------------------------------------------------------------------------------------------


def _claims(id_token: Any) -> dict[str, Any]:
    """The id_token's claims, unverified: used only to show who signed in, never to decide anything."""
    try:
        payload = str(id_token).split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, TypeError):
        return {}
    return claims if isinstance(claims, dict) else {}


def _grant(acct: Account, doc: dict[str, Any], where: dict[str, Any], old: dict[str, Any] | None = None) -> Grant:
    token = doc.get("access_token")
    if not isinstance(token, str) or not token or any(c in token for c in "\r\n"):
        raise httpjson.temporary("the provider's answer holds no usable access token", acct)
    # Rotation: a new refresh token replaces the old one; an answer without one keeps the old (Google never rotates).
    refresh_token = doc.get("refresh_token") or (old or {}).get("refresh_token")
    if not refresh_token:
        if _spec(acct).get("consent_params"):
            raise ConsentNeeded()
        raise ConfigError(
            "the provider signed you in but issued no refresh token: add offline_access to scopes, or allow "
            "refresh tokens for the app at the provider",
            account=acct.name,
        )
    claims = _claims(doc.get("id_token"))
    username = str(claims.get("email") or claims.get("preferred_username") or (old or {}).get("username") or "")
    blob = {
        "format": BLOB_FORMAT,
        "client_id": acct.client_id,
        "refresh_token": refresh_token,
        "username": username,
        **{k: where.get(k) for k in ("issuer", "token_endpoint", "auth_methods")},
    }
    try:
        expires_in = int(doc.get("expires_in") or 3600)
    except (TypeError, ValueError):
        expires_in = 3600
    return Grant(token, max(expires_in, 1), json.dumps(blob, separators=(",", ":"), sort_keys=True), username)


def refresh(acct: Account, blob: str, timeout: float) -> Grant:
    try:
        old = json.loads(blob)
        if old.get("format") != BLOB_FORMAT or not old.get("refresh_token"):
            raise ValueError
    except (ValueError, AttributeError):
        raise SignInRequired(
            f"sign-in required (the stored grant is not one for provider '{acct.provider}'): "
            f"run 'mailtoken login {acct.name}'",
            account=acct.name,
        ) from None
    if old.get("client_id") != acct.client_id:
        raise SignInRequired(
            f"sign-in required (client_id changed since sign-in): run 'mailtoken login {acct.name}'", account=acct.name
        )
    where = endpoints(acct, timeout, known=old)
    form = {"grant_type": "refresh_token", "refresh_token": old["refresh_token"]}
    status, doc, retry = _token_request(acct, where, form, timeout, hold=True)
    if status != 200 or "error" in doc:
        raise _error(acct, status, doc, retry, refreshing=True)
    return _grant(acct, doc, where, old)


# --- device authorization (RFC 8628) ----------------------------------------------------------------------


def start_device_flow(acct: Account, timeout: float) -> tuple[None, None, dict[str, Any]]:
    spec = _spec(acct)
    if not spec.get("device_flow", True):
        raise UsageError(
            f"{spec['device_flow_refused']}: run 'mailtoken login {acct.name} --browser', or --paste on a machine "
            "without a browser",
            account=acct.name,
        )
    where = endpoints(acct, timeout)
    if not where.get("device_authorization_endpoint"):
        raise ConfigError(
            "the provider has no device authorization endpoint (set device_authorization_endpoint, or sign in "
            f"with 'mailtoken login {acct.name} --browser' or --paste)",
            account=acct.name,
        )
    form = {"scope": " ".join(scopes_for(acct))}
    headers = _authenticate(acct, form, where.get("auth_methods"), timeout)
    status, doc, retry = httpjson.exchange(acct, where["device_authorization_endpoint"], timeout, form, headers)
    if status != 200 or "error" in doc:
        raise _error(acct, status, doc, retry, refreshing=False)
    uri = doc.get("verification_uri") or doc.get("verification_url")  # Google says _url
    if not doc.get("device_code") or not doc.get("user_code") or not uri:
        raise httpjson.temporary("the provider's device authorization answer is incomplete", acct)
    flow = {
        "device_code": doc["device_code"],
        "user_code": doc["user_code"],
        "verification_uri": uri,
        "verification_uri_complete": doc.get("verification_uri_complete"),
        "interval": max(1, int(doc.get("interval") or 5)),
        "expires_at": time.time() + int(doc.get("expires_in") or 600),
        "timeout": timeout,
        **{k: where.get(k) for k in ("issuer", "token_endpoint", "auth_methods")},
    }
    return None, None, flow


def finish_device_flow(
    acct: Account, app: Any, cache: Any, flow: dict[str, Any], exit_condition: Callable[[dict[str, Any]], bool]
) -> Grant:
    interval = float(flow.get("interval") or 5)
    while True:
        # Check before sleeping and after: the caller's deadline, not the interval, decides when to give up.
        if exit_condition(flow):
            raise SignInRequired("sign-in not completed in time: run 'mailtoken login' again", account=acct.name)
        time.sleep(interval)
        if exit_condition(flow):
            raise SignInRequired("sign-in not completed in time: run 'mailtoken login' again", account=acct.name)
        form = {"grant_type": DEVICE_GRANT, "device_code": flow["device_code"]}
        status, doc, retry = _token_request(acct, flow, form, float(flow.get("timeout") or 30.0))
        error = str(doc.get("error") or "")
        if status == 200 and not error:
            return _grant(acct, doc, flow)
        if error == "authorization_pending":
            continue
        if error == "slow_down":
            interval += 5  # RFC 8628 section 3.5, for this and every later request
            continue
        if error == "expired_token":
            raise SignInRequired(
                "the code expired before sign-in finished: run 'mailtoken login' again", account=acct.name
            )
        if error in ("access_denied", "authorization_declined"):
            raise SignInRequired("sign-in was declined: run 'mailtoken login' again to retry", account=acct.name)
        raise _error(acct, status, doc, retry, refreshing=False)


def resume_device_flow(
    acct: Account, flow: dict[str, Any], exit_condition: Callable[[dict[str, Any]], bool], timeout: float
) -> Grant:
    """Finish a device flow that another process started (`login --no-wait`, then `login --resume`)."""
    return finish_device_flow(acct, None, None, flow, exit_condition)


# --- authorization code + PKCE ----------------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def start_auth_code_flow(
    acct: Account, redirect_uri: str, timeout: float, consent: bool = False
) -> tuple[None, None, dict[str, Any]]:
    spec = _spec(acct)
    where = endpoints(acct, timeout)
    if not where.get("authorization_endpoint"):
        raise ConfigError(
            "the provider has no authorization endpoint: set authorization_endpoint, or issuer for discovery",
            account=acct.name,
        )
    verifier = secrets.token_urlsafe(64)  # 86 characters, within RFC 7636's 43..128
    state = secrets.token_urlsafe(24)
    params = {
        "response_type": "code",
        "client_id": acct.client_id,
        "redirect_uri": redirect_uri,
        "scope": " ".join(scopes_for(acct)),
        "state": state,
        "code_challenge": _b64url(hashlib.sha256(verifier.encode()).digest()),
        "code_challenge_method": "S256",
        "login_hint": acct.email,
        **spec.get("auth_params", {}),
        **(spec.get("consent_params", {}) if consent else {}),
    }
    url = where["authorization_endpoint"]
    flow = {
        "auth_uri": url + ("&" if "?" in url else "?") + urllib.parse.urlencode(params),
        "state": state,
        "code_verifier": verifier,
        "redirect_uri": redirect_uri,
        "timeout": timeout,
        **{k: where.get(k) for k in ("issuer", "token_endpoint", "auth_methods")},
    }
    return None, None, flow


def finish_auth_code_flow(acct: Account, app: Any, cache: Any, flow: dict[str, Any], response: dict[str, str]) -> Grant:
    if response.get("state") != flow.get("state"):
        raise SignInRequired(
            "the browser's answer does not belong to this sign-in (state mismatch): try again", account=acct.name
        )
    if response.get("error") in ("access_denied", "authorization_declined"):
        raise SignInRequired("sign-in was declined: run 'mailtoken login' again to retry", account=acct.name)
    if "error" in response:
        raise _error(acct, 400, response, None, refreshing=False)
    # RFC 9207: an answer naming another issuer comes from a different provider (mix-up attack).
    if response.get("iss") and flow.get("issuer") and response["iss"].rstrip("/") != flow["issuer"].rstrip("/"):
        raise SignInRequired(
            "the browser's answer comes from another provider (issuer mismatch): try again", account=acct.name
        )
    if not response.get("code"):
        raise SignInRequired("the browser's answer holds no authorization code: try again", account=acct.name)
    form = {
        "grant_type": "authorization_code",
        "code": response["code"],
        "redirect_uri": flow["redirect_uri"],
        "code_verifier": flow["code_verifier"],
    }
    status, doc, retry = _token_request(acct, flow, form, float(flow.get("timeout") or 30.0))
    if status != 200 or "error" in doc:
        raise _error(acct, status, doc, retry, refreshing=False)
    return _grant(acct, doc, flow)
