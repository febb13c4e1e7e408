"""Getting a fresh access token: the record if fresh, else one single-flight refresh per account.

The order of a refresh is what keeps the grant safe: lock, re-read the record (another process may have just
refreshed), load the grant, refresh, save the grant, write the record. A crash before the save loses nothing
the provider has not already rotated; a crash after it loses only the record, which the next call rebuilds.
Once the identity platform's answer is in, the deadline and polite signals (SIGTERM, SIGINT, SIGHUP) wait until
the grant is saved (deadline.hold); only SIGKILL or power loss can land between rotation and save.

Transient or fatal, the rule:

- Only an authoritative verdict on the grant itself ends it: the token endpoint answers `invalid_grant` and the
  answer names no condition that can clear without a new sign-in (MFA, Conditional Access, consent: see
  providers.CONDITIONAL_CODES). Then the grant is marked rejected (accounts/ACCOUNT.rejected holds a fingerprint
  of that grant and the message), so later callers exit 77 at once instead of asking the identity platform
  again. The grant itself is never deleted; `mailtoken login` stores a new one, whose fingerprint differs,
  which clears the mark.
- Everything else is temporary (exit 75) and leaves the grant untouched: no network, DNS, refused connection,
  TLS failure, timeout, HTTP 5xx or 429, an answer that is not JSON or cut off, an unknown error code, a lock
  held too long. While the cached access token still has SERVE_MARGIN seconds to live it is served instead.
- `interaction_required`, MFA (AADSTS50076/50079) and Conditional Access (53003) answers exit 77 with their
  advice but do not mark the grant: the next call asks again.
- A Retry-After from the identity platform (HTTP 429 or 5xx) is honoured by every process: until it has passed,
  callers serve the cached token or exit 75 without asking again.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time

from . import fsutil, lock, paths, providers, record, ui
from . import store as stores
from .config import Account
from .deadline import Deadline, critical, release
from .errors import MailtokenError, SignInRequired, StoreUnavailable, TemporaryFailure

# Upper bound for one HTTP exchange; the command's deadline may cut it shorter.
NET_TIMEOUT = 20.0


def record_path(account: str, resource: str | None = None) -> str:
    """The record of the account's mail token, or of its token for another `resource` (like "graph"): a
    second access token from the same grant. "~" cannot occur in an account name, so names never collide."""
    return record.path_for(paths.record_dir(), account if resource is None else f"{account}~{resource}")


def rescue_path(account: str) -> str:
    """Where a rotated grant goes when its store refuses the write, so it is never lost."""
    return os.path.join(paths.grants_dir(), account + ".rescue.json")


def read_record(account: str, resource: str | None = None) -> record.Record | None:
    try:
        return record.read(record_path(account, resource))
    except PermissionError as exc:
        raise StoreUnavailable(str(exc), account=account) from None
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

    `min_validity` also refreshes a fresh token that expires within that many seconds (timers); with
    `serve_stale` False a temporary failure is reported even while the old token is still usable. `resource`
    names another resource's token from the same grant (providers' engines know which scopes it means); its
    refresh takes the same per-account lock, since it rotates the same refresh token.
    """
    try:
        return _get(acct, config_path, deadline, min_validity, serve_stale, resource)
    except MailtokenError as exc:
        if exc.account is None:  # a store's error names no account; the line on stderr must
            exc.account = acct.name
        raise


def _fresh_enough(rec: record.Record, stamp: str, min_validity: float) -> bool:
    now = time.time()
    return rec.fresh(now, stamp) and rec.expires - now >= min_validity


def _get(
    acct: Account, config_path: str, deadline: Deadline, min_validity: float, serve_stale: bool, resource: str | None
) -> record.Record:
    stamp = record.config_stamp(config_path)
    rec = read_record(acct.name, resource)
    if rec is not None and _fresh_enough(rec, stamp, min_validity):
        ui.debug(f"{acct.name}: cached access token valid until {time.ctime(rec.expires)}")
        return rec
    with lock.account_lock(acct.name, deadline.remaining()):
        rec = read_record(acct.name, resource)
        if rec is not None and _fresh_enough(rec, stamp, min_validity):
            ui.debug(f"{acct.name}: another process refreshed the token while we waited")
            return rec
        return _refresh(acct, rec if serve_stale else None, stamp, deadline, resource)


def rejected_path(account: str) -> str:
    return os.path.join(paths.accounts_dir(), account + ".rejected")


