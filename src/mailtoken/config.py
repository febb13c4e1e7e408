"""The TOML config: a pure `parse(text, path)` that validates, and `load(path)` that reads the file.

Every error names the file, the account and the key, suggests the closest valid key, and exits 78.
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import address
from .errors import ConfigError
from .fast import locations

if TYPE_CHECKING:
    from .bridge.config import Listener

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

STORES = ("auto", "keyring", "file")
TOP_LEVEL_KEYS = ("accounts", "defaults", "serve")
# What each key holds, for validation and for `mailtoken add`; man/mailtoken.toml.5 documents each.
ACCOUNT_KEYS: dict[str, type] = {
    "provider": str,
    "email": str,
    "client_id": str,
    "tenant": str,
    "authority": str,
    "cloud": str,
    "store": str,
    "notify_cmd": list,  # or a string, split like a shell would (shlex) but never run by one
    "notify_interval": str,  # or an int of seconds
    "copy_code": bool,
    # Provider-specific keys: the catalog says which provider takes which (providers/settings.py checks).
    "flow": str,
    "client_secret": str,
    "client_secret_cmd": list,  # or a string, split with shlex; run without a shell
    "certificate": str,
    "thumbprint": str,
    "scopes": list,
    "issuer": str,
    "authorization_endpoint": str,
    "token_endpoint": str,
    "device_authorization_endpoint": str,
    # For every provider: other mailboxes the account may open, the sign-in redirect, the mail hosts.
    "shared": list,
    "redirect_uri": str,
    "imap": str,
    "pop": str,
    "smtp": str,
    # Sending through Microsoft Graph instead of SMTP (graph/): "smtp" (default) or "graph".
    "send": str,
    "graph_url": str,
    "graph_large": bool,
}
# Keys whose value may take more than one type: checked where they are parsed.
_MULTI_TYPE_KEYS = ("client_secret_cmd",)
# Keys that [defaults] may also set for every account; an account's own value wins. Validated by _shared().
DEFAULT_KEYS = ("notify_cmd", "notify_interval", "copy_code")
NOTIFY_INTERVAL = 15 * 60
REQUIRED_KEYS = ("email", "client_id")
MAX_VALUE_CHARS = 2048
_UNITS = {"": 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


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
    notify_cmd: tuple[str, ...] = ()
    notify_interval: int = NOTIFY_INTERVAL
    copy_code: bool = False
    flow: str = "delegated"  # or "client_credentials": the app acts alone (Microsoft, app-only)
    client_secret: str | None = field(default=None, repr=False)
    client_secret_cmd: tuple[str, ...] = ()
    certificate: str | None = None
    thumbprint: str | None = None
    scopes: tuple[str, ...] = ()
    issuer: str | None = None
    authorization_endpoint: str | None = None
    token_endpoint: str | None = None
    device_authorization_endpoint: str | None = None
    shared: tuple[str, ...] = ()
    redirect_uri: str | None = None
    imap: str | None = None
    pop: str | None = None
    smtp: str | None = None
    send: str = "smtp"  # or "graph": `mailtoken sendmail` submits with Microsoft Graph
    graph_url: str | None = None  # the Graph API base URL; default: the cloud's, from the catalog
    graph_large: bool = False  # messages over Graph's MIME limit go through a draft + upload (Mail.ReadWrite)

    def fingerprint(self) -> str:
        """A digest of the settings a token depends on: while it stays the same, an edit of the config file
        (a comment, another account) leaves this account's cached token servable (tokens.py)."""
        import hashlib

        values = [(key, getattr(self, key)) for key in FINGERPRINT_KEYS]
        # The secret itself never goes into the record, only whether it changed.
        values.append(("client_secret", hashlib.sha256((self.client_secret or "").encode()).hexdigest()))
        return hashlib.sha256(repr(values).encode("utf-8")).hexdigest()[:32]


# What a token depends on: changing one of these makes the account's cached token stale (tokens.py).
FINGERPRINT_KEYS = (
    "provider",
    "email",
    "client_id",
    "tenant",
    "authority",
    "cloud",
    "store",
    "flow",
    "client_secret_cmd",
    "certificate",
    "thumbprint",
    "scopes",
    "issuer",
    "authorization_endpoint",
    "token_endpoint",
    "device_authorization_endpoint",
    # The Graph token's scopes depend on these (graph/scopes.py): Mail.Send.Shared, Mail.ReadWrite.
    "send",
    "shared",
    "graph_large",
)


