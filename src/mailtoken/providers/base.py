"""What engines are: the protocol every engine module follows, what it returns, and the errors engines share.

An engine talks to one kind of identity platform: `microsoft` (msal, a person signs in), `microsoft_app`
(msal, the app alone: client credentials) and `oauth2` (the standard library's OAuth 2.0/OIDC client). The
registry (providers/__init__.py) picks the engine for an account by its provider and flow; callers never
compare provider names or flows themselves.

The deadline protocol: a refresh's answer may carry a rotated refresh token, and losing it costs a sign-in
with a strict-rotation provider. So the moment a refresh answer is in, the engine's HTTP session calls
`deadline.hold()` (http.session(hold_on_answer=True)), which defers the deadline's alarm and termination
signals; the caller (tokens.py) calls `deadline.release()` once the grant is saved, or once it knows there is
nothing to save. An engine that has a rotated refresh token but cannot use the rest of the answer raises
RotatedGrant, so the new grant is saved before the error is judged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ..config import Account
    from ..errors import MailtokenError


@dataclass
class Grant:
    """What a successful sign-in or refresh yields: the new access token and the grant to store."""

    access_token: str
    expires_in: int
    blob: str
    username: str


@dataclass
class Flow:
    """A sign-in under way. `info` is what the user and `login --resume` need (user_code, verification_uri,
    expires_at, interval; or auth_uri and state), JSON-serializable; `context` is the engine's own (msal's
    application and cache), never saved."""

    info: dict[str, Any]
    context: Any = field(default=None, repr=False)


class RotatedGrant(Exception):
    """A refresh answer rotated the refresh token but is unusable otherwise: save `blob`, then judge `error`."""

    def __init__(self, blob: str, error: MailtokenError) -> None:
        super().__init__(error.message)
        self.blob = blob
        self.error = error


class ConsentNeeded(Exception):
    """The provider signed the user in but sent no refresh token: ask again with the provider's consent prompt.

    Google sends a refresh token only on the first consent to an app; `login` retries once with prompt=consent.
    """


ExitCondition = Callable[[dict[str, Any]], bool]


class Engine(Protocol):
    """An engine module. `grantless` engines keep no refresh token: each refresh asks with the app's own
    credential, and sign-in means proving that credential (apponly.py)."""

    grantless: bool

    # `resource`: another resource's token from the same grant ("graph", for graph/). Only the msal engines
    # take it: send = "graph" is a Microsoft key (catalog.toml), so it never reaches the others.
    def refresh(self, acct: Account, blob: str, timeout: float, resource: str | None = None) -> Grant: ...

    def start_device_flow(self, acct: Account, timeout: float, resource: str | None = None) -> Flow: ...

    def finish_device_flow(self, acct: Account, flow: Flow, exit_condition: ExitCondition) -> Grant: ...

    def resume_device_flow(
        self, acct: Account, info: dict[str, Any], exit_condition: ExitCondition, timeout: float
    ) -> Grant: ...

    def start_auth_code_flow(self, acct: Account, redirect_uri: str, timeout: float, consent: bool = False) -> Flow: ...

    def finish_auth_code_flow(self, acct: Account, flow: Flow, response: dict[str, str]) -> Grant: ...


# A lifetime outside this range is not one a token endpoint means (seconds).
MAX_LIFETIME = 30 * 86400


def token_problem(token: object, expires_in: object) -> str | None:
    """Why an answer's access token or lifetime cannot be used; None when both can. One rule for every engine."""
    if not isinstance(token, str) or not token:
        return "holds no access token"
    if len(token) > 65536 or not token.isascii() or not token.isprintable() or " " in token:
        return "holds an access token with characters no token has"
    try:
        seconds = int(expires_in)  # type: ignore[call-overload]  # Entra's v1 endpoints send a string
    except (TypeError, ValueError, OverflowError):
        return "gives a lifetime (expires_in) that is not a number"
    if not 0 < seconds <= MAX_LIFETIME:
        return "gives a lifetime (expires_in) out of range"
    return None


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def url_problem(url: str) -> str | None:
    """Why `url` cannot be an OAuth endpoint: https only, plain http only to this machine (a test provider, or
    one behind a local proxy). None when it can."""
    import urllib.parse

    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "http" and (parts.hostname or "") in LOOPBACK_HOSTS:
        return None
    if parts.scheme != "https" or not parts.hostname:
        return "must be an https URL (plain http only on 127.0.0.1 or localhost)"
    return None


def is_loopback_http(url: str) -> bool:
    """A redirect URI this machine can receive on: http://localhost, http://127.0.0.1, http://[::1]."""
    import urllib.parse

    parts = urllib.parse.urlsplit(url)
    return parts.scheme == "http" and (parts.hostname or "") in LOOPBACK_HOSTS
