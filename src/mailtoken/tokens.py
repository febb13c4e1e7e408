"""Getting a fresh access token: the record if fresh, else one single-flight refresh per account.

The order of a refresh is what keeps the grant safe: lock, re-read the record (another process may have just
refreshed), load the grant, refresh, save the grant, write the record. A crash before the save loses nothing
the provider has not already rotated; a crash after it loses only the record, which the next call rebuilds.
Once the identity platform's answer is in, the deadline and polite signals (SIGTERM, SIGINT, SIGHUP) wait until
the grant is saved (deadline.hold); only SIGKILL or power loss can land between rotation and save.

Transient or fatal, the rule:

- Only an authoritative verdict on the grant itself ends it: the token endpoint answers `invalid_grant` and the
  answer names no condition that can clear without a new sign-in (MFA, Conditional Access, consent: the
  entries marked `conditional` in providers/aadsts.toml; the rule itself is in providers/errors.py). Then
  the grant is marked rejected (accounts/ACCOUNT.rejected holds a fingerprint of that grant and the
  message), so later callers exit 77 at once instead of asking the identity platform again. The grant
  itself is never deleted; `mailtoken login` stores a new one, whose fingerprint differs, which clears it.
- Everything else is temporary (exit 75) and leaves the grant untouched: no network, DNS, refused connection,
  TLS failure, timeout, HTTP 5xx or 429, an answer that is not JSON or cut off, an unknown error code, a lock
  held too long. While the cached access token still has SERVE_MARGIN seconds to live it is served instead.
- `interaction_required`, MFA (AADSTS50076/50079) and Conditional Access (53003) answers exit 77 with their
  advice but do not mark the grant: the next call asks again.
- A Retry-After from the identity platform (HTTP 429 or 5xx) is honoured by every process: until it has passed,
  callers serve the cached token or exit 75 without asking again.
- An answer that rotates the refresh token is saved before anything else in it is judged (RotatedGrant): a
  bad access token or lifetime beside it is then a temporary failure, and the new refresh token is kept.

Config edits: a record is servable while the account's own settings are unchanged (record.settings holds
config.Account.fingerprint()). When the file changed (a comment, another account) but this account's
settings did not, the record is re-stamped for the new file without any network call; a change to the
account itself (client_id, tenant, authority, email, scopes, store...) makes it stale.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from typing import Any

from . import lock, providers, state, ui
from . import store as stores
from .config import Account
from .deadline import Deadline, critical, release
from .errors import MailtokenError, SignInRequired, StoreUnavailable, TemporaryFailure
from .fast import fsutil, record
from .providers.base import Grant, RotatedGrant

# Upper bound for one HTTP exchange; the command's deadline may cut it shorter.
NET_TIMEOUT = 20.0


def record_path(account: str, resource: str | None = None) -> str:
    """The record of the account's mail token, or of its token for another `resource` ("graph"): a second
    access token from the same grant."""
    return state.files(account).record if resource is None else state.files(account).resource_record(resource)


def read_record(account: str, resource: str | None = None) -> record.Record | None:
    path = record_path(account, resource)
    try:
        return record.read(path)
    except PermissionError as exc:
        raise StoreUnavailable(
            f"cannot use the access-token record {path}: {exc.strerror or exc}", account=account
        ) from None
    except OSError:
        return None


def get(
    acct: Account,
    config_path: str,
    deadline: Deadline,
    *,
    min_validity: float = 0,
    serve_stale: bool = True,
    resource: str | None = None,
) -> record.Record:
    """A fresh token for the account: the record's, or one single-flight refresh.

    `min_validity` also refreshes a fresh token that expires within that many seconds (timers, the bridge);
    with `serve_stale` False a temporary failure is reported even while the old token is still usable. Safe to
    call from a worker thread (the deadline then bounds the lock wait and each network exchange). `resource`
    names another resource's token from the same grant (the engine knows its scopes); its refresh takes the
    same per-account lock, since it rotates the same refresh token.
    """
    try:
        return _get(acct, config_path, deadline, min_validity, serve_stale, resource)
    except MailtokenError as exc:
        if exc.account is None:  # a store's error names no account; the line on stderr must
            exc.account = acct.name
        raise


def _current(
    rec: record.Record | None, acct: Account, stamp: str, min_validity: float, resource: str | None = None
) -> record.Record | None:
    """`rec` if it may be served now for the config as it is, re-stamped when only the file changed."""
    if rec is None:
        return None
    now = time.time()
    if rec.expires - now < min_validity:
        return None
    if rec.fresh(now, stamp):
        return rec
    if rec.config != stamp and rec.settings == acct.fingerprint() and rec.fresh(now, rec.config):
        # The file changed but not this account: the token stands; the new stamp puts it back on the fast path.
        renewed = rec._replace(config=stamp)
        with contextlib.suppress(OSError):
            record.write(record_path(acct.name, resource), renewed)
        ui.debug(f"{acct.name}: the config file changed but not this account's settings; token kept")
        return renewed
    return None


def _get(
    acct: Account, config_path: str, deadline: Deadline, min_validity: float, serve_stale: bool, resource: str | None
) -> record.Record:
    stamp = record.config_stamp(config_path)
    rec = _current(read_record(acct.name, resource), acct, stamp, min_validity, resource)
    if rec is not None:
        ui.debug(f"{acct.name}: cached access token valid until {time.ctime(rec.expires)}")
        return rec
    with lock.account_lock(acct.name, deadline.remaining()):
        old = read_record(acct.name, resource)
        rec = _current(old, acct, stamp, min_validity, resource)
        if rec is not None:
            ui.debug(f"{acct.name}: another process refreshed the token while we waited")
            return rec
        return _refresh(acct, old if serve_stale else None, stamp, deadline, resource)


def _fingerprint(blob: str) -> str:
    import hashlib

    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:32]


def _read_json(path: str) -> dict[str, Any] | None:
    try:
        data = fsutil.read_private(path)
        value = json.loads(data) if data is not None else None
    except (OSError, ValueError, RecursionError):
        return None  # unreadable or unsafe: as if absent (the caller then asks the identity platform)
    return value if isinstance(value, dict) else None


def _load_grant(acct: Account) -> tuple[stores.GrantStore, str]:
    files = state.files(acct.name)
    store, _state = stores.for_account(acct)
    rescued = fsutil.read_private(files.rescue)
    if rescued is not None:
        ui.debug(f"{acct.name}: using the grant rescued after a failed store write")
        blob = rescued.decode("utf-8")
    else:
        loaded = store.load(acct.name)
        if loaded is None:
            raise SignInRequired(
                f"sign-in required (no grant in {store.describe(acct.name)}): run 'mailtoken login {acct.name}'",
                account=acct.name,
            )
        blob = loaded
    mark = _read_json(files.rejected)
    if mark is not None:
        if mark.get("grant") == _fingerprint(blob) and isinstance(mark.get("message"), str):
            ui.debug(f"{acct.name}: the identity platform rejected this grant before; not asking again")
            raise SignInRequired(mark["message"], account=acct.name)
        fsutil.remove(files.rejected)  # a new sign-in replaced the rejected grant
    return store, blob


def _mark_rejected(acct: Account, blob: str, message: str) -> None:
    mark = {"grant": _fingerprint(blob), "message": message, "since": int(time.time())}
    try:
        fsutil.atomic_write(state.files(acct.name).rejected, json.dumps(mark).encode("utf-8"))
    except OSError as exc:  # the mark only saves a round trip; the answer stands without it
        ui.debug(f"{acct.name}: could not remember the rejected grant: {exc.strerror or exc}")


def _waiting(acct: Account) -> int | None:
    """The epoch until which the identity platform asked us not to come back (Retry-After), if still ahead."""
    wait = _read_json(state.files(acct.name).wait)
    until = wait.get("until") if wait else None
    return until if isinstance(until, int) and time.time() < until else None


def _remember_wait(acct: Account, seconds: int) -> None:
    with contextlib.suppress(OSError):  # the wait file only spares the identity platform some calls
        fsutil.atomic_write(state.files(acct.name).wait, json.dumps({"until": int(time.time()) + seconds}).encode())


def _refresh(
    acct: Account, old: record.Record | None, stamp: str, deadline: Deadline, resource: str | None = None
) -> record.Record:
    until = _waiting(acct)
    if until is not None:
        when = time.strftime("%H:%M:%S", time.localtime(until))
        exc = TemporaryFailure(
            f"temporary failure: the identity platform asked to wait (Retry-After): try again after {when}",
            account=acct.name,
        )
        return _serve_or_raise(acct, old, exc)
    engine = providers.engine_for(acct)
    # A grantless engine (app-only: client credentials) asks with the app's own credential each time.
    store, blob = (None, "") if engine.grantless else _load_grant(acct)
    where = store.describe(acct.name) if store else "none: app-only"
    ui.debug(f"{acct.name}: refreshing the access token (grant in {where})")
    started = time.time()
    try:
        # From the moment the answer is in, the engine holds the deadline and signals (providers/base.py).
        timeout = max(1.0, min(deadline.remaining(), NET_TIMEOUT))
        grant = engine.refresh(acct, blob, timeout=timeout, **({"resource": resource} if resource else {}))
    except RotatedGrant as rotated:
        with critical():
            warning = save_grant(acct, store, rotated.blob) if store is not None else None
        if warning:
            ui.say(f"{acct.name}: warning: {warning}")
        if isinstance(rotated.error, TemporaryFailure):
            return _serve_or_raise(acct, old, rotated.error)
        raise rotated.error from None
    except TemporaryFailure as exc:
        release()
        if exc.retry_after:
            _remember_wait(acct, exc.retry_after)
        return _serve_or_raise(acct, old, exc)
    except SignInRequired as exc:
        release()
        if exc.grant_rejected and store is not None:
            _mark_rejected(acct, blob, exc.message)
        raise
    except BaseException:
        release()
        raise
    rec, warning = commit(acct, store, grant, started, stamp, resource=resource)
    fsutil.remove(state.files(acct.name).wait)
    if warning:
        ui.say(f"{acct.name}: warning: {warning}")
    ui.debug(f"{acct.name}: new access token valid for {grant.expires_in} s")
    return rec


def commit(
    acct: Account,
    store: stores.GrantStore | None,
    grant: Grant,
    obtained: float,
    stamp: str,
    remember: dict[str, object] | None = None,
    resource: str | None = None,
) -> tuple[record.Record, str | None]:
    """Save the grant, (at a sign-in) the account state, then write the record: the one order every refresh
    and sign-in keeps, so a crash at any point leaves the newest grant on disk.

    Under `critical()`: a half-done save is worse than a late one. Returns the record and a warning when the
    grant's store refused it (the grant is then in the rescue file). With no store (app-only) only the record.
    """
    with critical():
        warning = save_grant(acct, store, grant.blob) if store is not None else None
        if remember is not None:
            stores.remember(acct.name, remember)
        rec = make_record(acct, grant.access_token, grant.expires_in, obtained, stamp)
        record.write(record_path(acct.name, resource), rec)
    return rec, warning


# A sign-in waits this long for a refresh under way to finish before it saves.
SIGN_IN_LOCK_WAIT = 60.0


def save_sign_in(
    acct: Account, store: stores.GrantStore | None, grant: Grant, obtained: float, config_path: str
) -> str | None:
    """Keep a new sign-in, under the account's lock: a refresh that started before it (with the old grant)
    finishes first and cannot overwrite it. The old grant's verdicts (rejected mark, Retry-After) go."""
    files = state.files(acct.name)
    with lock.account_lock(acct.name, SIGN_IN_LOCK_WAIT):
        remember = None
        if store is not None:
            remember = {"store": store.name, "username": grant.username, "signed_in": int(time.time())}
        _rec, warning = commit(acct, store, grant, obtained, record.config_stamp(config_path), remember)
        fsutil.remove(files.rejected)
        fsutil.remove(files.wait)
    return warning


