"""The provider registry: provider data (catalog.toml) and the engine for each account.

This is the only place that compares provider names and flows; everything else asks it. Error answers are
classified in providers/errors.py (with their data in aadsts.toml and oauth2_errors.toml).
"""

from __future__ import annotations

import functools
import importlib
import sys
from importlib import resources
from typing import Any, cast

from ..errors import ConfigError
from .base import Engine

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

# By the catalog's `engine` and the account's flow: which module serves the account (providers/base.py: Engine).
ENGINES = {
    "msal": "mailtoken.providers.microsoft",
    "msal-app": "mailtoken.providers.microsoft_app",
    "oauth2": "mailtoken.providers.oauth2",
}


def _load(name: str) -> dict[str, Any]:
    return tomllib.loads(resources.files(__name__).joinpath(name).read_text("utf-8"))


@functools.lru_cache(maxsize=1)
def catalog() -> dict[str, Any]:
    return _load("catalog.toml")


def spec(provider: str) -> dict[str, Any]:
    found: dict[str, Any] = catalog()[provider]
    return found


def cloud(provider: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = spec(provider)["clouds"][name]
    return found


def mail_hosts(acct: Any, cloud_name: str | None = None) -> dict[str, str]:
    """IMAP, POP and SMTP as "host:port" for `mailtoken config` and `mailtoken test`: the account's own
    (imap, pop, smtp keys) over the catalog's for its cloud. A generic provider's pop defaults to the imap
    host on port 995; a host nobody knows is a config error naming the key to set."""
    known = cloud(acct.provider, cloud_name or acct.cloud)
    hosts = {p: getattr(acct, p, None) or known.get(p) for p in ("imap", "pop", "smtp")}
    if not hosts["pop"] and hosts["imap"]:
        hosts["pop"] = hosts["imap"].rpartition(":")[0] + ":995"
    missing = [p for p, value in hosts.items() if not value and not (p == "pop" and not hosts["imap"])]
    if missing:
        raise ConfigError(
            f"provider '{acct.provider}' has no known mail hosts: set {' and '.join(missing)} in "
            f'[accounts.{acct.name}], like imap = "imap.example.org:993", smtp = "smtp.example.org:587"',
            account=acct.name,
        )
    return {**known, **hosts}


def app_only(acct: Any) -> bool:
    """Client credentials: the app acts on its own, with no person signing in and no refresh token."""
    return getattr(acct, "flow", "delegated") == "client_credentials"


def engine_for(acct: Any) -> Engine:
    """The engine for this account, by its provider and flow (imported only when a network call is due)."""
    kind = spec(acct.provider)["engine"]
    if kind == "msal" and app_only(acct):
        kind = "msal-app"
    return cast(Engine, importlib.import_module(ENGINES[kind]))
