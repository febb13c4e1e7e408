"""A local fake of the Microsoft identity platform (Entra ID) v2 endpoints, driven by the real msal.

HTTPS listener (throwaway trustme CA): discovery, devicecode, token, authorize, /devicelogin.
Plain-http listener: /introspect (what Dovecot's oauth2 passdb calls) and /_control/* (drives a fake that
runs as a subprocess: ``python -m tests.fakes.entra --state-dir D``, see ``main``).

Deliberate differences from Entra: ``strict_rotation`` (Entra lets a refresh token be reused; a strict fake
catches clients that lose or race their rotated token), unsigned ``alg: none`` id_tokens (msal never checks
signatures), opaque access tokens, and ``deny()`` answering ``authorization_declined`` (Entra's name; RFC
8628 says ``access_denied``). Device-code polls faster than the flow's ``interval`` get ``slow_down``.
Served under the catalog's host (login.microsoftonline.com, through a resolver override in the client), it
answers msal's instance discovery and names that host in its documents.

Consent is kept per user and app, as at Entra: a refresh asking for a scope nobody consented to (a device
code's or an authorize request's scopes, or ``admin_consent``) answers AADSTS65001 consent_required, and an
authorize request may name several resources (extraScopesToConsent) while each token request names one.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import secrets
import signal
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections import deque
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

from ._https import Listener, Reply, Request, html_reply, json_reply, throwaway_tls

BAD_CLIENT_ID = "00000000-0000-0000-0000-000000000bad"
CONSUMERS_TID = "9188040d-6c67-4c5b-b112-36a304b66dad"  # Entra's fixed tenant id for personal accounts
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
RESERVED_SCOPES = frozenset({"openid", "profile", "offline_access"})
DEFAULT_SCOPE = "https://graph.microsoft.com/User.Read"  # what Entra grants when only OIDC scopes are asked
COUNT_KEYS = (
    "refresh_token",
    "device_code",
    "authorization_code",
    "devicecode",
    "discovery",
    "introspect",
    "token_errors",
    "authorize",
    "client_credentials",
    "instance_discovery",
    "slow_down",
)
# The global cloud's authority host (catalog.toml): a client whose resolver sends it here gets answers for it.
CATALOG_HOST = "login.microsoftonline.com"
FAULT_KINDS = frozenset({"status", "hang", "aadsts", "nonjson", "truncated", "close", "mangle", "redirect", "trickle"})
# What set() and /_control/set may change.
SETTABLE = frozenset(
    {
        "token_lifetime",
        "token_length",
        "refresh_token_length",
        "device_interval",
        "device_expires_in",
        "strict_rotation",
        "response_delay",
        "auto_approve",
    }
)
_CONSUMER_DOMAINS = frozenset({"outlook.com", "hotmail.com", "live.com", "msn.com"})
_GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)
_NS = uuid.UUID("5b1f3c9e-7f0a-4c51-9d0e-6a3f0e1d2c4b")  # fixed, so oid/tid are stable across runs
_USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"  # no vowels: no accidental words, no 0/O or 1/I confusion

# The constant part of Entra's v2 discovery document (msal itself reads only the endpoints and issuer).
_DISCOVERY: dict[str, Any] = {
    "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
    "response_modes_supported": ["query", "fragment", "form_post"],
    "subject_types_supported": ["pairwise"],
    "id_token_signing_alg_values_supported": ["RS256"],
    "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
    "scopes_supported": ["openid", "profile", "email", "offline_access"],
    "request_uri_parameter_supported": False,
    "http_logout_supported": True,
    "frontchannel_logout_supported": True,
    "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nonce", "preferred_username", "name", "tid", "ver"],
    "tenant_region_scope": None,
    "cloud_instance_name": "microsoftonline.com",
    "cloud_graph_host_name": "graph.windows.net",
    "msgraph_host": "graph.microsoft.com",
    "rbac_url": "https://pas.windows.net",
}
_ENDPOINTS = (
    ("token", "token"),
    ("authorization", "authorize"),
    ("device_authorization", "devicecode"),
    ("end_session", "logout"),
)

# Texts as Entra words them (abridged), so clients that show or parse them see realistic input.
_AADSTS_TEXT: dict[int, str] = {
    28000: "Provided value for the input parameter scope is not valid because it contains more than one resource.",
    50173: "The provided grant has expired due to it being revoked, a fresh auth token is needed.",
    54005: "OAuth2 Authorization code was already redeemed, please retry with a new valid code.",
    65004: "User declined to consent to access the app.",
    70000: "The provided value for the input parameter '{param}' is not valid. {why}",
    70003: "The app requested an unsupported grant type '{grant}'.",
    70008: "The provided authorization code or refresh token has expired due to inactivity.",
    70016: "OAuth 2.0 device flow error. Authorization is pending. Continue polling.",
    70019: "Verification code expired.",
    90002: "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID.",
    90033: "A transient error has occurred. Please try again.",
    90055: "TenantThrottlingError: There are too many incoming requests.",
    501481: "The Code_Verifier does not match the code_challenge supplied in the authorization request.",
    700016: "Application with identifier '{client_id}' was not found in the directory '{tenant}'.",
    900144: "The request body must contain the following parameter: '{param}'.",
    1002012: "The provided value for scope {scope} is not valid. Client credential flows must have a scope value "
    "with /.default suffixed to the resource identifier (application ID URI).",
    7000215: "Invalid client secret provided. Ensure the secret being sent in the request is the client secret "
    "value, not the client secret ID, for a secret added to app '{client_id}'.",
    7000216: "'client_assertion', 'client_secret' or 'request' is required for the 'client_credentials' grant type.",
    700027: "Client assertion failed signature validation. {why}",
    9002313: "Invalid request. Request is malformed or invalid.",
}


@dataclass
class _User:
    email: str
    password: str | None
    oid: str
    tid: str
    name: str


@dataclass
class _DeviceCode:
    user_code: str
    client_id: str
    scopes: list[str]
    expires_at: float
    email: str | None = None  # set once approved
    denied: bool = False
    redeemed: bool = False
    interval: float = 1.0
    last_poll: float | None = None


@dataclass
class _AuthCode:
    client_id: str
    redirect_uri: str
    scopes: list[str]
    challenge: str | None
    challenge_method: str
    nonce: str | None
    email: str
    expires_at: float
    used: bool = False


@dataclass
class _RefreshToken:
    email: str
    client_id: str
    scopes: list[str]
    spent: bool = False
    revoked: bool = False


@dataclass
class _Fault:
    kind: str
    kw: dict[str, Any]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64json(obj: Any) -> str:
    return _b64url(json.dumps(obj, separators=(",", ":")).encode())


def _random(length: int, prefix: str = "") -> str:
    n = max(16, length - len(prefix))  # never so short that tokens could collide
    return prefix + secrets.token_urlsafe(n)[:n]


def _resource(scope: str) -> str:
    # Entra scopes are "<resource>/<permission>"; bare names ("Mail.Read") belong to Microsoft Graph.
    return scope.rsplit("/", 1)[0].lower() if "://" in scope else "https://graph.microsoft.com"


def _tenant_id(domain: str) -> str:
    return CONSUMERS_TID if domain.lower() in _CONSUMER_DOMAINS else str(uuid.uuid5(_NS, "tid:" + domain.lower()))


class _Blanks(dict[str, str]):
    """Format arguments where a missing one shows as "?": injected errors reuse texts without details."""

    def __missing__(self, key: str) -> str:
        return "?"


class FakeEntra:
    """Fake Entra ID. ``FakeEntra(state_dir)`` writes ``ca.pem`` there; ``start()``/``stop()`` or ``with``."""

    def __init__(self, state_dir: str | Path, host: str = "127.0.0.1") -> None:
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.host = host
        self.token_lifetime: int = 3600
        self.token_length: int = 1500
        self.refresh_token_length: int = 1500
        self.device_interval: int = 1
        self.device_expires_in: int = 900
        self.strict_rotation: bool = True
        self.response_delay: float = 0.0
        self.auto_approve: str | None = None
        self.missing_tenants: set[str] = set()  # discovery answers 400 AADSTS90002 for these
        # Consent, as Entra keeps it per user and app (not in the refresh token): a refresh asking for a scope
        # nobody consented to answers AADSTS65001. admin_consent holds scopes an admin granted for everyone.
        self.admin_consent: set[str] = set()
        self._consents: dict[tuple[str, str], set[str]] = {}
        # Confidential apps for client credentials: client_id -> secret, client_id -> certificate PEM.
        self.client_secrets: dict[str, str] = {}
        self.client_certificates: dict[str, bytes] = {}
        self.base_url = self.introspect_url = self.control_url = ""
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._users: dict[str, _User] = {}
        self._device_codes: dict[str, _DeviceCode] = {}
        self._user_codes: dict[str, str] = {}  # user_code -> device_code
        self._auth_codes: dict[str, _AuthCode] = {}
        self._refresh_tokens: dict[str, _RefreshToken] = {}
        self._access_tokens: dict[str, dict[str, Any]] = {}
        self._faults: deque[_Fault] = deque()
        self._counts: dict[str, int] = dict.fromkeys(COUNT_KEYS, 0)
        self._log: deque[dict[str, Any]] = deque(maxlen=100_000)  # bounded: benchmarks run long
        self._listeners: list[Listener] = []
        self.ca_pem = str(self.state_dir / "ca.pem")
        self._tls = throwaway_tls(Path(self.ca_pem), "127.0.0.1", "localhost", "::1", CATALOG_HOST)

    # -- lifecycle -------------------------------------------------------------------------------------

    def start(self) -> FakeEntra:
        self._stopping.clear()
        tls = Listener(self.host, "tls", self._handle, self._tls)
        plain = Listener(self.host, "plain", self._handle, None)
        self._listeners = [tls, plain]
        self.base_url = tls.url
        self.introspect_url, self.control_url = f"{plain.url}/introspect", f"{plain.url}/_control"
        for listener in self._listeners:
            listener.serve_in_thread()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes "hang" faults and response_delay sleeps
        for listener in self._listeners:
            listener.close()
        self._listeners = []

    def __enter__(self) -> FakeEntra:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def authority(self, tenant: str = "organizations") -> str:
        return f"{self.base_url}/{tenant}"

    # -- test controls ---------------------------------------------------------------------------------

    def add_user(self, email: str, password: str | None = None) -> None:
        local, _, domain = email.partition("@")
        name = " ".join(p.capitalize() for p in re.split(r"[._-]+", local) if p) or email
        with self._lock:
            self._users[email.lower()] = _User(
                email, password, str(uuid.uuid5(_NS, "oid:" + email.lower())), _tenant_id(domain), name
            )

    def user(self, email: str) -> dict[str, str]:
        """oid/tid/name of a user, e.g. to compare with msal's home_account_id (``oid.tid``)."""
        u = self._user(email)
        return {"email": u.email, "oid": u.oid, "tid": u.tid, "name": u.name}

    def approve(self, user_code: str, email: str) -> None:
        """Approve a pending device code as ``email`` (added as a user if unknown)."""
        with self._lock:
            self._device_code(user_code).email = self._user(email).email

    def deny(self, user_code: str) -> None:
        with self._lock:
            self._device_code(user_code).denied = True

    def pending_user_codes(self) -> list[str]:
        """User codes neither approved, denied nor expired: handy when a subprocess printed the code."""
        now = time.time()
        with self._lock:
            return [
                d.user_code
                for d in self._device_codes.values()
                if d.email is None and not d.denied and d.expires_at > now
            ]

    def revoke(self, email: str) -> None:
        """Existing refresh tokens of the user answer AADSTS50173; access tokens stay valid, as at Entra."""
        with self._lock:
            for rt in self._refresh_tokens.values():
                if rt.email.lower() == email.lower():
                    rt.revoked = True

    def inject(self, kind: str, count: int = 1, **kw: Any) -> None:
        """Queue a fault for each of the next ``count`` POSTs to /token (FIFO).

        status(status=503, retry_after=None, body=None, content_type=None)
        aadsts(error="invalid_grant", code=70008, description=None, status=400, suberror=None);
            description replaces the text after "AADSTSnnnnn: ".
        hang(seconds=60, then="answer"|"close"): sleeps, then answers normally or drops the connection.
        nonjson: 200 "<html>oops".  close(process=False): drop the connection without answering.
        mangle(fields={...}): the real grant happens (a rotated refresh token is issued and the old one spent), but
            the answer's `fields` are replaced (e.g. {"expires_in": "soon"}, {"access_token": "a\\nb"}).
        redirect(location=URL, status=302): answer with a redirect instead (nothing is granted).
        trickle(seconds=1.0): the real answer, one byte every `seconds` (no single read ever times out).
        truncated(process=True, honest_length=False): 200 with half the real answer; by default the
            Content-Length promises the whole body (the client sees a broken connection); with
            honest_length it matches the half (the client sees invalid JSON). process=True means the grant
            really happened (a rotated refresh token is spent) and only the answer got lost.
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {sorted(FAULT_KINDS)}")
        with self._lock:
            self._faults.extend(_Fault(kind, dict(kw)) for _ in range(count))

    def set(self, **attrs: Any) -> None:
        unknown = set(attrs) - SETTABLE
        if unknown:
            raise ValueError(f"not settable: {sorted(unknown)}")
        with self._lock:
            for name, value in attrs.items():
                setattr(self, name, value)

    def reset_counts(self) -> None:
        """Zero the counters and clear the request log (start of a new measurement)."""
        with self._lock:
            self._counts = dict.fromkeys(COUNT_KEYS, 0)
            self._log.clear()

    @property
    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    @property
    def requests(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(entry) for entry in self._log]

    @property
    def issued_access_tokens(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {tok: dict(info) for tok, info in self._access_tokens.items()}

    def is_valid_access_token(self, tok: str) -> bool:
        with self._lock:
            info = self._access_tokens.get(tok)
        return info is not None and info["exp"] > time.time()

    # -- internals shared by the endpoints -------------------------------------------------------------

    def _user(self, email: str) -> _User:
        with self._lock:
            if email.lower() not in self._users:
                self.add_user(email)
            return self._users[email.lower()]

    def _device_code(self, user_code: str) -> _DeviceCode:
        code = user_code.strip().upper()
        code = self._user_codes.get(code) or self._user_codes.get(f"{code[:4]}-{code[4:]}")
        if code is None:
            raise KeyError(f"unknown user code {user_code!r}")
        return self._device_codes[code]

    def _count(self, key: str) -> None:
        with self._lock:
            self._counts[key] += 1

    def _error(
        self,
        req: Request,
        error: str,
        code: int,
        text: str | None = None,
        status: int = 400,
        suberror: str | None = None,
        **fmt: str,
    ) -> Reply:
        trace = str(uuid.uuid4())
        # Entra echoes the client's client-request-id as the correlation id.
        corr = req.headers.get("client-request-id") or str(uuid.uuid4())
        stamp = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime())
        text = text or _AADSTS_TEXT.get(code, "Error injected by the fake identity platform.").format_map(_Blanks(fmt))
        body: dict[str, Any] = {
            "error": error,
            "error_description": f"AADSTS{code}: {text}\r\nTrace ID: {trace}\r\nCorrelation ID: {corr}"
            f"\r\nTimestamp: {stamp}",
            "error_codes": [code],
            "timestamp": stamp,
            "trace_id": trace,
            "correlation_id": corr,
            "error_uri": f"{self.base_url}/error?code={code}",
        }
        if suberror:
            body["suberror"] = suberror
        return json_reply(body, status)

    def _invalid(self, req: Request, param: str, why: str, error: str = "invalid_grant") -> Reply:
        return self._error(req, error, 70000, param=param, why=why)

    def _missing(self, req: Request, param: str) -> Reply:
        return self._error(req, "invalid_request", 900144, param=param)

    def _bad_client(self, req: Request, tenant: str, client_id: str) -> Reply:
        return self._error(req, "unauthorized_client", 700016, client_id=client_id, tenant=tenant)

    def _check_scopes(self, req: Request, scopes: list[str]) -> Reply | None:
        resources = {_resource(s) for s in scopes if s not in RESERVED_SCOPES}
        if len(resources) > 1:
            return self._error(req, "invalid_scope", 28000)
        return None

    # -- request dispatch ------------------------------------------------------------------------------

    def _handle(self, req: Request) -> Reply:
        if req.listener == "plain" and req.path.startswith("/_control/"):
            return self._control(req)  # not logged: the log is for what clients under test sent
        entry = {
            "method": req.method,
            "path": req.path,
            "query": req.query,
            "form": req.form,
            "headers": req.headers,
            "listener": req.listener,
            "time": time.time(),
            "status": None,
        }
        with self._lock:
            self._log.append(entry)
        reply = self._route(req)
        entry["status"] = None if reply.drop else reply.status
        return reply

    def _route(self, req: Request) -> Reply:
        parts = [p for p in req.path.split("/") if p]
        if req.listener == "plain":
            if parts == ["introspect"] and req.method in ("GET", "POST"):
                return self._introspect(req)
        elif parts == ["devicelogin"] and req.method == "GET":
            return html_reply(
                "Enter code",
                "<h1>Enter code</h1><p>Fake device login: tests approve codes with FakeEntra.approve().</p>",
            )
        elif len(parts) >= 2:
            tenant, rest = parts[0], "/".join(parts[1:])
            endpoint = {
                ("GET", "v2.0/.well-known/openid-configuration"): self._discovery,
                ("GET", "discovery/instance"): self._instance_discovery,
                ("GET", "discovery/v2.0/keys"): lambda r, t: json_reply({"keys": []}),
                ("POST", "oauth2/v2.0/devicecode"): self._devicecode,
                ("POST", "oauth2/v2.0/token"): self._token,
                ("GET", "oauth2/v2.0/authorize"): self._authorize,
            }.get((req.method, rest))
            if endpoint is not None:
                if tenant in self.missing_tenants:
                    return self._error(req, "invalid_tenant", 90002, tenant=tenant)
                return endpoint(req, tenant)
        return json_reply({"error": "not_found", "error_description": f"{req.method} {req.path}"}, 404)

    def _base(self, req: Request) -> str:
        """The URL the client used: the catalog's host when a resolver override sent it here, else ours."""
        host = req.headers.get("host", "")
        return f"https://{CATALOG_HOST}" if host.split(":")[0] == CATALOG_HOST else self.base_url

    def _instance_discovery(self, req: Request, tenant: str) -> Reply:
        self._count("instance_discovery")
        host = urllib.parse.urlsplit(self._base(req)).netloc
        authorize = urllib.parse.urlsplit(req.query.get("authorization_endpoint", ""))
        wanted = authorize.path.strip("/").split("/")[0] or "common"
        return json_reply(
            {
                "tenant_discovery_endpoint": f"{self._base(req)}/{wanted}/v2.0/.well-known/openid-configuration",
                "api-version": "1.1",
                "metadata": [{"preferred_network": host, "preferred_cache": host, "aliases": [host]}],
            }
        )

    def _discovery(self, req: Request, tenant: str) -> Reply:
        self._count("discovery")
        base_url = self._base(req)
        base = f"{base_url}/{tenant}"
        if _GUID.match(tenant):
            issuer_tid = tenant
        elif tenant == "consumers":
            issuer_tid = CONSUMERS_TID
        elif "." in tenant:
            issuer_tid = _tenant_id(tenant)
        else:
            issuer_tid = "{tenantid}"  # literally so for organizations/common, as at Entra
        doc = {f"{name}_endpoint": f"{base}/oauth2/v2.0/{path}" for name, path in _ENDPOINTS}
        return json_reply(
            {
                **_DISCOVERY,
                **doc,
                "jwks_uri": f"{base}/discovery/v2.0/keys",
                "issuer": f"{base_url}/{issuer_tid}/v2.0",
                "kerberos_endpoint": f"{base}/kerberos",
                "userinfo_endpoint": f"{base_url}/oidc/userinfo",
            }
        )

    def _devicecode(self, req: Request, tenant: str) -> Reply:
        self._count("devicecode")
        client_id, scopes = req.form.get("client_id", ""), req.form.get("scope", "").split()
        if not client_id:
            return self._missing(req, "client_id")
        if client_id == BAD_CLIENT_ID:
            return self._bad_client(req, tenant, client_id)
        if not scopes:
            return self._missing(req, "scope")
        if bad := self._check_scopes(req, scopes):
            return bad
        device_code = _random(180, "DAQABIQEAAA")
        with self._lock:
            while True:
                user_code = "".join(secrets.choice(_USER_CODE_ALPHABET) for _ in range(8))
                user_code = f"{user_code[:4]}-{user_code[4:]}"
                if user_code not in self._user_codes:
                    break
            dc = _DeviceCode(user_code, client_id, scopes, time.time() + self.device_expires_in)
            dc.interval = float(self.device_interval)
            if self.auto_approve:
                dc.email = self._user(self.auto_approve).email
            self._device_codes[device_code] = dc
            self._user_codes[user_code] = device_code
        uri = f"{self._base(req)}/devicelogin"
        return json_reply(
            {
                "user_code": user_code,
                "device_code": device_code,
                "verification_uri": uri,
                "expires_in": int(self.device_expires_in),
                "interval": int(self.device_interval),
                "message": f"To sign in, use a web browser to open the page {uri} and enter the code {user_code} "
                "to authenticate.",
            }
        )

    def _authorize(self, req: Request, tenant: str) -> Reply:
        self._count("authorize")
        q = req.query
        client_id, redirect_uri = q.get("client_id", ""), q.get("redirect_uri", "")
        if not client_id or client_id == BAD_CLIENT_ID:
            text = _AADSTS_TEXT[700016].format(client_id=client_id, tenant=tenant)
            return html_reply("Sign in", f"<p>AADSTS700016: {escape(text)}</p>", 400)
        if not redirect_uri:
            return html_reply("Sign in", "<p>AADSTS900144: redirect_uri is missing.</p>", 400)
        mode, state = q.get("response_mode") or "query", q.get("state")
        scopes = q.get("scope", "").split()
        if q.get("response_type") != "code":
            return self._redirect(redirect_uri, mode, {"error": "unsupported_response_type", "state": state})
        # Several resources may be consented to at once (MSAL's extraScopesToConsent); the code's redemption
        # must then name one (AADSTS28000 otherwise, see _grant_code).
        if len(scopes) == 0:
            return self._redirect(redirect_uri, mode, {"error": "invalid_scope", "state": state})
        email = self.auto_approve
        if email is None and "fake_user" in q:
            candidate = q["fake_user"] if "@" in q["fake_user"] else q.get("login_hint", "")
            with self._lock:
                email = candidate if candidate.lower() in self._users else None
        if email is None:
            return html_reply(
                "Sign in to your account",
                "<h1>Sign in</h1><p>Fake sign-in page: set "
                "FakeEntra.auto_approve or pass fake_user=EMAIL to sign in.</p>",
            )
        code = _random(800, "1.AQ")
        with self._lock:
            self._auth_codes[code] = _AuthCode(
                client_id,
                redirect_uri,
                scopes,
                q.get("code_challenge"),
                q.get("code_challenge_method", "plain"),
                q.get("nonce"),
                self._user(email).email,
                time.time() + 600,
            )
        self._consent(self._user(email).email, client_id, scopes)  # the user consented on the sign-in page
        return self._redirect(redirect_uri, mode, {"code": code, "state": state, "session_state": str(uuid.uuid4())})

    def _redirect(self, uri: str, mode: str, params: dict[str, str | None]) -> Reply:
        clean = {k: v for k, v in params.items() if v is not None}
        if mode == "form_post":
            fields = "".join(f'<input type="hidden" name="{escape(k)}" value="{escape(v)}"/>' for k, v in clean.items())
            return html_reply(
                "Working...",
                f'<form method="POST" name="hiddenform" action="{escape(uri)}">'
                f'{fields}<noscript><input type="submit" value="Continue"/></noscript>'
                "</form><script>document.forms[0].submit();</script>",
            )
        sep = "#" if mode == "fragment" else ("&" if "?" in uri else "?")
        return Reply(302, b"", "text/html; charset=utf-8", {"Location": uri + sep + urllib.parse.urlencode(clean)})

    # -- token endpoint --------------------------------------------------------------------------------

    def _token(self, req: Request, tenant: str) -> Reply:
        grant = req.form.get("grant_type", "")
        counter = {
            "refresh_token": "refresh_token",
            DEVICE_GRANT: "device_code",
            "authorization_code": "authorization_code",
            "client_credentials": "client_credentials",
        }.get(grant)
        with self._lock:
            if counter:
                self._counts[counter] += 1
            fault = self._faults.popleft() if self._faults else None
        if self.response_delay > 0:
            self._stopping.wait(self.response_delay)
        reply = self._apply_fault(fault, req, tenant) if fault else self._grant(req, tenant)
        if reply.drop or reply.status >= 400 or (fault and fault.kind != "hang"):
            self._count("token_errors")
        return reply

    def _apply_fault(self, fault: _Fault, req: Request, tenant: str) -> Reply:
        kind, kw = fault.kind, fault.kw
        if kind == "status":
            status = int(kw.get("status", 503))
            headers = {} if kw.get("retry_after") is None else {"Retry-After": str(kw["retry_after"])}
            if kw.get("body") is not None:
                reply = Reply(status, str(kw["body"]).encode(), kw.get("content_type") or "text/plain; charset=utf-8")
            else:
                error = "temporarily_unavailable" if status in (429, 503) else "server_error"
                reply = self._error(req, error, 90055 if status == 429 else 90033, status=status)
            reply.headers.update(headers)
            return reply
        if kind == "aadsts":
            return self._error(
                req,
                kw.get("error", "invalid_grant"),
                int(kw.get("code", 70008)),
                kw.get("description"),
                int(kw.get("status", 400)),
                kw.get("suberror"),
            )
        if kind == "nonjson":
            return Reply(200, b"<html>oops", "text/html; charset=utf-8")
        if kind == "mangle":
            real = self._grant(req, tenant)
            doc = json.loads(real.body)
            doc.update(kw.get("fields", {}))
            return json_reply(doc)
        if kind == "trickle":
            real = self._grant(req, tenant)
            real.trickle = float(kw.get("seconds", 1.0))
            return real
        if kind == "redirect":
            reply = Reply(int(kw.get("status", 302)), b"", "text/plain; charset=utf-8")
            reply.headers["Location"] = str(kw["location"])
            return reply
        if kind == "close":
            if kw.get("process", False):
                self._grant(req, tenant)
            return Reply(drop=True)
        if kind == "truncated":
            real = (
                self._grant(req, tenant)
                if kw.get("process", True)
                else json_reply({"token_type": "Bearer", "access_token": _random(self.token_length)})
            )
            if kw.get("honest_length", False):
                return Reply(200, real.body[: len(real.body) // 2])
            return Reply(200, real.body, truncate=True)
        # hang
        if self._stopping.wait(float(kw.get("seconds", 60))) or kw.get("then", "answer") == "close":
            return Reply(drop=True)
        return self._grant(req, tenant)

    def _grant(self, req: Request, tenant: str) -> Reply:
        grant, client_id = req.form.get("grant_type", ""), req.form.get("client_id", "")
        if not grant:
            return self._missing(req, "grant_type")
        if not client_id:
            return self._missing(req, "client_id")
        if client_id == BAD_CLIENT_ID:
            return self._bad_client(req, tenant, client_id)
        if grant == DEVICE_GRANT:
            return self._grant_device(req, client_id)
        if grant == "refresh_token":
            return self._grant_refresh(req, client_id)
        if grant == "authorization_code":
            return self._grant_code(req, client_id)
        if grant == "client_credentials":
            return self._grant_client(req, client_id, tenant)
        return self._error(req, "unsupported_grant_type", 70003, grant=grant)

    def _grant_client(self, req: Request, client_id: str, tenant: str) -> Reply:
        """App-only: a secret in the body, or a JWT assertion signed with a registered certificate (x5t, x5t#S256)."""
        scopes = req.form.get("scope", "").split()
        if len(scopes) != 1 or not scopes[0].endswith("/.default"):
            return self._error(req, "invalid_scope", 1002012, scope=" ".join(scopes))
        if "client_secret" in req.form:
            expected = self.client_secrets.get(client_id)
            if expected is None or not secrets.compare_digest(req.form["client_secret"], expected):
                return self._error(req, "invalid_client", 7000215, status=401, client_id=client_id)
        elif "client_assertion" in req.form:
            why = self._assertion_problem(req.form["client_assertion"], client_id, tenant)
            if why:
                return self._error(req, "invalid_client", 700027, status=401, why=why)
        else:
            return self._error(req, "invalid_client", 7000216, status=401)
        access = _random(self.token_length)
        lifetime = int(self.token_lifetime)
        with self._lock:
            self._access_tokens[access] = {
                "email": f"app:{client_id}",
                "exp": time.time() + lifetime,
                "scope": scopes[0],
                "client_id": client_id,
            }
        body = {"token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime, "access_token": access}
        return json_reply(body)

    def _assertion_problem(self, assertion: str, client_id: str, tenant: str) -> str | None:
        import jwt  # PyJWT: msal's own dependency
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes

        pem = self.client_certificates.get(client_id)
        if pem is None:
            return "No certificate is registered for the app."
        cert = x509.load_pem_x509_certificate(pem)
        header = jwt.get_unverified_header(assertion)
        thumbs = {"x5t": cert.fingerprint(hashes.SHA1()), "x5t#S256": cert.fingerprint(hashes.SHA256())}
        if not any(str(header.get(k, "")).rstrip("=") == _b64url(v) for k, v in thumbs.items()):
            return "The key identifier (x5t) does not match a registered certificate."
        try:
            claims = jwt.decode(
                assertion,
                cert.public_key(),  # type: ignore[arg-type]
                algorithms=["RS256", "PS256"],
                audience=f"{self.base_url}/{tenant}/oauth2/v2.0/token",
            )
        except jwt.PyJWTError as exc:
            return f"{type(exc).__name__}."
        if claims.get("iss") != client_id or claims.get("sub") != client_id:
            return "The assertion's iss and sub must be the client id."
        return None

    def _grant_device(self, req: Request, client_id: str) -> Reply:
        code = req.form.get("device_code") or req.form.get("code")
        if not code:
            return self._missing(req, "device_code")
        with self._lock:
            dc = self._device_codes.get(code)
            if dc is None or dc.client_id != client_id:
                return self._invalid(req, "device_code", "The device code is not recognized.", "bad_verification_code")
            if dc.redeemed:
                return self._invalid(req, "device_code", "The device code was already redeemed.")
            if dc.denied:
                return self._error(req, "authorization_declined", 65004)
            now = time.monotonic()
            # RFC 8628 section 3.5: polling faster than the interval earns slow_down (and a longer interval).
            too_fast = dc.last_poll is not None and now - dc.last_poll < dc.interval * 0.8
            dc.last_poll = now
            if too_fast:
                dc.interval += 5
                self._count("slow_down")
                return self._error(req, "slow_down", 70016)
            if time.time() >= dc.expires_at:
                return self._error(req, "expired_token", 70019)
            if dc.email is None:
                return self._error(req, "authorization_pending", 70016)
            dc.redeemed = True
            email, scopes = dc.email, dc.scopes
            self._consent(email, client_id, scopes)
        return self._issue(req, client_id, email, scopes)

    def _grant_refresh(self, req: Request, client_id: str) -> Reply:
        token = req.form.get("refresh_token")
        if not token:
            return self._missing(req, "refresh_token")
        requested = req.form.get("scope", "").split()
        if bad := self._check_scopes(req, requested):
            return bad
        with self._lock:
            rt = self._refresh_tokens.get(token)
            if rt is None:
                return self._error(req, "invalid_grant", 9002313)
            if rt.revoked:
                return self._error(req, "invalid_grant", 50173)
            if rt.client_id != client_id:
                return self._invalid(req, "refresh_token", "The refresh token was issued to a different client.")
            if rt.spent and self.strict_rotation:
                return self._invalid(
                    req, "refresh_token", "The refresh token has already been redeemed (strict rotation)."
                )
            rt.spent = True
        # Entra refresh tokens are multi-resource: the request's scope wins; without one, the original.
        if not [s for s in requested if s not in RESERVED_SCOPES]:
            requested = rt.scopes + [s for s in requested if s not in rt.scopes]
        missing = self._not_consented(rt.email, client_id, requested)
        if missing:
            with self._lock:
                rt.spent = False  # Entra refuses the request; the refresh token stays as it was
            return self._error(
                req,
                "invalid_grant",
                65001,
                f"The user or administrator has not consented to use the application with ID '{client_id}'. "
                f"Send an interactive authorization request for this user and resource ({' '.join(missing)}).",
                suberror="consent_required",
            )
        return self._issue(req, client_id, rt.email, requested, rotate=True)

    def _grant_code(self, req: Request, client_id: str) -> Reply:
        f = req.form
        for param in ("code", "redirect_uri"):
            if not f.get(param):
                return self._missing(req, param)
        with self._lock:
            ac = self._auth_codes.get(f["code"])
            if ac is None:
                return self._error(req, "invalid_grant", 9002313)
            if ac.used:
                return self._error(req, "invalid_grant", 54005)
            if time.time() > ac.expires_at:
                return self._error(req, "invalid_grant", 70008)
            if ac.client_id != client_id:
                return self._invalid(req, "code", "The code was issued to a different client.")
            if ac.redirect_uri != f["redirect_uri"]:
                return self._invalid(
                    req, "redirect_uri", "It does not match the redirect_uri of the authorization request."
                )
            if ac.challenge is not None:
                verifier = f.get("code_verifier", "")
                derived = (
                    _b64url(hashlib.sha256(verifier.encode()).digest())
                    if ac.challenge_method.upper() == "S256"
                    else verifier
                )
                if not verifier or not secrets.compare_digest(derived, ac.challenge):
                    return self._error(req, "invalid_grant", 501481)
            ac.used = True
        scopes = f.get("scope", "").split() or ac.scopes
        if bad := self._check_scopes(req, scopes):
            return bad
        if not set(scopes) - RESERVED_SCOPES <= set(ac.scopes):
            return self._invalid(req, "scope", "It asks for more than the authorization request did.")
        return self._issue(req, client_id, ac.email, scopes, nonce=ac.nonce)

    def _consent(self, email: str, client_id: str, scopes: list[str]) -> None:
        with self._lock:
            self._consents.setdefault((email.lower(), client_id), set()).update(scopes)

    def _not_consented(self, email: str, client_id: str, scopes: list[str]) -> list[str]:
        with self._lock:
            have = self._consents.get((email.lower(), client_id), set()) | self.admin_consent
        return [s for s in scopes if s not in RESERVED_SCOPES and s not in have]

    def _issue(
        self,
        req: Request,
        client_id: str,
        email: str,
        scopes: list[str],
        nonce: str | None = None,
        rotate: bool = False,
    ) -> Reply:
        user = self._user(email)
        granted = " ".join(s for s in scopes if s not in RESERVED_SCOPES) or DEFAULT_SCOPE
        now, lifetime = time.time(), int(self.token_lifetime)
        access = _random(self.token_length)
        body: dict[str, Any] = {
            "token_type": "Bearer",
            "scope": granted,
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            "access_token": access,
        }
        with self._lock:
            self._access_tokens[access] = {
                "email": user.email,
                "exp": now + lifetime,
                "scope": granted,
                "client_id": client_id,
            }
            # Like Entra: a refresh token only with offline_access (a refresh always rotates it).
            if rotate or "offline_access" in scopes:
                refresh = _random(self.refresh_token_length, "1.AQ")
                self._refresh_tokens[refresh] = _RefreshToken(user.email, client_id, scopes)
                body["refresh_token"] = refresh
        if "openid" in scopes:
            body["id_token"] = self._id_token(user, client_id, nonce, now)
        if req.form.get("client_info") == "1":
            body["client_info"] = _b64json({"uid": user.oid, "utid": user.tid})
        return json_reply(body)

    def _id_token(self, user: _User, client_id: str, nonce: str | None, now: float) -> str:
        claims: dict[str, Any] = {
            "aud": client_id,
            "iss": f"{self.base_url}/{user.tid}/v2.0",
            "iat": int(now),
            "nbf": int(now),
            "exp": int(now) + 3600,
            "name": user.name,
            "oid": user.oid,
            "preferred_username": user.email,
            # Entra's sub is pairwise: stable per user and app.
            "sub": _b64url(hashlib.sha256(f"{user.oid}:{client_id}".encode()).digest())[:43],
            "tid": user.tid,
            "ver": "2.0",
            "uti": _random(22),
            "rh": "0.AQ-fake.",
        }
        if nonce:
            claims["nonce"] = nonce
        return f"{_b64json({'typ': 'JWT', 'alg': 'none'})}.{_b64json(claims)}."

    # -- plain-http listener ---------------------------------------------------------------------------

    def _introspect(self, req: Request) -> Reply:
        self._count("introspect")
        # Dovecot: introspection_mode=post sends form token=; auth sends a Bearer header; get a query.
        token = req.form.get("token") or req.query.get("token") or req.query.get("access_token") or ""
        auth = req.headers.get("authorization", "")
        if not token and auth.lower().startswith("bearer "):
            token = auth[7:].strip()
        with self._lock:
            info = self._access_tokens.get(token)
            user = self._users.get(info["email"].lower()) if info else None
        if info is None or user is None or info["exp"] <= time.time():
            return json_reply({"active": False})
        return json_reply(
            {
                "active": True,
                "username": user.email,
                "email": user.email,
                "scope": "mail",
                "exp": int(info["exp"]),
                "client_id": info["client_id"],
                "token_type": "Bearer",
                "sub": user.oid,
            }
        )

    def _control(self, req: Request) -> Reply:
        cmd = req.path.removeprefix("/_control/")
        try:
            args = json.loads(req.body or b"{}") if req.method == "POST" else {}
            getters = {
                "counts": lambda: self.counts,
                "requests": lambda: self.requests,
                "pending": self.pending_user_codes,
            }
            if req.method == "GET" and cmd in getters:
                return json_reply(getters[cmd]())
            actions = {
                "set": lambda: self.set(**args),
                "inject": lambda: self.inject(**args),
                "approve": lambda: self.approve(args["user_code"], args["email"]),
                "deny": lambda: self.deny(args["user_code"]),
                "revoke": lambda: self.revoke(args["email"]),
                "reset": self.reset_counts,
                "add_user": lambda: self.add_user(args["email"], args.get("password")),
            }
            if req.method != "POST" or cmd not in actions:
                return json_reply({"error": "not_found", "error_description": f"{req.method} {req.path}"}, 404)
            actions[cmd]()
        except (KeyError, TypeError, ValueError) as exc:
            return json_reply({"error": "bad_request", "error_description": repr(exc)}, 400)
        return json_reply({"ok": True})


class FakeEntraClient:
    """Drives a FakeEntra running in another process through its /_control API (same method names)."""

    def __init__(self, control_url: str, timeout: float = 10.0) -> None:
        self.control_url = control_url.rstrip("/")
        self.timeout = timeout
        # The machine may export proxies; the fake is always local.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    @classmethod
    def from_state_dir(cls, state_dir: str | Path) -> FakeEntraClient:
        return cls(json.loads((Path(state_dir) / "fake.json").read_text())["control_url"])

    def _call(self, cmd: str, payload: dict[str, Any] | None = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(
            f"{self.control_url}/{cmd}", data=data, headers={"Content-Type": "application/json"}
        )
        try:
            with self._opener.open(request, timeout=self.timeout) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            raise ValueError(f"fake control {cmd}: {exc.code} {exc.read().decode(errors='replace')}") from exc

    def counts(self) -> dict[str, int]:
        return self._call("counts")

    def requests(self) -> list[dict[str, Any]]:
        return self._call("requests")

    def pending_user_codes(self) -> list[str]:
        return self._call("pending")

    def set(self, **attrs: Any) -> None:
        self._call("set", attrs)

    def inject(self, kind: str, count: int = 1, **kw: Any) -> None:
        self._call("inject", {"kind": kind, "count": count, **kw})

    def approve(self, user_code: str, email: str) -> None:
        self._call("approve", {"user_code": user_code, "email": email})

    def deny(self, user_code: str) -> None:
        self._call("deny", {"user_code": user_code})

    def revoke(self, email: str) -> None:
        self._call("revoke", {"email": email})

    def add_user(self, email: str, password: str | None = None) -> None:
        self._call("add_user", {"email": email, "password": password})

    def reset_counts(self) -> None:
        self._call("reset", {})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fakes.entra",
        description="Serve a fake Entra ID until SIGTERM; writes STATE_DIR/fake.json.",
    )
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--token-lifetime", type=int, default=3600)
    parser.add_argument("--token-length", type=int, default=1500)
    parser.add_argument("--response-delay", type=float, default=0.0)
    parser.add_argument("--auto-approve", metavar="EMAIL")
    parser.add_argument("--strict-rotation", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--user", action="append", default=[], metavar="EMAIL", help="add a user (repeatable)")
    args = parser.parse_args(argv)

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    fake = FakeEntra(args.state_dir)
    fake.set(
        token_lifetime=args.token_lifetime,
        token_length=args.token_length,
        response_delay=args.response_delay,
        auto_approve=args.auto_approve,
        strict_rotation=args.strict_rotation,
    )
    for email in args.user:
        fake.add_user(email)
    info_path = Path(args.state_dir) / "fake.json"
    with fake:
        info = {
            "base_url": fake.base_url,
            "ca_pem": fake.ca_pem,
            "introspect_url": fake.introspect_url,
            "control_url": fake.control_url,
        }
        # Atomic, so a reader polling for the file never sees half of it.
        tmp = info_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(info))
        os.replace(tmp, info_path)
        print(json.dumps(info), flush=True)
        try:
            while not stop.wait(0.2):
                pass
        finally:
            info_path.unlink(missing_ok=True)  # a stale file would point the next reader at a dead port
    return 0


if __name__ == "__main__":
    sys.exit(main())
