"""The per-account access-token record: a small 0600 line file the hot path reads with the stdlib alone.

    mailtoken-record 1
    expires 1764140000        epoch seconds when the access token expires
    refresh 1764139700        epoch seconds after which a caller refreshes: expires - min(300, lifetime/2)
    config 1764130000000000000 412 93211   mtime_ns size inode of the config file it was made under
    user me@contoso.com       default SASL user
    token eyJ0eXAi...

The refresh token is never here: it lives in the grant store (store/).
"""

from __future__ import annotations

import os
import time
from typing import NamedTuple

from . import fsutil

MAGIC = "mailtoken-record 1"
# An outage may still serve a token that has at least this long to live.
SERVE_MARGIN = 30


class Record(NamedTuple):
    expires: int
    refresh: int
    config: str
    user: str
    token: str

    def fresh(self, now: float, stamp: str) -> bool:
        return now < self.refresh and stamp == self.config

    def usable(self, now: float) -> bool:
        return now < self.expires - min(SERVE_MARGIN, (self.expires - self.refresh))


def path_for(folder: str, account: str) -> str:
    return os.path.join(folder, account + ".token")


def config_stamp(config_path: str) -> str:
    try:
        st = os.stat(config_path)
    except OSError:
        return "none"
    return f"{st.st_mtime_ns} {st.st_size} {st.st_ino}"


def refresh_at(obtained: float, expires_in: int) -> int:
    return int(obtained + expires_in - min(300, expires_in / 2))


def parse(data: bytes) -> Record | None:
    lines = data.decode("utf-8", "replace").split("\n")
    if len(lines) < 6 or lines[0] != MAGIC:
        return None
    fields = {}
    for line in lines[1:]:
        key, _, value = line.partition(" ")
        fields[key] = value
    try:
        return Record(int(fields["expires"]), int(fields["refresh"]), fields["config"], fields["user"], fields["token"])
    except (KeyError, ValueError):
        return None


def dump(rec: Record) -> bytes:
    for value in (rec.config, rec.user, rec.token):
        if "\n" in value or "\r" in value:
            raise ValueError("record field holds a line break")
    return (
        f"{MAGIC}\nexpires {rec.expires}\nrefresh {rec.refresh}\nconfig {rec.config}\n"
        f"user {rec.user}\ntoken {rec.token}\n"
    ).encode()


def read(path: str) -> Record | None:
    """The record, or None if missing or unreadable as a record. Raises PermissionError for unsafe files."""
    data = fsutil.read_private(path)
    return None if data is None else parse(data)


def write(path: str, rec: Record) -> None:
    fsutil.atomic_write(path, dump(rec))


def now() -> float:
    return time.time()