def wait_path(account: str) -> str:
    return os.path.join(paths.record_dir(), account + ".wait")


def _fingerprint(blob: str) -> str:
    import hashlib

    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:32]


def _read_json(path: str) -> dict | None:
    try:
        data = fsutil.read_private(path)
        value = json.loads(data) if data is not None else None
    except (OSError, ValueError):
        return None  # unreadable or unsafe: as if absent (the caller then asks the identity platform)
    return value if isinstance(value, dict) else None


def _load_grant(acct: Account) -> tuple[stores.GrantStore, str]:
    store, _state = stores.for_account(acct)
    rescued = fsutil.read_private(rescue_path(acct.name))
    if rescued is not None:
        ui.debug(f"{acct.name}: using the grant rescued after a failed store write")
        blob = rescued.decode("utf-8")
    else:
        loaded = store.load(acct.name)
        if loaded is None:
            raise SignInRequired(
                f"sign-in required (no grant in {store.describe()}): run 'mailtoken login {acct.name}'",
                account=acct.name,
            )
        blob = loaded
    mark = _read_json(rejected_path(acct.name))
    if mark is not None:
        if mark.get("grant") == _fingerprint(blob) and isinstance(mark.get("message"), str):
            ui.debug(f"{acct.name}: the identity platform rejected this grant before; not asking again")
            raise SignInRequired(mark["message"], account=acct.name)
        fsutil.remove(rejected_path(acct.name))  # a new sign-in replaced the rejected grant
    return store, blob


def _mark_rejected(acct: Account, blob: str, message: str) -> None:
    mark = {"grant": _fingerprint(blob), "message": message, "since": int(time.time())}
    try:
        fsutil.atomic_write(rejected_path(acct.name), json.dumps(mark).encode("utf-8"))
    except OSError as exc:  # the mark only saves a round trip; the answer stands without it
        ui.debug(f"{acct.name}: could not remember the rejected grant: {exc.strerror or exc}")


def _waiting(acct: Account) -> int | None:
    """The epoch until which the identity platform asked us not to come back (Retry-After), if still ahead."""
    wait = _read_json(wait_path(acct.name))
    until = wait.get("until") if wait else None
    return until if isinstance(until, int) and time.time() < until else None


def _remember_wait(acct: Account, seconds: int) -> None:
    with contextlib.suppress(OSError):  # the wait file only spares the identity platform some calls
        fsutil.atomic_write(wait_path(acct.name), json.dumps({"until": int(time.time()) + seconds}).encode())


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
        return _serve_or_raise(acct, old, stamp, exc)
    # An app-only account (client credentials) has no grant: the engine asks with the app's own credential.
    store, blob = (None, "") if providers.app_only(acct) else _load_grant(acct)
    ui.debug(f"{acct.name}: refreshing the access token (grant in {store.describe() if store else 'none: app-only'})")
    engine = providers.engine(acct.provider)
    started = time.time()
    try:
        # From the moment the answer is in, the engine holds the deadline and signals (deadline.hold).
        timeout = max(1.0, min(deadline.remaining(), NET_TIMEOUT))
        grant = engine.refresh(acct, blob, timeout=timeout, **({"resource": resource} if resource else {}))
    except TemporaryFailure as exc:
        release()
        if exc.retry_after:
            _remember_wait(acct, exc.retry_after)
        return _serve_or_raise(acct, old, stamp, exc)
    except SignInRequired as exc:
        release()
        if exc.grant_rejected and store is not None:
            _mark_rejected(acct, blob, exc.message)
        raise
    except BaseException:
        release()
        raise
    with critical():
        warning = save_grant(acct, store, grant.blob) if store is not None else None
        rec = make_record(acct, grant.access_token, grant.expires_in, started, stamp)
        record.write(record_path(acct.name, resource), rec)
        fsutil.remove(wait_path(acct.name))
    if warning:
        ui.say(f"{acct.name}: warning: {warning}")
    ui.debug(f"{acct.name}: new access token valid for {grant.expires_in} s")
    return rec


def _serve_or_raise(acct: Account, old: record.Record | None, stamp: str, exc: TemporaryFailure) -> record.Record:
    if old is not None and old.config == stamp and old.usable(time.time()):
        ui.debug(f"{acct.name}: {exc.message}; serving the cached token (valid until {time.ctime(old.expires)})")
        return old
    raise exc


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
    )
