"""The per-account access-token record: a small 0600 line file the hot path reads with the stdlib alone.

    mailtoken-record 1
    expires 1764140000        epoch seconds when the access token expires
    refresh 1764139700        epoch seconds after which a caller refreshes: expires - min(300, lifetime/2)
    config 1764130000000000000 412 93211   mtime_ns size inode of the config file it was made under
    user me@contoso.com       default SASL user
    token eyJ0eXAi...
    boot 91234 94234 94534    the same three moments (obtained, refresh, expires) on CLOCK_BOOTTIME (optional)
    settings 3f2a…            fingerprint of the account's own settings it was made under (optional)

The refresh token is never here: it lives in the grant store (store/).

Clocks: `expires_in` is relative, so a wall clock that is off by a constant (ahead or behind) changes nothing.
A wall clock that jumps after the record was written (NTP fixing a laptop's clock after sleep, a hand-set
clock) could make a stale record look fresh; the `boot` line, on a clock that counts suspend and never jumps,
catches that on Linux: a record is fresh only if both clocks say so.
"""

from __future__ import annotations

import os
import time

from . import fsutil

MAGIC = "mailtoken-record 1"
# An outage may still serve a token that has at least this long to live.
SERVE_MARGIN = 30


_BOOTTIME = getattr(time, "CLOCK_BOOTTIME", None)


def boottime() -> float | None:
    """Seconds since boot, suspend included (Linux): immune to wall-clock jumps. None where there is no such clock."""
    return None if _BOOTTIME is None else time.clock_gettime(_BOOTTIME)


class Record:
    """One account's cached access token. A plain class: typing.NamedTuple would cost the hot path an import."""

    __slots__ = ("expires", "refresh", "config", "user", "token", "boot", "settings")

    def __init__(
        self,
        expires: int,
        refresh: int,
        config: str,
        user: str,
        token: str,
        boot: tuple[int, int, int] | None = None,
        settings: str = "",
    ) -> None:
        self.expires = expires
        self.refresh = refresh
        self.config = config
        self.user = user
        self.token = token
        # (obtained, refresh, expires) on CLOCK_BOOTTIME, when the writer had that clock.
        self.boot = boot
        # A fingerprint of the account's own settings (config.Account.fingerprint): while it matches, an edit
        # elsewhere in the config file does not make the token stale (tokens.py re-stamps the record).
        self.settings = settings

    def _fields(self) -> tuple[object, ...]:
        return (self.expires, self.refresh, self.config, self.user, self.token, self.boot, self.settings)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Record) and self._fields() == other._fields()

    def __repr__(self) -> str:
        # Never the token: a repr can end up in a traceback or a test report.
        return f"Record(expires={self.expires}, refresh={self.refresh}, user={self.user!r}, token=<{len(self.token)}>)"

    def _replace(self, **changes: object) -> Record:
        values = dict(zip(self.__slots__, self._fields(), strict=True))
        values.update(changes)
        return Record(**values)  # type: ignore[arg-type]  # noqa: PGH003

    def _boot_before(self, index: int, margin: int = 0) -> bool:
        """True unless the boot clock proves the moment `boot[index]` (less `margin`) has passed."""
        now = boottime()
        if self.boot is None or now is None or now < self.boot[0]:
            return True  # no boot clock, or a record from an earlier boot: the wall clock decides alone
        return now < self.boot[index] - margin

    def fresh(self, now: float, stamp: str) -> bool:
        return now < self.refresh and stamp == self.config and self._boot_before(1)

    def usable(self, now: float) -> bool:
        margin = min(SERVE_MARGIN, (self.expires - self.refresh))
        return now < self.expires - margin and self._boot_before(2, margin)


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
        boot = tuple(int(v) for v in fields["boot"].split(" ")) if "boot" in fields else None
        return Record(
            int(fields["expires"]),
            int(fields["refresh"]),
            fields["config"],
            fields["user"],
            fields["token"],
            (boot[0], boot[1], boot[2]) if boot and len(boot) == 3 else None,
            fields.get("settings", ""),
        )
    except (KeyError, ValueError):
        return None


def dump(rec: Record) -> bytes:
    for value in (rec.config, rec.user, rec.token, rec.settings):
        if "\n" in value or "\r" in value:
            raise ValueError("record field holds a line break")
    return (
        f"{MAGIC}\nexpires {rec.expires}\nrefresh {rec.refresh}\nconfig {rec.config}\n"
        f"user {rec.user}\ntoken {rec.token}\n"
        + (f"boot {rec.boot[0]} {rec.boot[1]} {rec.boot[2]}\n" if rec.boot else "")
        + (f"settings {rec.settings}\n" if rec.settings else "")
    ).encode()


def read(path: str) -> Record | None:
    """The record, or None if missing or unreadable as a record. Raises PermissionError for unsafe files."""
    data = fsutil.read_private(path)
    return None if data is None else parse(data)


def write(path: str, rec: Record) -> None:
    fsutil.atomic_write(path, dump(rec))
