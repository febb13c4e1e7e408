"""The TOML config: a pure `parse(text, path)` that validates, and `load(path)` that reads the file.

Every error names the file, the account and the key, suggests the closest valid key, and exits 78.
"""

from __future__ import annotations

import difflib
import sys
from dataclasses import dataclass, field

from . import locations
from .errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

STORES = ("auto", "keyring", "file")
TOP_LEVEL_KEYS = ("accounts",)
# What each key holds, for validation and for `mailtoken add`; man/mailtoken.toml.5 documents each.
ACCOUNT_KEYS: dict[str, type] = {
    "provider": str,
    "email": str,
    "client_id": str,
    "tenant": str,
    "authority": str,
    "cloud": str,
    "store": str,
}
REQUIRED_KEYS = ("email", "client_id")
MAX_VALUE_CHARS = 2048


@dataclass(frozen=True)
class Account:
    name: str
    email: str
    client_id: str
    provider: str = "microsoft"
    tenant: str = "common"
    authority: str | None = None
    cloud: str = "global"
    store: str = "auto"


@dataclass(frozen=True)
class Config:
    path: str
    accounts: dict[str, Account] = field(default_factory=dict)

    def account(self, name: str) -> Account:
        if name in self.accounts:
            return self.accounts[name]
        known = ", ".join(sorted(self.accounts)) or "none"
        hint = _suggest(name, self.accounts)
        raise ConfigError(
            f"no account '{name}' in {self.path}{hint} (accounts: {known}): add it with 'mailtoken add {name}'"
            if locations.valid_account_name(name)
            else f"'{name}' is not a valid account name (letters, digits, . _ @ + -; at most 64)",
            account=None,
        )


def _suggest(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _where(path: str, account: str | None, key: str | None) -> str:
    where = path
    if account is not None:
        where += f": [accounts.{account}]"
    if key is not None:
        where += f" {key}"
    return where


def parse(text: str, path: str) -> Config:
    """Validate a config's text. Pure: no I/O, so it is easy to test and to fuzz."""
    from . import providers  # the catalog is data shipped with the package

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    for key in data:
        if key not in TOP_LEVEL_KEYS:
            raise ConfigError(f"{_where(path, None, key)}: unknown key{_suggest(key, TOP_LEVEL_KEYS)}")
    tables = data.get("accounts", {})
    if not isinstance(tables, dict):
        raise ConfigError(f"{path}: 'accounts' must be a table, like [accounts.work]")
    accounts = {}
    for name, table in tables.items():
        accounts[name] = validate_account(name, table, path, providers.catalog())
    return Config(path=path, accounts=accounts)


def validate_account(name: str, table: object, path: str, catalog: dict) -> Account:
    if not locations.valid_account_name(name):
        raise ConfigError(
            f"{path}: [accounts.{name!r}]: invalid account name (letters, digits, . _ @ + -; at most 64 characters)"
        )
    if not isinstance(table, dict):
        raise ConfigError(f"{_where(path, name, None)}: must be a table of keys")
    for key, value in table.items():
        if key not in ACCOUNT_KEYS:
            raise ConfigError(f"{_where(path, name, key)}: unknown key{_suggest(key, ACCOUNT_KEYS)}")
        if not isinstance(value, ACCOUNT_KEYS[key]):
            raise ConfigError(
                f"{_where(path, name, key)}: must be a {ACCOUNT_KEYS[key].__name__}, not {type(value).__name__}"
            )
        if len(value) > MAX_VALUE_CHARS or any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise ConfigError(f"{_where(path, name, key)}: too long or holds control characters")
    for key in REQUIRED_KEYS:
        if not table.get(key):
            raise ConfigError(f"{_where(path, name, key)}: missing (required)")
    provider = table.get("provider", "microsoft")
    if provider not in catalog:
        raise ConfigError(
            f"{_where(path, name, 'provider')}: unknown provider '{provider}'{_suggest(provider, catalog)}"
            f" (known: {', '.join(sorted(catalog))})"
        )
    spec = catalog[provider]
    email = table["email"]
    local, at, domain = email.rpartition("@")
    if not at or not local or "." not in domain or " " in email:
        raise ConfigError(f"{_where(path, name, 'email')}: '{email}' is not an email address")
    store = table.get("store", "auto")
    if store not in STORES:
        raise ConfigError(
            f"{_where(path, name, 'store')}: must be one of {', '.join(STORES)}, not '{store}'{_suggest(store, STORES)}"
        )
    tenant = table.get("tenant", spec.get("default_tenant", "common"))
    if not tenant or any(c in tenant for c in "/?#\\ "):
        raise ConfigError(f"{_where(path, name, 'tenant')}: '{tenant}' is not a tenant name, domain or GUID")
    cloud = table.get("cloud", "global")
    clouds = spec.get("clouds", {})
    if cloud not in clouds:
        raise ConfigError(
            f"{_where(path, name, 'cloud')}: unknown cloud '{cloud}'{_suggest(cloud, clouds)}"
            f" (known: {', '.join(clouds)})"
        )
    authority = table.get("authority")
    if authority is not None:
        scheme, _, rest = authority.partition("://")
        host, _, tail = rest.partition("/")
        if scheme != "https" or not host or not tail.strip("/"):
            raise ConfigError(
                f"{_where(path, name, 'authority')}: must be an https URL with a tenant path, "
                f"like https://login.microsoftonline.us/contoso.onmicrosoft.com"
            )
    return Account(
        name=name,
        email=email,
        client_id=table["client_id"],
        provider=provider,
        tenant=tenant,
        authority=authority.rstrip("/") if authority else None,
        cloud=cloud,
        store=store,
    )


def read_text(path: str) -> str:
    try:
        with open(path, "rb") as fh:
            raw = fh.read((1 << 20) + 1)
    except FileNotFoundError:
        raise ConfigError(f"no config file at {path}: create one with 'mailtoken add ACCOUNT'") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder, not a config file") from None
    except PermissionError:
        raise ConfigError(f"{path}: cannot be read (permission denied)") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror})") from None
    if len(raw) > 1 << 20:
        raise ConfigError(f"{path}: larger than 1 MiB; is this the right file?")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None


def load(path: str | None = None) -> Config:
    path = path or default_path()
    return parse(read_text(path), path)


def default_path() -> str:
    from . import paths

    return paths.config_path()
