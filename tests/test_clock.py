"""Issue 5, promise 8: the clock. A wall clock minutes ahead or behind never serves an expired token and does
not make every call refresh.

The record keeps each moment twice: on the wall clock, and on CLOCK_BOOTTIME, which counts suspend and which
no clock setting moves (record.py). A constant error in the wall clock changes nothing (`expires_in` is
relative); a wall clock that jumps after the record was written is caught by the boot clock.

In-process: Record.fresh/usable with explicit times. End to end: the installed command under libfaketime
(`faketime --exclude-monotonic`: only the wall clock is wrong, as after a suspend or with a broken NTP), with
records aged by editing them: moving all of a record's moments back by D seconds is what D seconds of real time
do, so no test sleeps.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from typing import Any

import pytest

from mailtoken.fast import record
from tests.conftest import EMAIL, MAILTOKEN, Env, require
from tests.fakes.entra import FakeEntra

LIFETIME = 3600
REFRESH_AFTER = LIFETIME - 300  # record.refresh_at: expires - min(300, lifetime / 2)


def make(obtained: float, boot_at: int | None, lifetime: int = LIFETIME) -> record.Record:
    refresh = record.refresh_at(obtained, lifetime)
    boot = None if boot_at is None else (boot_at, boot_at + (refresh - int(obtained)), boot_at + lifetime)
    return record.Record(int(obtained + lifetime), refresh, "stamp", EMAIL, "tok", boot)


@pytest.fixture
def boot_clock(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Set the boot clock by hand (in this process only)."""
    now = {"value": 10_000.0}
    monkeypatch.setattr(record, "boottime", lambda: now["value"])
    return now


@pytest.mark.parametrize("skew", [-3600, -600, -60, 0, 60, 600, 3600])
def test_a_constant_wall_clock_error_changes_nothing(boot_clock: Any, skew: int) -> None:
    real = 1_800_000_000
    rec = make(real + skew, boot_at=10_000)
    for elapsed in (0, 60, REFRESH_AFTER - 1, REFRESH_AFTER, LIFETIME - 31, LIFETIME - 30, LIFETIME, LIFETIME + 600):
        boot_clock["value"] = 10_000 + elapsed
        now = real + skew + elapsed
        assert rec.fresh(now, "stamp") == (elapsed < REFRESH_AFTER), elapsed
        assert rec.usable(now) == (elapsed < LIFETIME - 30), elapsed


@pytest.mark.parametrize("jump", [-86400, -3600, -600, -120, 120, 600, 3600])
def test_a_wall_clock_jump_after_writing_never_serves_an_expired_token(boot_clock: Any, jump: int) -> None:
    real = 1_800_000_000
    rec = make(real, boot_at=10_000)
    for elapsed in range(0, LIFETIME + 1200, 50):
        boot_clock["value"] = 10_000 + elapsed
        now = real + elapsed + jump
        if rec.fresh(now, "stamp"):
            # Fresh only while the real (boot-clock) age is below the refresh point.
            assert elapsed < REFRESH_AFTER, f"jump {jump}: fresh {elapsed} s after, past the refresh point"
        if rec.usable(now):
            assert elapsed < LIFETIME - 30, f"jump {jump}: usable {elapsed} s after, past expiry"
        if jump < 0 and elapsed < REFRESH_AFTER:
            assert rec.fresh(now, "stamp"), "a clock set back must not force a refresh"


def test_without_a_boot_clock_or_across_a_reboot_the_wall_clock_decides(boot_clock: Any) -> None:
    real = 1_800_000_000
    old = make(real, boot_at=None)
    assert old.fresh(real + 10, "stamp") and not old.fresh(real + REFRESH_AFTER, "stamp")
    rebooted = make(real, boot_at=50_000)
    boot_clock["value"] = 20  # less than when the record was written: another boot
    assert rebooted.fresh(real + 10, "stamp") and not rebooted.fresh(real + REFRESH_AFTER, "stamp")
    boot_clock["value"] = None
    assert rebooted.fresh(real + 10, "stamp")


def test_the_boot_line_round_trips_and_old_records_still_parse() -> None:
    rec = make(1_800_000_000, boot_at=1234)
    assert record.parse(record.dump(rec)) == rec
    plain = rec._replace(boot=None)
    assert b"boot" not in record.dump(plain)
    assert record.parse(record.dump(plain)) == plain
    # A record that cannot be read whole is not served (the next call rebuilds it).
    assert record.parse(record.dump(rec).replace(b"boot 1234 ", b"boot x ")) is None


# --- end to end, under libfaketime ----------------------------------------------------------------------------


def age(env: Env, seconds: int) -> None:
    """Move every moment of the record `seconds` into the past: what `seconds` of real time would do."""
    path = env.record_dir / "work.token"
    out = []
    for line in path.read_text().splitlines():
        key, _, value = line.partition(" ")
        if key in ("expires", "refresh"):
            line = f"{key} {int(value) - seconds}"
        elif key == "boot":
            line = "boot " + " ".join(str(int(v) - seconds) for v in value.split())
        out.append(line)
    path.write_text("\n".join(out) + "\n")


