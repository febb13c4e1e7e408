"""One lock per account around re-read -> refresh -> save, so parallel callers cause a single refresh.

filelock uses flock(2): the kernel drops the lock when its holder dies, so a kill -9 never leaves a stale lock.
Locks are per account: two accounts refreshing at once never wait for each other.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from . import state
from .errors import TemporaryFailure
from .fast import cached, fsutil


@contextmanager
def account_lock(account: str, timeout: float) -> Iterator[None]:
    claimed = cached.take_claim(account)
    if claimed is not None:
        # The cached path already holds this account's flock for us (same lock file, same process).
        try:
            yield
        finally:
            os.close(claimed)
        return
    from filelock import FileLock, Timeout

    path = state.files(account).lock
    fsutil.ensure_private_dir(os.path.dirname(path))
    lock = FileLock(path, timeout=max(timeout, 0.01), mode=0o600)
    try:
        lock.acquire()
    except Timeout:
        raise TemporaryFailure(
            "another mailtoken process holds this account's lock and did not finish in time: try again",
            account=account,
        ) from None
    try:
        yield
    finally:
        lock.release()
