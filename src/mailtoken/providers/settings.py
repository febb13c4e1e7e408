"""Validation of the provider-specific account keys (flows, secrets, endpoints, scopes, shared mailboxes, hosts).

config.validate_account checks every key's type first; this adds what depends on the provider, from the
catalog's `keys`, `requires` and `flows`, so that a new provider is data, not a new branch. Pure: no I/O (the
certificate file and the secret command are looked at only when a token is needed).
"""

from __future__ import annotations

import re
from typing import Any

from .. import address
from ..errors import ConfigError
from .base import url_problem

URL_KEYS = ("issuer", "authorization_endpoint", "token_endpoint", "device_authorization_endpoint")
MAILBOX_KEYS = ("imap", "pop", "smtp")
# Tenants that name no organization: an app acting on its own (client credentials) must name its tenant.
SHARED_TENANTS = ("common", "organizations", "consumers")
_HOST_PORT = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$")


def provider_keys(catalog: dict[str, Any]) -> set[str]:
    """Every key some provider claims as its own; the rest are common to all providers."""
    return {key for spec in catalog.values() for key in spec.get("keys", [])}


def validate(name: str, table: dict[str, Any], provider: str, catalog: dict[str, Any], where: Any) -> dict[str, Any]:
    """The Account fields these keys set; raises ConfigError naming file, account and key.

    `where(key)` formats the location of a key for a message (config._where).
    """
    spec = catalog[provider]
    own = set(spec.get("keys", []))
    for key in table:
        if key in spec.get("refused_keys", {}):
            raise ConfigError(f"{where(key)}: {spec['refused_keys'][key]}")
        if key in provider_keys(catalog) and key not in own:
            takes = sorted(p for p, s in catalog.items() if key in s.get("keys", []))
            raise ConfigError(
                f"{where(key)}: not used by provider '{provider}' (it is for provider {' or '.join(takes)})"
            )
    for need in spec.get("requires", []):
        options = need.split("|")
        if not any(table.get(o) for o in options):
            raise ConfigError(f"{where(options[0])}: missing (provider '{provider}' needs {' or '.join(options)})")

    out: dict[str, Any] = {}
    flow = table.get("flow", "delegated")
    flows = spec.get("flows", ["delegated"])
    if flow not in flows:
        raise ConfigError(f"{where('flow')}: must be one of {', '.join(flows)}, not '{flow}'")
    out["flow"] = flow
    if flow == "client_credentials":
        _app_only(table, where)
    for key in URL_KEYS:
        if key in table:
            problem = url_problem(table[key])
            if problem:
                raise ConfigError(f"{where(key)}: {problem}, not '{table[key]}'")
            out[key] = table[key].rstrip("/") if key == "issuer" else table[key]
    if "client_secret" in table:
        out["client_secret"] = table["client_secret"]
    if "client_secret_cmd" in table:
        out["client_secret_cmd"] = _argv(table["client_secret_cmd"], where("client_secret_cmd"))
    if "certificate" in table:
        out["certificate"] = table["certificate"]
    if "thumbprint" in table:
        if "certificate" not in table:
            raise ConfigError(f"{where('thumbprint')}: set only with certificate (the PEM file of the key)")
        thumb = table["thumbprint"].replace(":", "").replace(" ", "")
        if not re.fullmatch(r"[0-9a-fA-F]{40}", thumb):
            raise ConfigError(f"{where('thumbprint')}: must be the certificate's SHA-1 thumbprint, 40 hex digits")
        out["thumbprint"] = thumb.upper()
    if "scopes" in table:
        scopes = table["scopes"]
        if not scopes or any(not s or " " in s for s in scopes):
            raise ConfigError(
                f'{where("scopes")}: must be a non-empty list of scopes, like ["openid", "offline_access"]'
            )
        out["scopes"] = tuple(scopes)
    if "shared" in table:
        for mailbox in table["shared"]:
            why = address.problem(mailbox)
            if why:
                raise ConfigError(f"{where('shared')}: '{address.shown(mailbox)}' is not an email address ({why})")
        out["shared"] = tuple(table["shared"])
    if "redirect_uri" in table:
        uri = table["redirect_uri"]
        if not re.match(r"^https?://[^/?#\s]+", uri):
            raise ConfigError(f"{where('redirect_uri')}: must be an http:// or https:// URL, like https://localhost")
        out["redirect_uri"] = uri
    for key in MAILBOX_KEYS:
        if key in table:
            match = _HOST_PORT.match(table[key])
            if not match or not 0 < int(match.group(2)) < 65536:
                raise ConfigError(f'{where(key)}: must be "host:port", like "mail.example.org:993"')
            out[key] = table[key]
    out.update(_graph(table, flow, where))
    return out


def _graph(table: dict[str, Any], flow: str, where: Any) -> dict[str, Any]:
    """send, graph_url, graph_large: sending through Microsoft Graph (graph/)."""
    out: dict[str, Any] = {}
    send = table.get("send", "smtp")
    if send not in ("smtp", "graph"):
        raise ConfigError(f'{where("send")}: must be "smtp" or "graph", not \'{send}\'')
    out["send"] = send
    if "graph_url" in table:
        problem = url_problem(table["graph_url"])
        if problem:
            raise ConfigError(f"{where('graph_url')}: {problem}, not '{table['graph_url']}'")
        out["graph_url"] = table["graph_url"].rstrip("/")
    if "graph_large" in table:
        out["graph_large"] = table["graph_large"]
    for key in ("graph_url", "graph_large"):
        if key in table and send != "graph":
            raise ConfigError(f'{where(key)}: only used with send = "graph"')
    return out


def _app_only(table: dict[str, Any], where: Any) -> None:
    tenant = table.get("tenant", "common")
    if "authority" not in table and tenant in SHARED_TENANTS:
        raise ConfigError(
            f"{where('tenant')}: client credentials need your organization's tenant (its domain, like "
            f"contoso.onmicrosoft.com, or its GUID), not '{tenant}'"
        )


def _argv(value: Any, where: str) -> tuple[str, ...]:
    """A command as an argv list, or a string split like a shell would (shlex) but never run by one."""
    if isinstance(value, str):
        import shlex

        try:
            value = shlex.split(value)
        except ValueError as exc:
            raise ConfigError(f"{where}: cannot be split into words ({exc})") from None
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f'{where}: must be a command, like ["pass", "show", "mail/app-secret"]')
    if any("\0" in v for v in value):
        raise ConfigError(f"{where}: an argument holds a NUL character")
    return tuple(value)
