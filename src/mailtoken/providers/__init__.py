"""The provider registry: provider data (catalog.toml), error advice (aadsts.toml), and the engine for each.

This is the only place that compares provider names; everything else asks it.
"""

from __future__ import annotations

import functools
import importlib
import sys
from importlib import resources
from typing import Any

from ..errors import ConfigError, MailtokenError, SignInRequired, TemporaryFailure

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ENGINES = {"msal": "mailtoken.providers.microsoft"}


def _load(name: str) -> dict[str, Any]:
    return tomllib.loads(resources.files(__name__).joinpath(name).read_text("utf-8"))


@functools.lru_cache(maxsize=1)
def catalog() -> dict[str, Any]:
    return _load("catalog.toml")


@functools.lru_cache(maxsize=1)
def error_table() -> dict[str, Any]:
    return _load("aadsts.toml")


def spec(provider: str) -> dict[str, Any]:
    return catalog()[provider]


def cloud(provider: str, name: str) -> dict[str, Any]:
    return spec(provider)["clouds"][name]


def engine(provider: str):
    """The module that talks to this provider (imported only when a network call is due)."""
    return importlib.import_module(ENGINES[spec(provider)["engine"]])


_KINDS = {
    "signin": (SignInRequired, "sign-in required"),
    "config": (ConfigError, "the identity platform refused the app or tenant"),
    "temporary": (TemporaryFailure, "temporary failure at the identity platform"),
}


def error_from_response(response: dict[str, Any], account: str) -> MailtokenError:
    """Map an OAuth error response (with Entra's error_codes when present) to the error the user sees.

    Unknown errors count as temporary: only an authoritative answer may send the user back to sign in.
    """
    table = error_table()
    error = str(response.get("error") or "unknown_error")
    codes = [str(c) for c in response.get("error_codes") or []]
    entry, label = None, error
    for code in codes:
        if code in table["codes"]:
            entry, label = table["codes"][code], f"AADSTS{code}"
            break
    if entry is None:
        entry = table["errors"].get(error, {"kind": "temporary", "advice": "try again later"})
        if codes:
            label = f"{error}, AADSTS{codes[0]}"
    cls, what = _KINDS[entry["kind"]]
    summary = _first_sentence(str(response.get("error_description") or ""))
    cause = f"{label} {summary}".strip() if summary else label
    detail = "; ".join(
        f"{k}={response[k]}" for k in ("error_description", "correlation_id", "trace_id", "suberror") if response.get(k)
    )
    return cls(f"{what} ({cause}): {entry['advice'].format(account=account)}", account=account, detail=detail or None)


def _first_sentence(description: str) -> str:
    # "AADSTS70008: The provided authorization code or refresh token has expired ... \r\nTrace ID: ..."
    text = description.split("\r\n")[0].split("\n")[0]
    if ":" in text and text.startswith("AADSTS"):
        text = text.split(":", 1)[1].strip()
    text = text.split(". ")[0].rstrip(".")
    return text[:120]
