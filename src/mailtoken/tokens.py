"""Getting a fresh access token: the record if fresh, else one single-flight refresh per account.

The order of a refresh is what keeps the grant safe: lock, re-read the record (another process may have just
refreshed), load the grant, refresh, save the grant, write the record. A crash before the save loses nothing
the provider has not already rotated; a crash after it loses only the record, which the next call rebuilds.
"""

from __future__ import annotations

import os
import time

from . import fsutil, lock, paths, providers, record, ui
from . import store as stores
from .config import Account
from .deadline import Deadline, critical
from .errors import SignInRequired, StoreUnavailable, TemporaryFailure

# Upper bound for one HTTP exchange; the command's deadline may cut it shorter.
NET_TIMEOUT = 20.0


def record_path(account: str) -> str:
    return record.path_for(paths.record_dir(), account)


def rescue_path(account: str) -> str:
    """Where a rotated grant goes when its store refuses the write, so it is never lost."""
    return os.path.join(paths.grants_dir(), account + ".rescue.json")


def read_record(account: str) -> record.Record | None:
    try:
        return record.read(record_path(account))
    except PermissionError as exc:
        raise StoreUnavailable(str(exc), account=account) from None
    except OSError:
        return None


def get(acct: Account, config_path: str, deadline: Deadline) -> record.Record:
    stamp = record.config_stamp(config_path)
    rec = read_record(acct.name)
    if rec and rec.fresh(time.time(), stamp):
        ui.debug(f"{acct.name}: cached access token valid until {time.ctime(rec.expires)}")
        return rec
    with lock.account_lock(acct.name, deadline.remaining()):
        rec = read_record(acct.name)
        if rec and rec.fresh(time.time(), stamp):
            ui.debug(f"{acct.name}: another process refreshed the token while we waited")
            return rec
        return _refresh(acct, rec, stamp, deadline)


def _load_grant(acct: Account) -> tuple[stores.GrantStore, str]:
    store, _state = stores.for_account(acct)
    rescued = fsutil.read_private(rescue_path(acct.name))
    if rescued is not None:
        ui.debug(f"{acct.name}: using the grant rescued after a failed store write")
        return store, rescued.decode("utf-8")
    blob = store.load(acct.name)
    if blob is None:
        raise SignInRequired(
            f"sign-in required (no grant in {store.describe()}): run 'mailtoken login {acct.name}'", account=acct.name
        )
    return store, blob


def _refresh(acct: Account, old: record.Record | None, stamp: str, deadline: Deadline) -> record.Record:
    store, blob = _load_grant(acct)
    ui.debug(f"{acct.name}: refreshing the access token (grant in {store.describe()})")
    engine = providers.engine(acct.provider)
    started = time.time()
    try:
        grant = engine.refresh(acct, blob, timeout=max(1.0, min(deadline.remaining(), NET_TIMEOUT)))
    except TemporaryFailure as exc:
        if old is not None and old.config == stamp and old.usable(time.time()):
            ui.debug(f"{acct.name}: {exc.message}; serving the cached token (valid until {time.ctime(old.expires)})")
            return old
        raise
    with critical():
        warning = save_grant(acct, store, grant.blob)
        rec = make_record(acct, grant.access_token, grant.expires_in, started, stamp)
        record.write(record_path(acct.name), rec)
    if warning:
        ui.say(f"{acct.name}: warning: {warning}")
    ui.debug(f"{acct.name}: new access token valid for {grant.expires_in} s")
    return rec


def save_grant(acct: Account, store: stores.GrantStore, blob: str) -> str | None:
    """Save a new grant; if its store refuses, keep it in a rescue file and return a warning instead."""
    try:
        store.save(acct.name, blob)
    except StoreUnavailable as exc:
        # The provider has rotated the refresh token already: losing the new one would force a new sign-in.
        fsutil.atomic_write(rescue_path(acct.name), blob.encode("utf-8"))
        return f"{exc.message} (the new grant is kept in {rescue_path(acct.name)} until the store works again)"
    fsutil.remove(rescue_path(acct.name))
    return None


def make_record(acct: Account, token: str, expires_in: int, obtained: float, stamp: str) -> record.Record:
    return record.Record(
        expires=int(obtained + expires_in),
        refresh=record.refresh_at(obtained, expires_in),
        config=stamp,
        user=acct.email,
        token=token,
    )
