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

ENGINES = {"msal": "mailtoken.providers.microsoft", "oauth2": "mailtoken.providers.oauth2"}


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


@functools.lru_cache(maxsize=1)
def oauth2_errors() -> dict[str, Any]:
    return _load("oauth2_errors.toml")


def oauth2_error(provider: str, error: str) -> dict[str, str]:
    """Kind and advice for an OAuth error from a provider of the oauth2 engine: its own entry, else generic's."""
    table = oauth2_errors()
    unknown = {"kind": "temporary", "advice": "try again later"}
    return table.get(provider, {}).get(error) or table["generic"].get(error) or unknown


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


_KINDS = {
    "signin": (SignInRequired, "sign-in required"),
    "config": (ConfigError, "the identity platform refused the app or tenant"),
    "temporary": (TemporaryFailure, "temporary failure at the identity platform"),
}


# invalid_grant answers that name a condition which may clear without a new sign-in (MFA, Conditional Access,
# consent), and Entra's suberrors that say so: such answers send the user to sign in but never mark the grant.
CONDITIONAL_CODES = frozenset({"50076", "50079", "53000", "53001", "53003", "530033", "50158", "65001"})
CONDITIONAL_SUBERRORS = frozenset({"basic_action", "additional_action", "message_only", "consent_required"})


def error_from_response(response: dict[str, Any], account: str) -> MailtokenError:
    """Map an OAuth error response (with Entra's error_codes when present) to the error the user sees.

    Unknown errors count as temporary: only an authoritative answer may send the user back to sign in, and only
    an `invalid_grant` without a passing condition (CONDITIONAL_*) says the grant itself is dead
    (SignInRequired.grant_rejected; tokens.py has the whole rule).
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
    result = cls(f"{what} ({cause}): {entry['advice'].format(account=account)}", account=account, detail=detail or None)
    if (
        isinstance(result, SignInRequired)
        and error == "invalid_grant"
        and not CONDITIONAL_CODES.intersection(codes)
        and str(response.get("suberror") or "") not in CONDITIONAL_SUBERRORS
    ):
        result.grant_rejected = True
    return result


def _first_sentence(description: str) -> str:
    # "AADSTS70008: The provided authorization code or refresh token has expired ... \r\nTrace ID: ..."
    text = description.split("\r\n")[0].split("\n")[0]
    if ":" in text and text.startswith("AADSTS"):
        text = text.split(":", 1)[1].strip()
    text = text.split(". ")[0].rstrip(".")
    return text[:120]
