"""Issue 5, promise 1: concurrency. Many processes on one expired token make exactly one refresh grant.

mbsync, msmtp, cron and systemd timers call `mailtoken` at the same moment. Against a fake identity platform
with strict refresh-token rotation (a second use of a refresh token is refused), 50 processes at once on an
expired token must cause exactly one refresh grant and all print the same valid token, five rounds in a row
(a lost rotated refresh token would fail the next round). Locks are per account: two accounts refresh at the
same time, which a barrier at the fake proves (each refresh is held until the other account's has arrived).
"""

from __future__ import annotations

import base64
import re
import subprocess
import threading
import time
from typing import Any

import pytest

from tests.conftest import EMAIL, Env
from tests.fakes.entra import FakeEntra

STORM = 50
ROUNDS = 5
BOB = "bob@contoso.com"
# A generous bound for one process on a loaded 2-core machine; the storm itself takes a few seconds.
TIMEOUT = "120"

# Figures for the closing note, printed at the end of the module (pytest -s shows them; -q keeps them quiet).
FIGURES: dict[str, Any] = {}


def sign_in(env: Env, fake: FakeEntra, account: str, email: str) -> None:
    fake.add_user(email)
    env.add_account(account, authority=fake.authority(), email=email)
    fake.auto_approve = email
    try:
        result = env.run("login", account)
    finally:
        fake.auto_approve = None
    assert result.returncode == 0, result.stderr


def storm(env: Env, commands: list[tuple[str, ...]]) -> list[tuple[tuple[str, ...], int, str, str]]:
    """Start every command at once; return (command, exit code, stdout, stderr) for each."""
    procs = [(cmd, env.popen(*cmd)) for cmd in commands]
    results = []
    for cmd, proc in procs:
        try:
            out, err = proc.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            err += "\n(test: killed after 240 s)"
        results.append((cmd, proc.returncode, out, err))
    return results


def token_in(cmd: tuple[str, ...], out: str) -> str:
    """The access token inside a command's output (token, xoauth2 or oauthbearer)."""
    line = out.strip()
    if cmd[0] == "token":
        return line
    text = base64.b64decode(line).decode()
    match = re.search(r"auth=Bearer ([^\x01]+)\x01", text)
    assert match, f"{cmd[0]} printed no bearer token"
    return match.group(1)


def grants_by_email(fake: FakeEntra, emails: list[str]) -> dict[str, int]:
    """Refresh grants at the fake per user (msal sends X-AnchorMailbox: Oid:<oid>@<tid> with each)."""
    oids = {fake.user(e)["oid"]: e for e in emails}
    counts = dict.fromkeys(emails, 0)
    for entry in fake.requests:
        if entry["form"].get("grant_type") == "refresh_token":
            anchor = entry["headers"].get("x-anchormailbox", "")
            oid = anchor.removeprefix("Oid:").split("@")[0]
            counts[oids.get(oid, "?")] = counts.get(oids.get(oid, "?"), 0) + 1
    return counts


def check_storm(fake: FakeEntra, results: list[tuple[tuple[str, ...], int, str, str]]) -> dict[str, set[str]]:
    """Every process printed a valid token and nothing on stderr; returns the tokens seen per account."""
    seen: dict[str, set[str]] = {}
    for cmd, code, out, err in results:
        assert code == 0 and err == "", f"{' '.join(cmd)} exited {code}: {err.strip()}"
        assert out.endswith("\n") and out.count("\n") == 1, f"{' '.join(cmd)} printed {out.count(chr(10))} lines"
        token = token_in(cmd, out)
        assert fake.is_valid_access_token(token), f"{' '.join(cmd)} printed a token the fake did not issue"
        seen.setdefault(cmd[1], set()).add(token)
    return seen


def test_storm_of_50_token_calls_makes_one_grant_five_rounds_in_a_row(signed_in: Env, fake: FakeEntra) -> None:
    assert fake.strict_rotation
    previous: set[str] = set()
    grants = []
    for round_ in range(ROUNDS):
        signed_in.age_record(expires_in=-10)
        fake.reset_counts()
        results = storm(signed_in, [("token", "work", "--timeout", TIMEOUT)] * STORM)
        seen = check_storm(fake, results)
        grants.append(fake.counts["refresh_token"])
        assert fake.counts["refresh_token"] == 1, f"round {round_ + 1}: {fake.counts['refresh_token']} refresh grants"
        assert fake.counts["token_errors"] == 0
        assert len(seen["work"]) == 1, f"round {round_ + 1}: {len(seen['work'])} different tokens"
        assert not seen["work"] & previous, "a round served the previous round's (expired) token"
        previous = seen["work"]
    FIGURES["storm token grants per round"] = grants


