"""A local fake of Google's OAuth 2.0 endpoints for installed (desktop) apps, as Gmail clients use them.

HTTPS (throwaway trustme CA): /o/oauth2/v2/auth (authorize), /token, /device/code, /revoke.
Google's behaviour that mailtoken must cope with, reproduced:
- authorize signs in `auto_approve` (or the login_hint) at once and redirects to the loopback redirect_uri
  (http://127.0.0.1:PORT or http://localhost:PORT; any port, or none);
- the token endpoint checks client_secret (Desktop apps have one) and PKCE;
- a refresh token only with access_type=offline, and only at the first consent of a user to the client or with
  prompt=consent;
- refresh does not rotate: the answer has no refresh_token;
- a revoked (or expired) refresh token: 400 invalid_grant "Token has been expired or revoked.";
- the device flow refuses the Gmail scope with invalid_scope.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._https import Listener, Reply, Request, html_reply, json_reply, throwaway_tls

CLIENT_ID = "1234567890-mailtoken.apps.googleusercontent.com"
CLIENT_SECRET = "GOCSPX-not-really-a-secret"
GMAIL_SCOPE = "https://mail.google.com/"
COUNT_KEYS = ("authorize", "authorization_code", "refresh_token", "device_code", "token_errors")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class _Code:
    redirect_uri: str
    challenge: str
    scopes: list[str]
    email: str
    offline: bool
    consent: bool
    used: bool = False


@dataclass
class _Refresh:
    email: str
    scopes: list[str]
    revoked: bool = False


class FakeGoogle:
    def __init__(self, state_dir: str | Path) -> None:
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.ca_pem = str(self.state_dir / "ca.pem")
        self._tls = throwaway_tls(Path(self.ca_pem), "127.0.0.1", "localhost")
        self.auto_approve: str | None = None
        self.token_lifetime = 3599
        self.consented: set[str] = set()  # emails that consented to the client before
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.RLock()
        self._codes: dict[str, _Code] = {}
        self._refresh: dict[str, _Refresh] = {}
        self._access: dict[str, dict[str, Any]] = {}
        self.counts = dict.fromkeys(COUNT_KEYS, 0)
        self._listener: Listener | None = None
        self.base_url = ""

    def __enter__(self) -> FakeGoogle:
        self._listener = Listener("127.0.0.1", "tls", self._handle, self._tls)
        self.base_url = self._listener.url
        self._listener.serve_in_thread()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._listener:
            self._listener.close()

    @property
    def authorization_endpoint(self) -> str:
        return f"{self.base_url}/o/oauth2/v2/auth"

    @property
    def token_endpoint(self) -> str:
        return f"{self.base_url}/token"

    def revoke(self, email: str) -> None:
        """What a user removing the app's access, a password change or Testing mode's 7 days do."""
        with self._lock:
            for rt in self._refresh.values():
                if rt.email == email:
                    rt.revoked = True

    def is_valid_access_token(self, token: str) -> bool:
        with self._lock:
            info = self._access.get(token)
        return info is not None and info["exp"] > time.time()

    # -- endpoints -------------------------------------------------------------------------------------

    def _handle(self, req: Request) -> Reply:
        with self._lock:
            self.requests.append({"method": req.method, "path": req.path, "query": req.query, "form": req.form})
        route = {
            ("GET", "/o/oauth2/v2/auth"): self._authorize,
            ("POST", "/token"): self._token,
            ("POST", "/device/code"): self._device_code,
        }.get((req.method, req.path))
        if route is None:
            return json_reply({"error": "not_found"}, 404)
        return route(req)

    def _authorize(self, req: Request) -> Reply:
        self._count("authorize")
        q = req.query
        if q.get("client_id") != CLIENT_ID:
            return html_reply("Error 401: invalid_client", "<p>The OAuth client was not found.</p>", 401)
        redirect = q.get("redirect_uri", "")
        parts = urllib.parse.urlsplit(redirect)
        if parts.scheme != "http" or parts.hostname not in ("127.0.0.1", "localhost"):
            return html_reply("Error 400: redirect_uri_mismatch", "<p>Loopback redirect URIs only.</p>", 400)
        if q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
            return html_reply("Error 400: invalid_request", "<p>PKCE S256 is required here.</p>", 400)
        scopes = q.get("scope", "").split()
        state = q.get("state")
        if q.get("response_type") != "code" or GMAIL_SCOPE not in scopes:
            return self._redirect(redirect, {"error": "invalid_scope", "state": state})
        email = self.auto_approve or q.get("login_hint")
        if not email:
            return html_reply("Sign in - Google Accounts", "<p>Choose an account (set auto_approve).</p>")
        code = "4/0A" + secrets.token_urlsafe(60)
        with self._lock:
            first = email not in self.consented
            self.consented.add(email)
            self._codes[code] = _Code(
                redirect,
                q["code_challenge"],
                scopes,
                email,
                q.get("access_type") == "offline",
                first or q.get("prompt") == "consent",
            )
        return self._redirect(redirect, {"state": state, "code": code, "scope": " ".join(scopes)})

    def _redirect(self, uri: str, params: dict[str, str | None]) -> Reply:
        query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        return Reply(302, b"", "text/html; charset=utf-8", {"Location": f"{uri}{'&' if '?' in uri else '?'}{query}"})

    def _error(self, error: str, description: str, status: int = 400) -> Reply:
        self._count("token_errors")
        return json_reply({"error": error, "error_description": description}, status)

    def _token(self, req: Request) -> Reply:
        f = req.form
        if f.get("client_id") != CLIENT_ID or f.get("client_secret") != CLIENT_SECRET:
            return self._error("invalid_client", "Unauthorized", 401)
        grant = f.get("grant_type")
        if grant == "authorization_code":
            self._count("authorization_code")
            with self._lock:
                code = self._codes.get(f.get("code", ""))
                if code is None or code.used:
                    return self._error("invalid_grant", "Malformed auth code.")
                if code.redirect_uri != f.get("redirect_uri"):
                    return self._error("redirect_uri_mismatch", "Bad Request")
                verifier = f.get("code_verifier", "")
                if _b64url(hashlib.sha256(verifier.encode()).digest()) != code.challenge:
                    return self._error("invalid_grant", "Missing code verifier.")
                code.used = True
            return self._issue(code.email, code.scopes, with_refresh=code.offline and code.consent)
        if grant == "refresh_token":
            self._count("refresh_token")
            with self._lock:
                rt = self._refresh.get(f.get("refresh_token", ""))
                if rt is None or rt.revoked:
                    return self._error("invalid_grant", "Token has been expired or revoked.")
            return self._issue(rt.email, rt.scopes, with_refresh=False)
        return self._error("unsupported_grant_type", "Invalid grant_type: " + str(grant))

    def _device_code(self, req: Request) -> Reply:
        self._count("device_code")
        if GMAIL_SCOPE in req.form.get("scope", "").split():
            return self._error(
                "invalid_scope", "Some requested scopes were invalid. {invalid=[https://mail.google.com/]}"
            )
        return self._error("invalid_request", "not faked")

    def _issue(self, email: str, scopes: list[str], with_refresh: bool) -> Reply:
        access = "ya29." + secrets.token_urlsafe(120)
        body: dict[str, Any] = {
            "access_token": access,
            "expires_in": self.token_lifetime,
            "scope": " ".join(scopes),
            "token_type": "Bearer",
        }
        with self._lock:
            self._access[access] = {"email": email, "exp": time.time() + self.token_lifetime}
            if with_refresh:
                refresh = "1//0g" + secrets.token_urlsafe(70)
                self._refresh[refresh] = _Refresh(email, scopes)
                body["refresh_token"] = refresh
        if "openid" in scopes:
            claims = {"iss": "https://accounts.google.com", "aud": CLIENT_ID, "sub": "1" * 21, "email": email}
            body["id_token"] = (
                ".".join(_b64url(json.dumps(part).encode()) for part in ({"alg": "RS256"}, claims))
                + "."
                + _b64url(b"unsigned")
            )
        return json_reply(body)

    def _count(self, key: str) -> None:
        with self._lock:
            self.counts[key] += 1
