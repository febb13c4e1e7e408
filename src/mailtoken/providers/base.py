"""What every engine returns, and the errors engines share."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Grant:
    """What a successful sign-in or refresh yields: the new access token and the grant to store."""

    access_token: str
    expires_in: int
    blob: str
    username: str


class ConsentNeeded(Exception):
    """The provider signed the user in but sent no refresh token: ask again with the provider's consent prompt.

    Google sends a refresh token only on the first consent to an app; `login` retries once with prompt=consent.
    """


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