class OverlapBarrier:
    """Wraps the fake's refresh grant: each waits (up to `timeout`) until `parties` refreshes are in flight."""

    def __init__(self, fake: FakeEntra, parties: int, timeout: float = 45) -> None:
        self.barrier = threading.Barrier(parties, timeout=timeout)
        self.broken = 0
        self.fake = fake
        self.original = fake._grant_refresh

    def __enter__(self) -> OverlapBarrier:
        def held(req: Any, client_id: str) -> Any:
            try:
                self.barrier.wait()
            except threading.BrokenBarrierError:
                self.broken += 1
            return self.original(req, client_id)

        self.fake._grant_refresh = held  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        self.fake._grant_refresh = self.original  # type: ignore[method-assign]


def mixed_commands(accounts: list[str]) -> list[tuple[str, ...]]:
    kinds = [
        ("token",),
        ("xoauth2",),
        ("oauthbearer", "--host", "outlook.office365.com", "--port", "993"),
        ("xoauth2", "--user", "shared@contoso.com"),
        ("oauthbearer",),
    ]
    commands = []
    for i in range(STORM):
        kind = kinds[i % len(kinds)]
        commands.append((kind[0], accounts[i % len(accounts)], *kind[1:], "--timeout", TIMEOUT))
    return commands


def test_mixed_commands_on_two_accounts_refresh_once_each_and_in_parallel(signed_in: Env, fake: FakeEntra) -> None:
    sign_in(signed_in, fake, "home", BOB)
    previous: dict[str, set[str]] = {"work": set(), "home": set()}
    grants = []
    for round_ in range(2):
        signed_in.age_record("work", expires_in=-10)
        signed_in.age_record("home", expires_in=-10)
        fake.reset_counts()
        with OverlapBarrier(fake, parties=2) as overlap:
            results = storm(signed_in, mixed_commands(["work", "home"]))
        seen = check_storm(fake, results)
        per_user = grants_by_email(fake, [EMAIL, BOB])
        grants.append(per_user)
        assert per_user == {EMAIL: 1, BOB: 1}, f"round {round_ + 1}: refresh grants per user {per_user}"
        assert overlap.broken == 0, (
            "one account's refresh never overlapped the other's: the accounts' locks serialize each other"
        )
        for account in ("work", "home"):
            assert len(seen[account]) == 1, f"{account}: {len(seen[account])} different tokens in one storm"
            assert not seen[account] & previous[account]
        assert seen["work"] != seen["home"]
        previous = seen
        # Each account's SASL strings carry its own user (or the --user given).
        for cmd, _code, out, _err in results:
            if cmd[0] == "xoauth2" and "--user" not in cmd:
                want = EMAIL if cmd[1] == "work" else BOB
                assert base64.b64decode(out.strip()).decode().startswith(f"user={want}\x01")
    FIGURES["mixed storm grants per round (per user)"] = grants


def test_a_lock_held_by_one_account_does_not_block_another(signed_in: Env, fake: FakeEntra) -> None:
    """While 'work' is stuck refreshing (its answer hangs), 'home' refreshes normally."""
    sign_in(signed_in, fake, "home", BOB)
    signed_in.age_record("work", expires_in=-10)
    signed_in.age_record("home", expires_in=-10)
    release = threading.Event()
    original = fake._grant_refresh

    def stuck_for_alice(req: Any, client_id: str) -> Any:
        anchor = req.headers.get("x-anchormailbox", "")
        if fake.user(EMAIL)["oid"] in anchor:
            release.wait(60)
        return original(req, client_id)

    fake._grant_refresh = stuck_for_alice  # type: ignore[method-assign]
    try:
        stuck = signed_in.popen("token", "work", "--timeout", TIMEOUT)
        deadline = time.monotonic() + 60
        while fake.counts["refresh_token"] < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert fake.counts["refresh_token"] >= 1, "the first refresh never reached the fake"
        other = signed_in.run("token", "home", "--timeout", "60")
        assert other.returncode == 0, other.stderr
        assert stuck.poll() is None, "work's refresh should still be waiting for its answer"
        release.set()
        out, err = stuck.communicate(timeout=120)
        assert stuck.returncode == 0, err
    finally:
        release.set()
        fake._grant_refresh = original  # type: ignore[method-assign]


@pytest.fixture(scope="module", autouse=True)
def _print_figures() -> Any:
    yield
    if FIGURES:
        print("\nconcurrency figures:", FIGURES)
