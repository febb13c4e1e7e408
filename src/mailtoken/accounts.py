"""`add` (write an account into the config, comments kept) and `status` (what is signed in, never a secret)."""

from __future__ import annotations

import difflib
import enum
import os
import re
import sys
import time
from dataclasses import dataclass
from typing import Any

from . import config, providers, state, tokens, ui
from . import store as stores
from .errors import MailtokenError, UsageError
from .fast import fsutil


def add(path: str, name: str, values: dict[str, str], interactive: bool) -> config.Account:
    """Validate the account and write it into the config file at `path` without disturbing the rest."""
    import tomlkit

    text = config.read_text(path) if os.path.exists(path) else ""
    existing = config.parse(text, path) if text else config.Config(path=path)
    if name in existing.accounts:
        raise UsageError(f"account '{name}' already exists in {path}: edit the file or choose another name")
    fields = {k: v for k, v in values.items() if v}
    for key in _PROMPTS:
        why = answer_problem(key, fields[key]) if key in fields else None
        if why:
            raise UsageError(f"--{key.replace('_', '-')}: {why}", account=name)
    if interactive:
        for key, prompt in _PROMPTS.items():
            if key not in fields:
                answer = _ask(name, key, prompt)
                if answer:
                    fields[key] = answer
    table = {"provider": fields.pop("provider", "microsoft"), **fields}
    account = config.validate_account(name, table, path, providers.catalog())
    doc = tomlkit.parse(text) if text else tomlkit.document()
    if "accounts" not in doc:
        doc["accounts"] = tomlkit.table(is_super_table=True)
    item = tomlkit.table()
    for key, value in table.items():
        item[key] = value
    doc["accounts"][name] = item
    new_text = tomlkit.dumps(doc)
    config.parse(new_text, path)  # never write a file we could not read back
    fsutil.write_users_file(path, new_text.encode("utf-8"))
    return account


_PROMPTS = {
    "email": "Email address",
    "client_id": "Application (client) ID",
    "tenant": "Tenant (common, organizations, consumers, a domain or GUID) [common]",
}
_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_DOMAIN = re.compile(r"(?=.{4,253}$)([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.)+[a-zA-Z]{2,63}")
TENANT_WORDS = ("common", "organizations", "consumers")


def answer_problem(key: str, value: str) -> str | None:
    """Why `value` cannot be this key of a Microsoft account (with where to find a right one), or None."""
    if not value:
        return "required"
    if key == "email":
        local, at, domain = value.rpartition("@")
        if not (at and local and "." in domain) or not value.isprintable() or " " in value:
            return f"'{value}' is not an email address"
    elif key == "client_id" and not _GUID.fullmatch(value):
        return (
            f"'{value}' is not an application (client) ID: copy the GUID (like 11111111-2222-3333-4444-555555555555)"
            " from the app's Overview page at entra.microsoft.com > App registrations"
        )
    elif key == "tenant" and not (value.lower() in TENANT_WORDS or _GUID.fullmatch(value) or _DOMAIN.fullmatch(value)):
        close = difflib.get_close_matches(value.lower(), TENANT_WORDS, n=1, cutoff=0.7)
        meant = f"did you mean '{close[0]}'? " if close else ""
        return (
            f"'{value}' is not a tenant: {meant}give common, organizations, consumers, a domain like "
            "contoso.onmicrosoft.com, or the Directory (tenant) ID GUID from the app's Overview page"
        )
    return None


def _ask(name: str, key: str, prompt: str) -> str:
    """One answer, asked again until it is right; Ctrl-D stops `add` with nothing written."""
    while True:
        try:
            answer = input(f"{prompt}: ").strip()
        except EOFError:
            print(file=sys.stderr)
            raise UsageError("stopped at the end of input (Ctrl-D): nothing was written", account=name) from None
        if not answer and key == "tenant":
            return ""  # the default
        why = answer_problem(key, answer)
        if why is None:
            return answer
        ui.say(f"{name}: {key}: {why}; try again (Ctrl-D stops)")


class State(str, enum.Enum):
    """An account's sign-in state, as `status --json` names it (man mailtoken.1 documents each)."""

    SIGNED_IN = "signed-in"  # a grant is stored and nothing says it is dead
    NOT_SIGNED_IN = "not-signed-in"  # never signed in, or logged out
    GRANT_MISSING = "grant-missing"  # the state says signed in, but the store has no grant
    GRANT_REJECTED = "grant-rejected"  # the identity platform refused the grant: sign in again
    STORE_UNAVAILABLE = "store-unavailable"  # the store holding the grant cannot be used now
    APP_ONLY = "app-only"  # client credentials: nobody signs in
    CONFIG_ERROR = "config-error"  # the account's own table is wrong