@dataclass(frozen=True)
class Config:
    path: str
    accounts: dict[str, Account] = field(default_factory=dict)
    # Accounts whose own table is wrong: each fails alone (its calls exit 78), the others keep working.
    broken: dict[str, ConfigError] = field(default_factory=dict)

    def names(self) -> list[str]:
        """Every account in the file, usable or broken, sorted."""
        return sorted({*self.accounts, *self.broken})

    serve: tuple[Listener, ...] = ()  # one per [[serve]] table

    def account(self, name: str) -> Account:
        if name in self.accounts:
            return self.accounts[name]
        if name in self.broken:
            raise self.broken[name]
        known = ", ".join(self.names()) or "none"
        close = difflib.get_close_matches(name, self.names(), n=1, cutoff=0.6)
        if not locations.valid_account_name(name):
            message = f"'{name}' is not a valid account name (letters, digits, . _ @ + -; at most 64)"
        elif close:  # a typo: adding the misspelt account would be the wrong advice
            message = f"no account '{name}' in {self.path}: did you mean '{close[0]}'? (accounts: {known})"
        else:
            message = f"no account '{name}' in {self.path} (accounts: {known}): add it with 'mailtoken add {name}'"
        raise ConfigError(message, account=None)


def _suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _where(path: str, account: str | None, key: str | None) -> str:
    where = path
    if account is not None:
        where += f": [accounts.{account}]"
    if key is not None:
        where += f" {key}"
    return where


def parse(text: str, path: str, *, isolate: bool = False) -> Config:
    """Validate a config's text. Pure: no I/O, so it is easy to test and to fuzz.

    A file-level problem (TOML syntax, an unknown top-level key, [defaults]) always raises. A problem in one
    account's table raises too, unless `isolate`: then that account lands in `Config.broken` and only its
    own calls fail (what every command does through `load`).
    """
    from . import providers  # the catalog is data shipped with the package

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except RecursionError:  # tomllib recurses once per level of [[[...]]] or {a={b=...}}
        raise ConfigError(f"{path}: not valid TOML: nested too deeply") from None
    for key in data:
        if key not in TOP_LEVEL_KEYS:
            hint = _suggest(key, TOP_LEVEL_KEYS)
            if not hint and isinstance(data[key], dict) and set(ACCOUNT_KEYS) & set(data[key]):
                hint = f" (an account's table is [accounts.{key}], not [{key}])"
            raise ConfigError(f"{_where(path, None, key)}: unknown key{hint}")
    tables = data.get("accounts", {})
    if not isinstance(tables, dict):
        raise ConfigError(f"{path}: 'accounts' must be a table, like [accounts.work]")
    defaults = validate_defaults(data.get("defaults", {}), path)
    accounts, broken = {}, {}
    for name, table in tables.items():
        try:
            accounts[name] = validate_account(name, table, path, providers.catalog(), defaults)
        except ConfigError as exc:
            if not isolate:
                raise
            # One account's mistake must not stop the others' mail: only its own calls fail.
            broken[name] = exc
    serve: tuple[Listener, ...] = ()
    if "serve" in data:
        from .bridge import config as bridge_config

        serve = bridge_config.validate(data["serve"], path, accounts)
    return Config(path=path, accounts=accounts, broken=broken, serve=serve)


def parse_duration(value: object) -> int:
    """Seconds from an int or a string like "90", "90s", "15m", "1h30m", "20min", "2d"; ValueError if neither."""
    import re

    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError("not a duration")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("negative duration")
        return value
    text = value.strip().lower()
    parts = re.findall(r"(\d+)\s*([a-z]*)\s*", text)
    if not text or "".join(f"{n}{u}" for n, u in parts) != re.sub(r"\s+", "", text):
        raise ValueError("not a duration")
    if any(unit not in _UNITS for _, unit in parts):
        raise ValueError("unknown unit")
    return sum(int(n) * _UNITS[unit] for n, unit in parts)


