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
from typing import Any

from .. import jwtclaims, providers
from ..config import Account
from ..errors import ConfigError, MailtokenError, SignInRequired, UsageError
from . import credentials, errors, http
from .base import ConsentNeeded, ExitCondition, Flow, Grant, RotatedGrant, token_problem, url_problem

grantless = False

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
ENDPOINT_KEYS = ("authorization_endpoint", "token_endpoint", "device_authorization_endpoint")
BLOB_FORMAT = "mailtoken-oauth2"


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
    """The error the user sees for an OAuth error answer: the one classification (providers/errors.py)."""
    return errors.from_answer(acct.provider, doc, acct.name, status=status, retry_after=retry, refreshing=refreshing)


def _temporary(what: str, acct: Account, retry: str | None = None) -> MailtokenError:
    return errors.temporary(what, acct.name, acct.provider, retry)


def _exchange(
    acct: Account,
    url: str,
    timeout: float,
    form: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    hold: bool = False,
) -> tuple[int, dict[str, Any], str | None, str | None]:
    return http.exchange(acct.name, url, timeout, form, headers, family=acct.provider, hold=hold)


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
    status, doc, retry, _ = _exchange(acct, url, timeout)
    if status != 200:
        if status == 429 or status >= 500:
            raise _temporary(f"discovery at {url} answered HTTP {status}", acct, retry)
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
) -> tuple[int, dict[str, Any], str | None, str | None]:
    headers = _authenticate(acct, form, where.get("auth_methods"), timeout)
    return _exchange(acct, where["token_endpoint"], timeout, form, headers, hold=hold)


# --- grants -----------------------------------------------------------------------------------------------


def _grant(acct: Account, doc: dict[str, Any], where: dict[str, Any], old: dict[str, Any] | None = None) -> Grant:
    # Rotation: a new refresh token replaces the old one; an answer without one keeps the old (Google never rotates).
    rotated = doc.get("refresh_token") if isinstance(doc.get("refresh_token"), str) else None
    refresh_token = rotated or (old or {}).get("refresh_token")
    if not refresh_token:
        if _spec(acct).get("consent_params"):
            raise ConsentNeeded()
        raise ConfigError(
            "the provider signed you in but issued no refresh token: add offline_access to scopes, or allow "
            "refresh tokens for the app at the provider",
            account=acct.name,
        )
    # Unverified: the id_token only says who signed in (to warn about a wrong account), never decides anything.
    claims = jwtclaims.unverified(doc.get("id_token"))
    username = str(claims.get("email") or claims.get("preferred_username") or (old or {}).get("username") or "")
    blob = {
        "format": BLOB_FORMAT,
        "client_id": acct.client_id,
        "refresh_token": refresh_token,
        "username": username,
        **{k: where.get(k) for k in ("issuer", "token_endpoint", "auth_methods")},
    }
    text = json.dumps(blob, separators=(",", ":"), sort_keys=True)
    token, lifetime = doc.get("access_token"), doc.get("expires_in") or 3600
    problem = token_problem(token, lifetime)
    if problem:
        error = _temporary(f"the provider's answer {problem}", acct)
        # The new refresh token is saved before the rest of the answer is judged: it may be the only one left.
        raise RotatedGrant(text, error) if rotated else error
    return Grant(str(token), int(lifetime), text, username)


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
    status, doc, retry, _ = _token_request(acct, where, form, timeout, hold=True)
    if status != 200 or "error" in doc:
        raise _error(acct, status, doc, retry, refreshing=True)
    return _grant(acct, doc, where, old)


# --- device authorization (RFC 8628) ----------------------------------------------------------------------


def start_device_flow(acct: Account, timeout: float) -> Flow:
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
    status, doc, retry, _ = _exchange(acct, where["device_authorization_endpoint"], timeout, form, headers)
    if status != 200 or "error" in doc:
        raise _error(acct, status, doc, retry, refreshing=False)
    uri = doc.get("verification_uri") or doc.get("verification_url")  # Google says _url
    if not doc.get("device_code") or not doc.get("user_code") or not uri:
        raise _temporary("the provider's device authorization answer is incomplete", acct)
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
    return Flow(flow)


def finish_device_flow(acct: Account, flow: Flow, exit_condition: ExitCondition) -> Grant:
    info = flow.info
    interval = float(info["interval"])
    again = f"run 'mailtoken login {acct.name}' again"
    while True:
        # Check before sleeping and after: the caller's deadline, not the interval, decides when to give up.
        if exit_condition(info):
            raise SignInRequired(f"sign-in not completed in time: {again}", account=acct.name)
        time.sleep(interval)
        if exit_condition(info):
            raise SignInRequired(f"sign-in not completed in time: {again}", account=acct.name)
        form = {"grant_type": DEVICE_GRANT, "device_code": info["device_code"]}
        status, doc, retry, _ = _token_request(acct, info, form, float(info["timeout"]))
        error = str(doc.get("error") or "")
        if status == 200 and not error:
            return _grant(acct, doc, info)
        if error == "authorization_pending":
            continue
        if error == "slow_down":
            interval += 5  # RFC 8628 section 3.5, for this and every later request
            continue
        if error == "expired_token":
            raise SignInRequired(f"the code expired before sign-in finished: {again}", account=acct.name)
        if error in ("access_denied", "authorization_declined"):
            raise SignInRequired(f"sign-in was declined: {again} to retry", account=acct.name)
        raise _error(acct, status, doc, retry, refreshing=False)


def resume_device_flow(acct: Account, info: dict[str, Any], exit_condition: ExitCondition, timeout: float) -> Grant:
    """Finish a device flow that another process started (`login --no-wait`, then `login --resume`)."""
    return finish_device_flow(acct, Flow({**info, "timeout": timeout}), exit_condition)


# --- authorization code + PKCE ----------------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def start_auth_code_flow(acct: Account, redirect_uri: str, timeout: float, consent: bool = False) -> Flow:
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
    return Flow(flow)


def finish_auth_code_flow(acct: Account, flow_: Flow, response: dict[str, str]) -> Grant:
    flow = flow_.info
    if response.get("state") != flow.get("state"):
        raise SignInRequired(
            "the browser's answer does not belong to this sign-in (state mismatch): try again", account=acct.name
        )
    if response.get("error") in ("access_denied", "authorization_declined"):
        raise SignInRequired(
            f"sign-in was declined: run 'mailtoken login {acct.name}' again to retry", account=acct.name
        )
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
    status, doc, retry, _ = _token_request(acct, flow, form, float(flow["timeout"]))
    if status != 200 or "error" in doc:
        raise _error(acct, status, doc, retry, refreshing=False)
    return _grant(acct, doc, flow)