def _serve_or_raise(acct: Account, old: record.Record | None, exc: TemporaryFailure) -> record.Record:
    if old is not None and old.settings == acct.fingerprint() and old.usable(time.time()):
        ui.debug(f"{acct.name}: {exc.message}; serving the cached token (valid until {time.ctime(old.expires)})")
        return old
    raise exc


def save_grant(acct: Account, store: stores.GrantStore, blob: str) -> str | None:
    """Save a new grant; if its store refuses, keep it in a rescue file and return a warning instead."""
    rescue = state.files(acct.name).rescue
    try:
        store.save(acct.name, blob)
    except StoreUnavailable as exc:
        # The provider has rotated the refresh token already: losing the new one would force a new sign-in.
        fsutil.atomic_write(rescue, blob.encode("utf-8"))
        return f"{exc.message} (the new grant is kept in {rescue} until the store works again)"
    fsutil.remove(rescue)
    return None


def make_record(acct: Account, token: str, expires_in: int, obtained: float, stamp: str) -> record.Record:
    refresh = record.refresh_at(obtained, expires_in)
    expires = int(obtained + expires_in)
    boot_now = record.boottime()
    boot = None
    if boot_now is not None:
        # The same moments on the boot clock, which wall-clock jumps do not move (record.py).
        offset = boot_now - time.time()
        boot = (math.floor(obtained + offset), math.ceil(refresh + offset), math.ceil(expires + offset))
    return record.Record(
        expires=expires,
        refresh=refresh,
        config=stamp,
        user=acct.email,
        token=token,
        boot=boot,
        settings=acct.fingerprint(),
    )