class Clock:
    """Runs the installed command with the wall clock off by `skew` seconds (monotonic clocks untouched)."""

    def __init__(self, env: Env, fake: FakeEntra) -> None:
        require("faketime")
        self.env, self.fake = env, fake
        self.faketime = shutil.which("faketime") or "faketime"

    def run(self, skew: int, *args: str) -> subprocess.CompletedProcess[str]:
        argv = (
            [MAILTOKEN, *args]
            if skew == 0
            else [self.faketime, "--exclude-monotonic", "-f", f"{skew:+d}", MAILTOKEN, *args]
        )
        return subprocess.run(
            argv, capture_output=True, text=True, timeout=120, env=self.env.vars, stdin=subprocess.DEVNULL
        )

    def token(self, skew: int) -> str:
        result = self.run(skew, "token", "work")
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""
        token = result.stdout.strip()
        assert self.fake.is_valid_access_token(token)
        return token

    def refreshes(self) -> int:
        return self.fake.counts["refresh_token"]


def test_libfaketime_moves_the_wall_clock_only(env: Env, fake: FakeEntra) -> None:
    clock = Clock(env, fake)
    code = "import time; print(int(time.time()), int(time.clock_gettime(time.CLOCK_BOOTTIME)))"
    real = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    faked = subprocess.run(
        [clock.faketime, "--exclude-monotonic", "-f", "-600", sys.executable, "-c", code],
        capture_output=True,
        text=True,
    )
    (rw, rb), (fw, fb) = ([int(x) for x in r.stdout.split()] for r in (real, faked))
    assert 590 <= rw - fw <= 610 and abs(rb - fb) <= 5, (real.stdout, faked.stdout)


@pytest.mark.parametrize("skew", [-600, 600])
def test_a_clock_minutes_off_refreshes_when_due_and_only_then(env: Env, fake: FakeEntra, skew: int) -> None:
    clock = Clock(env, fake)
    env.add_account(authority=fake.authority())
    fake.auto_approve = EMAIL
    login = clock.run(skew, "login", "work")
    fake.auto_approve = None
    assert login.returncode == 0, login.stderr
    fake.reset_counts()
    first = {clock.token(skew) for _ in range(3)}
    assert len(first) == 1 and clock.refreshes() == 0, "a fresh token must be served, not refreshed per call"
    age(env, REFRESH_AFTER - 60)
    assert clock.token(skew) in first and clock.refreshes() == 0
    age(env, 120)  # now past the refresh point
    second = clock.token(skew)
    assert second not in first and clock.refreshes() == 1
    assert {clock.token(skew) for _ in range(3)} == {second} and clock.refreshes() == 1
    age(env, LIFETIME + 60)  # expired
    third = clock.token(skew)
    assert third != second and clock.refreshes() == 2


def test_a_clock_set_back_after_writing_does_not_serve_an_expired_token(signed_in: Env, fake: FakeEntra) -> None:
    clock = Clock(signed_in, fake)
    start = clock.token(0)
    # Set back by ten minutes (a suspend, then a clock that lost time): still fresh, no refresh.
    assert clock.token(-600) == start and clock.refreshes() == 0
    # Real time passes beyond the refresh point (200 s to live), and beyond expiry: the wall clock, ten minutes
    # behind, still calls the token fresh; the boot clock does not, and the token is refreshed, once.
    age(signed_in, REFRESH_AFTER + 100)
    renewed = clock.token(-600)
    assert renewed != start and clock.refreshes() == 1
    assert clock.token(-600) == renewed and clock.refreshes() == 1
    age(signed_in, LIFETIME + 100)
    again = clock.token(-600)
    assert again != renewed and clock.refreshes() == 2


def test_a_clock_that_ran_ahead_and_is_corrected_does_not_serve_an_expired_token(
    signed_in: Env, fake: FakeEntra
) -> None:
    clock = Clock(signed_in, fake)
    start = clock.token(0)
    # Ahead by ten minutes: the refresh comes ten minutes early, once, and then the token is served.
    assert clock.token(600) == start and clock.refreshes() == 0
    age(signed_in, REFRESH_AFTER - 500)
    early = clock.token(600)
    assert early != start and clock.refreshes() == 1
    assert clock.token(600) == early and clock.refreshes() == 1
    # NTP puts the clock right (ten minutes back). The record was written by the fast clock, so the wall clock
    # alone would serve its token ten minutes past the refresh point; the boot clock refreshes it in time.
    age(signed_in, REFRESH_AFTER + 100)
    fixed = clock.token(0)
    assert fixed != early and clock.refreshes() == 2
    assert clock.token(0) == fixed and clock.refreshes() == 2


def test_the_record_carries_the_boot_clock(signed_in: Env) -> None:
    text = (signed_in.record_dir / "work.token").read_text()
    match = re.search(r"^boot (\d+) (\d+) (\d+)$", text, flags=re.M)
    assert match, text.replace(re.search(r"^token .*$", text, flags=re.M).group(0), "token ...")  # type: ignore[union-attr]
    obtained, refresh, expires = (int(g) for g in match.groups())
    assert obtained <= time.clock_gettime(time.CLOCK_BOOTTIME) < refresh < expires
    assert expires - obtained in (LIFETIME, LIFETIME + 1)
