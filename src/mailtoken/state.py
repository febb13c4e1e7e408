"""The one owner of every per-account file except the grant itself (which its store owns: store/).

| file                              | what                                                   | written by       |
|-----------------------------------|--------------------------------------------------------|------------------|
| RECORDS/ACCOUNT                   | the cached access token (record.py's line format)      | tokens.py        |
| RECORDS/ACCOUNT~graph.token      | the Graph access token, for `mailtoken sendmail`       | tokens.py        |
| RECORDS/ACCOUNT~graph.send        | the account's sending settings for a cached send       | graph/sendmail.py|
| RECORDS/ACCOUNT.wait              | Retry-After: no refresh before this moment             | tokens.py        |
| STATE/grants/ACCOUNT.rescue.json  | a rotated grant its store refused, until it takes it   | tokens.py        |
| STATE/accounts/ACCOUNT.json       | which store holds the grant, who signed in, when       | store/__init__   |
| STATE/accounts/ACCOUNT.rejected   | the identity platform's verdict on the stored grant    | tokens.py        |
| STATE/pending/ACCOUNT.json        | a device-code sign-in `login --no-wait` started        | signin/device.py |
| STATE/notify/ACCOUNT.last         | when notify_cmd last ran for the account               | notify.py        |
| STATE/locks/ACCOUNT.lock          | the refresh lock (flock; the cached path waits on it)     | lock.py          |

RECORDS is the runtime folder where there is one (locations.py, stdlib: the cached path reads it), else
STATE/run. `forget()` removes them all, so `logout` leaves nothing of the account behind.
"""

from __future__ import annotations

import os

from . import paths
from .fast import fsutil, locations, record


class AccountFiles:
    """Where each of one account's files is."""

    def __init__(self, account: str) -> None:
        self.account = account

    @property
    def record(self) -> str:
        return record.path_for(paths.record_dir(), self.account)

    def resource_record(self, resource: str) -> str:
        """The record of a second token from the same grant (graph/: "graph"). "~" is never in an account name."""
        return record.path_for(paths.record_dir(), f"{self.account}~{resource}")

    @property
    def graph_record(self) -> str:
        return self.resource_record("graph")

    @property
    def graph_settings(self) -> str:
        """graph/sendmail.py's Target: the account's sending settings, beside the Graph record."""
        return self.graph_record[: -len(".token")] + ".send"

    @property
    def wait(self) -> str:
        return os.path.join(paths.record_dir(), self.account + ".wait")

    @property
    def rescue(self) -> str:
        return os.path.join(paths.grants_dir(), self.account + ".rescue.json")

    @property
    def state(self) -> str:
        return os.path.join(paths.accounts_dir(), self.account + ".json")

    @property
    def rejected(self) -> str:
        return os.path.join(paths.accounts_dir(), self.account + ".rejected")

    @property
    def pending(self) -> str:
        return os.path.join(paths.state_dir(), "pending", self.account + ".json")

    @property
    def notice(self) -> str:
        return os.path.join(paths.state_dir(), "notify", self.account + ".last")

    @property
    def lock(self) -> str:
        return (
            locations.lock_path(self.account)
            if locations.fast_supported()
            else os.path.join(paths.locks_dir(), self.account + ".lock")
        )

    def all(self) -> dict[str, str]:
        names = (
            *("record", "graph_record", "graph_settings", "wait", "rescue"),
            *("state", "rejected", "pending", "notice", "lock"),
        )
        return {name: getattr(self, name) for name in names}


def files(account: str) -> AccountFiles:
    return AccountFiles(account)


# What `logout` reports for the files worth naming; the others are bookkeeping.
_SAID = {
    "record": "access-token record",
    "graph_record": "Graph access-token record",
    "rescue": "rescued grant",
    "state": "account state",
    "pending": "pending sign-in",
}


def forget(account: str) -> list[str]:
    """Remove every file of the account (not its grant: the store's); returns what was worth saying."""
    removed = []
    for name, path in files(account).all().items():
        if fsutil.remove(path) and name in _SAID:
            removed.append(_SAID[name])
    return removed