def _shared(key: str, value: object, where: str) -> object:
    """Validate one of DEFAULT_KEYS; returns the value as Account holds it."""
    if key == "copy_code":
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: must be true or false, not {type(value).__name__}")
        return value
    if key == "notify_interval":
        try:
            return parse_duration(value)
        except ValueError:
            raise ConfigError(
                f'{where}: must be a duration like "15m", "1h" or "90s", or a number of seconds'
            ) from None
    # notify_cmd: an argv list, or a string split with shlex; empty means "no notice" (overrides [defaults]).
    if isinstance(value, str):
        import shlex

        try:
            value = shlex.split(value)
        except ValueError as exc:
            raise ConfigError(f"{where}: cannot be split into words ({exc})") from None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f'{where}: must be a list of strings, like ["notify-send", "mailtoken", "{{message}}"]')
    if any(len(v) > MAX_VALUE_CHARS or "\0" in v for v in value):
        raise ConfigError(f"{where}: an argument is too long or holds a NUL character")
    return tuple(value)


def validate_defaults(table: object, path: str) -> dict[str, object]:
    """The [defaults] table: settings every account inherits unless it sets its own."""
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: 'defaults' must be a table, like [defaults]")
    out = {}
    for key, value in table.items():
        if key not in DEFAULT_KEYS:
            hint = _suggest(key, DEFAULT_KEYS)
            raise ConfigError(f"{path}: [defaults] {key}: unknown key{hint} (allowed: {', '.join(DEFAULT_KEYS)})")
        out[key] = _shared(key, value, f"{path}: [defaults] {key}")
    return out


def validate_account(
    name: str, table: object, path: str, catalog: dict[str, Any], defaults: dict[str, object] | None = None
) -> Account:
    if not locations.valid_account_name(name):
        raise ConfigError(
            f"{path}: [accounts.{name!r}]: invalid account name (letters, digits, . _ @ + -; at most 64 characters)"
        )
    if not isinstance(table, dict):
        raise ConfigError(f"{_where(path, name, None)}: must be a table of keys")
    for key, value in table.items():
        if key not in ACCOUNT_KEYS:
            raise ConfigError(f"{_where(path, name, key)}: unknown key{_suggest(key, ACCOUNT_KEYS)}")
        if key in DEFAULT_KEYS or key in _MULTI_TYPE_KEYS:
            continue  # these take more than one type: checked by _shared() or providers/settings.py below
        if not isinstance(value, ACCOUNT_KEYS[key]):
            raise ConfigError(
                f"{_where(path, name, key)}: must be a {ACCOUNT_KEYS[key].__name__}, not {type(value).__name__}"
            )
        if isinstance(value, bool):
            continue
        for item in value if isinstance(value, list) else [value]:
            if not isinstance(item, str):
                raise ConfigError(f"{_where(path, name, key)}: must be a list of strings")
            if len(item) > MAX_VALUE_CHARS:
                raise ConfigError(f"{_where(path, name, key)}: longer than {MAX_VALUE_CHARS} characters")
            bad = address.unsafe_char(item)
            if bad:
                # Named by code point, never echoed: a bidi override would reorder this very message.
                raise ConfigError(f"{_where(path, name, key)}: holds {bad}, a control, bidi or invisible character")
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
    why = address.problem(email)
    if why:
        raise ConfigError(f"{_where(path, name, 'email')}: '{address.shown(email)}' is not an email address ({why})")
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
    from .providers import settings

    extra = settings.validate(name, table, provider, catalog, lambda key: _where(path, name, key))
    shared = dict(defaults or {})
    shared.update({k: _shared(k, table[k], _where(path, name, k)) for k in DEFAULT_KEYS if k in table})
    return Account(
        name=name,
        email=email,
        client_id=table["client_id"],
        provider=provider,
        tenant=tenant,
        authority=authority.rstrip("/") if authority else None,
        cloud=cloud,
        store=store,
        **shared,  # type: ignore[arg-type]
        **extra,
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
    return parse(read_text(path), path, isolate=True)


def default_path() -> str:
    from . import paths

    return paths.config_path()