# What the table's SIGNED IN column says for each state (the human output may change; --json is stable).
_SHOWN = {
    State.SIGNED_IN: "yes",
    State.NOT_SIGNED_IN: "no",
    State.GRANT_MISSING: "no (grant missing)",
    State.GRANT_REJECTED: "no (grant rejected: sign in again)",
    State.STORE_UNAVAILABLE: "unknown",
    State.APP_ONLY: "app-only",
    State.CONFIG_ERROR: "config error",
}


@dataclass
class Status:
    account: str
    email: str
    state: State
    expires: int | None
    store: str
    username: str = ""  # who actually signed in (the id token's), when known
    error: str = ""

    @property
    def signed_in(self) -> str:
        return _SHOWN[self.state]

    def as_json(self, now: float) -> dict[str, Any]:
        return {
            "account": self.account,
            "email": self.email,
            "signed_in": self.signed_in,
            "state": self.state.value,
            "expires": self.expires,
            "token_valid": self.expires is not None and self.expires > now,
            "needs_login": self.state in (State.NOT_SIGNED_IN, State.GRANT_MISSING, State.GRANT_REJECTED),
            "store": self.store,
            "username": self.username,
            "username_differs": bool(self.username) and self.username.lower() != self.email.lower(),
            "error": self.error,
        }


def status(cfg: config.Config, names: list[str]) -> list[Status]:
    rows = []
    for name in names or cfg.names():
        if name in cfg.broken:
            rows.append(Status(name, "", State.CONFIG_ERROR, None, "", error=cfg.broken[name].message))
            continue
        rows.append(_status_of(cfg.account(name)))
    return rows


def _status_of(acct: config.Account) -> Status:
    try:
        rec = tokens.read_record(acct.name)
    except MailtokenError:
        rec = None
    expires = rec.expires if rec else None
    if providers.engine_for(acct).grantless:
        from .providers import credentials

        # Nobody signs in: the app's own credential gets each token.
        return Status(acct.name, acct.email, State.APP_ONLY, expires, credentials.source(acct))
    try:
        remembered = stores.recall(acct.name)
    except MailtokenError as exc:
        return Status(acct.name, acct.email, State.STORE_UNAVAILABLE, expires, f"unavailable: {exc.message}")
    if remembered is None:
        return Status(acct.name, acct.email, State.NOT_SIGNED_IN, expires, f"({acct.store})")
    store = stores.by_name(remembered["store"])
    username = str(remembered.get("username", ""))
    try:
        store.check()
        present = store.load(acct.name) is not None or os.path.exists(state.files(acct.name).rescue)
    except MailtokenError as exc:
        where = f"{remembered['store']} (unavailable: {exc.message})"
        return Status(acct.name, acct.email, State.STORE_UNAVAILABLE, expires, where, username)
    signed_in = State.SIGNED_IN if present else State.GRANT_MISSING
    if present and os.path.exists(state.files(acct.name).rejected):
        signed_in = State.GRANT_REJECTED
    return Status(acct.name, acct.email, signed_in, expires, store.describe(acct.name), username)


def render(rows: list[Status], now: float | None = None) -> str:
    now = time.time() if now is None else now
    table = [("ACCOUNT", "EMAIL", "SIGNED IN", "ACCESS TOKEN", "STORE")]
    for r in rows:
        if r.expires is None:
            exp = "none"
        elif r.expires <= now:
            exp = f"expired {time.strftime('%Y-%m-%d %H:%M', time.localtime(r.expires))}"
        else:
            exp = f"until {time.strftime('%H:%M', time.localtime(r.expires))} ({int((r.expires - now) // 60)} min)"
        email = r.email
        if r.username and r.username.lower() != r.email.lower():
            email += f" (signed in as {r.username})"
        table.append((r.account, email, r.signed_in, exp, r.store))
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    lines = ("  ".join(c.ljust(w) for c, w in zip(row[:4], widths, strict=False)) + "  " + row[4] for row in table)
    return "\n".join(lines)


def as_json(rows: list[Status], now: float | None = None) -> dict[str, Any]:
    now = time.time() if now is None else now
    return {"format_version": 1, "accounts": [r.as_json(now) for r in rows]}
