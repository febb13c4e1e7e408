"""The interface between the bridge's pure protocol machines and its I/O layer (server.py).

Each protocol module has a client-side machine (speaks to the local client until it has logged in) and an
upstream-side machine (signs in to the real server with XOAUTH2). Both are pure: bytes in, events out, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol


@dataclass(frozen=True)
class Send:
    """Write these bytes to the peer of this machine."""

    data: bytes


@dataclass(frozen=True)
class StartTLS:
    """After the preceding Send is flushed, wrap this side's stream in TLS."""


@dataclass(frozen=True)
class Login:
    """The client gave credentials: the I/O layer checks the local password, signs in upstream, then calls
    machine.login_done(result) and acts on the events it returns."""

    user: str
    password: str

    def __repr__(self) -> str:  # keep the password out of logs and tracebacks
        return f"Login(user={self.user!r}, password=<hidden>)"


@dataclass(frozen=True)
class Splice:
    """Pre-auth is over: from now on relay bytes both ways untouched."""

    pending: bytes = b""  # bytes already read from this side that belong to the spliced stream


@dataclass(frozen=True)
class Close:
    pass


Event = Send | StartTLS | Login | Splice | Close

LoginResult = Literal["ok", "bad_password", "signin_required", "temporary"]


class ClientSide(Protocol):
    """Speaks the protocol to the local client until it has logged in."""

    def greeting(self) -> list[Event]: ...

    def receive(self, data: bytes) -> list[Event]: ...  # bytes from the client, any chunking

    def login_done(self, result: LoginResult, text: str) -> list[Event]: ...  # text = safe message

    # constructor: (*, capabilities: <upstream's post-login caps as the protocol has them>, tls_active: bool,
    #   starttls_available: bool, max_line: int = 8192) — see each protocol module.


@dataclass(frozen=True)
class Authenticated:
    """Upstream accepted the XOAUTH2 login."""

    pending: bytes = b""


FailKind = Literal["auth", "temporary", "protocol"]


@dataclass(frozen=True)
class Failed:
    """Upstream refused or broke; kind decides the client's reply."""

    kind: FailKind
    text: str  # safe to log and to show the client (never a token)


UpstreamEvent = Send | StartTLS | Authenticated | Failed


class UpstreamSide(Protocol):
    """Signs in to the real server with XOAUTH2: greeting, CAPABILITY/EHLO, STARTTLS, AUTH, quirks."""

    def receive(self, data: bytes) -> list[UpstreamEvent]: ...

    # constructor: (*, user: str, token: str, starttls: bool) ; first events come from receive(greeting bytes)
    @property
    def capabilities(self) -> object:  # what the server advertised after TLS, for the client's CAPABILITY/CAPA/EHLO
        ...
