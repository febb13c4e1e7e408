"""Where each account's grant (msal's serialized cache, holding the refresh token) is kept.

Two stores: the OS keyring (store/keyring_store.py) and a 0600 file (store/file_store.py). `auto` picks the
keyring when a real backend is usable, else the file, and says so at login. The choice is remembered per
account; when that store is unusable later the caller gets exit 69 with the fix — never a silent look
elsewhere that would end in a misleading "sign-in required".
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from ..config import Account
from ..errors import SignInRequired, StoreUnavailable
from ..fast import fsutil
from ..state import files as account_files


class GrantStore(Protocol):
    name: str

    def check(self) -> None:
        """Raise StoreUnavailable(reason and fix) unless the store can be used now."""

    def describe(self, account: str | None = None) -> str:
        """Where the grant is (the file store names the account's file)."""

    def load(self, account: str) -> str | None: ...

    def save(self, account: str, blob: str) -> None: ...

    def delete(self, account: str) -> bool: ...


def by_name(name: str) -> GrantStore:
    if name == "keyring":
        from .keyring_store import KeyringStore

        return KeyringStore()
    if name == "file":
        from .file_store import FileStore

        return FileStore()
    raise StoreUnavailable(f"unknown store '{name}' in the account state")


def _state_path(account: str) -> str:
    return account_files(account).state


def recall(account: str) -> dict[str, Any] | None:
    """The remembered state of an account: which store holds its grant, who signed in."""
    try:
        data = fsutil.read_private(_state_path(account))
    except PermissionError as exc:
        raise StoreUnavailable(str(exc), account=account) from None
    if data is None:
        return None
    try:
        state = json.loads(data)
    except ValueError:
        return None
    return state if isinstance(state, dict) and isinstance(state.get("store"), str) else None


def remember(account: str, state: dict[str, Any]) -> None:
    fsutil.atomic_write(_state_path(account), json.dumps(state, sort_keys=True).encode())


def choose_for_login(acct: Account) -> tuple[GrantStore, str | None]:
    """The store a new grant goes to, and a note to show when `auto` fell back to the file."""
    if acct.store != "auto":
        store = by_name(acct.store)
        store.check()
        return store, None
    keyring_store = by_name("keyring")
    try:
        keyring_store.check()
    except StoreUnavailable as exc:
        file_store = by_name("file")
        return (
            file_store,
            f"keyring not usable ({exc.message.split(':')[0]}); keeping the grant in {file_store.describe(acct.name)}",
        )
    return keyring_store, None


def for_account(acct: Account) -> tuple[GrantStore, dict[str, Any]]:
    """The store holding this account's grant, usable now, with the account state."""
    state = recall(acct.name)
    if state is None:
        raise SignInRequired(f"not signed in: run 'mailtoken login {acct.name}'", account=acct.name)
    store = by_name(state["store"])
    try:
        store.check()
    except StoreUnavailable as exc:
        exc.account = acct.name
        raise
    return store, state
