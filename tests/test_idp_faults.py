"""Issue 5, promises 3 and 4: identity-platform faults, and the rule for transient versus fatal.

Every fault gives the exit code and the one stderr line the CLI promises, in bounded time, with nothing on
stdout; an outage serves a cached token that still has time to live; afterwards the next call recovers without
a new sign-in wherever the grant is still good. Transient faults (network, TLS, timeouts, 5xx, 429, garbage)
never touch the grant; only an authoritative `invalid_grant` marks it, so that later callers exit 77 without
asking again (tokens.py documents the rule, docs/reliability.md too).
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import EMAIL, Env
from tests.fakes.entra import FakeEntra

FAULTS_TRIED: list[str] = []


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Env, FakeEntra]]:
    """One signed-in account for the faults that leave the grant good (signing in for each would be slow)."""
    root = tmp_path_factory.mktemp("faults")
    env = Env(root)
    with FakeEntra(root / "fake") as fake:
        fake.add_user(EMAIL)
        env.vars["REQUESTS_CA_BUNDLE"] = fake.ca_pem
        env.add_account(authority=fake.authority())
        fake.auto_approve = EMAIL
        result = env.run("login", "work")
        fake.auto_approve = None
        assert result.returncode == 0, result.stderr
        yield env, fake
    print(f"\nidentity-platform faults tried ({len(FAULTS_TRIED)}): {', '.join(FAULTS_TRIED)}")


@pytest.fixture(autouse=True)
def _no_fault_left_queued(request: pytest.FixtureRequest) -> Iterator[None]:
    """A failed test must not leave a queued fault to the next one that shares the module's account."""
    yield
    if "world" in request.fixturenames:
        _env, fake = request.getfixturevalue("world")
        with fake._lock:
            fake._faults.clear()


def grant(env: Env, account: str = "work") -> bytes:
    return (env.state_dir / "grants" / f"{account}.json").read_bytes()


def rejected_mark(env: Env, account: str = "work") -> Path:
    return env.state_dir / "accounts" / f"{account}.rejected"


def run(env: Env, *args: str, timeout: float = 60) -> tuple[Any, float]:
    started = time.monotonic()
    result = env.run(*args, timeout=timeout)
    return result, time.monotonic() - started


def assert_failed(result: Any, code: int, *needles: str, account: str = "work") -> str:
    """Exit `code`, nothing on stdout, one stderr line `mailtoken: ACCOUNT: ...` holding each needle."""
    assert result.returncode == code, f"expected {code}, got {result.returncode}: {result.stderr}"
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, f"expected one stderr line, got {lines}"
    line = lines[0]
    assert line.startswith(f"mailtoken: {account}: "), line
    for needle in needles:
        assert needle in line, f"{needle!r} not in {line!r}"
    return line


def assert_token(result: Any, fake: FakeEntra) -> str:
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    token = result.stdout.strip()
    assert fake.is_valid_access_token(token)
    return token


def recovers(env: Env, fake: FakeEntra) -> None:
    """The next call refreshes with the same grant: no new sign-in."""
    env.age_record(expires_in=-5)
    before = fake.counts["refresh_token"]
    result = env.run("token", "work", "--timeout", "30")
    assert_token(result, fake)
    assert fake.counts["refresh_token"] == before + 1
    assert not rejected_mark(env).exists()


# --- transient faults at the token endpoint ---------------------------------------------------------------

TRANSIENT = [
    pytest.param("status", {"status": 500}, "answered HTTP 500", id="http-500"),
    pytest.param("status", {"status": 502}, "answered HTTP 502", id="http-502"),
    pytest.param("status", {"status": 503}, "answered HTTP 503", id="http-503"),
    pytest.param(
        "status",
        {"status": 503, "body": "<html>maintenance</html>", "content_type": "text/html"},
        "answered HTTP 503",
        id="http-503-html",
    ),
    pytest.param("nonjson", {}, "not valid JSON", id="non-json-200"),
    pytest.param("truncated", {"process": False}, "answer was cut off", id="truncated"),
    pytest.param("truncated", {"process": False, "honest_length": True}, "not valid JSON", id="truncated-json"),
    pytest.param("close", {}, "closed the connection without answering", id="connection-dropped"),
    pytest.param(
        "aadsts",
        {"error": "temporarily_unavailable", "code": 90033, "status": 400},
        "temporary failure at the identity platform",
        id="temporarily_unavailable",
    ),
    pytest.param(
        "aadsts", {"error": "mystery_error", "code": 4242, "status": 400}, "mystery_error", id="unknown-error"
    ),
]


@pytest.mark.parametrize(("kind", "kw", "needle"), TRANSIENT)
def test_transient_fault_exits_75_and_keeps_the_grant(
    world: tuple[Env, FakeEntra], kind: str, kw: dict[str, Any], needle: str, request: pytest.FixtureRequest
) -> None:
    env, fake = world
    FAULTS_TRIED.append(request.node.callspec.id)
    env.age_record(expires_in=-5)
    before = grant(env)
    fake.inject(kind, **kw)
    result, took = run(env, "token", "work", "--timeout", "20")
    assert_failed(result, 75, needle, "try again")
    assert took < 20 + 15
    # Promise 4: a transient fault never deletes, changes or marks the grant.
    assert grant(env) == before
    assert not rejected_mark(env).exists()
    recovers(env, fake)


@pytest.mark.parametrize("status", [500, 503])
def test_outage_serves_the_cached_token_while_it_is_valid(world: tuple[Env, FakeEntra], status: int) -> None:
    env, fake = world
    FAULTS_TRIED.append(f"status{status}+cached")
    cached = assert_token(env.run("token", "work"), fake)
    env.age_record(expires_in=600)  # due for refresh, still ten minutes to live
    for command in (("token", "work"), ("-v", "token", "work")):
        fake.inject("status", status=status)
        result = env.run(*command)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == cached
        if "-v" not in command:
            assert result.stderr == ""
        else:
            assert f"answered HTTP {status}" in result.stderr and "serving the cached token" in result.stderr
    recovers(env, fake)


def test_hang_gives_up_at_the_deadline(world: tuple[Env, FakeEntra]) -> None:
    env, fake = world
    FAULTS_TRIED.append("hang")
    env.age_record(expires_in=-5)
    before = grant(env)
    fake.inject("hang", seconds=60, then="close")
    result, took = run(env, "token", "work", "--timeout", "3")
    assert_failed(result, 75, "gave up after 3 s", "try again later")
    assert took < 3 + 10, f"--timeout 3 took {took:.1f} s"
    assert grant(env) == before and not rejected_mark(env).exists()
    recovers(env, fake)


def test_hang_with_a_valid_cached_token_serves_it(world: tuple[Env, FakeEntra]) -> None:
    env, fake = world
    FAULTS_TRIED.append("hang+cached")
    cached = assert_token(env.run("token", "work"), fake)
    env.age_record(expires_in=600)
    fake.inject("hang", seconds=60, then="close")
    result, took = run(env, "token", "work", "--timeout", "3")
    assert result.returncode == 0 and result.stdout.strip() == cached and result.stderr == ""
    assert took < 3 + 10
    recovers(env, fake)


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_is_honoured_by_later_callers(world: tuple[Env, FakeEntra], status: int) -> None:
    env, fake = world
    FAULTS_TRIED.append(f"status{status}+Retry-After")
    cached = assert_token(env.run("token", "work"), fake)
    env.age_record(expires_in=-5)
    fake.inject("status", status=status, retry_after=120)
    first = env.run("token", "work")
    assert_failed(first, 75, "try again in 120 s")
    asked = fake.counts["refresh_token"]
    # Later callers do not ask again before the time is up...
    again = env.run("token", "work")
    assert_failed(again, 75, "asked to wait", "try again after")
    assert fake.counts["refresh_token"] == asked
    # ...and serve a cached token that is still valid instead of failing.
    rec = env.record_dir / "work.token"
    rec.write_text(re.sub(r"^token .*$", f"token {cached}", rec.read_text(), flags=re.M))
    env.age_record(expires_in=600)
    served = env.run("token", "work")
    assert served.returncode == 0 and served.stdout.strip() == cached
    assert fake.counts["refresh_token"] == asked
    # Once the time has passed (moved into the past here), the next call refreshes.
    wait = env.record_dir / "work.wait"
    wait.write_text(json.dumps({"until": int(time.time()) - 1}))
    recovers(env, fake)


def test_a_rotated_answer_that_is_lost_costs_a_sign_in_only_with_strict_rotation(
    world: tuple[Env, FakeEntra],
) -> None:
    """The one transient fault a client cannot recover from: the provider rotated, the answer never came."""
    env, fake = world
    FAULTS_TRIED.append("truncated-after-rotation")
    env.age_record(expires_in=-5)
    fake.inject("truncated", process=True)
    assert_failed(env.run("token", "work"), 75, "answer was cut off")
    assert not rejected_mark(env).exists(), "a cut-off answer is not a verdict on the grant"
    fake.strict_rotation = False  # Entra keeps the old refresh token usable: nothing is lost there
    try:
        recovers(env, fake)
    finally:
        fake.strict_rotation = True


# --- transport faults: refused, DNS, TLS --------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def other_authority(world: tuple[Env, FakeEntra]) -> Iterator[Any]:
    """Point the account at another authority for one call, then back (the grant stays the same)."""
    env, fake = world
    original = env.config_path.read_text()

    def point(authority: str) -> None:
        env.config_path.write_text(original.replace(fake.authority(), authority))

    yield point
    env.config_path.write_text(original)
    recovers(env, fake)


def test_connection_refused(world: tuple[Env, FakeEntra], other_authority: Any) -> None:
    env, _fake = world
    FAULTS_TRIED.append("connection-refused")
    port = _closed_port()
    other_authority(f"https://127.0.0.1:{port}/organizations")
    before = grant(env)
    result, took = run(env, "token", "work", "--timeout", "20")
    assert_failed(result, 75, f"127.0.0.1:{port} refused the connection", "try again later")
    assert took < 35
    assert grant(env) == before


def test_dns_failure(world: tuple[Env, FakeEntra], other_authority: Any) -> None:
    env, _fake = world
    FAULTS_TRIED.append("dns-failure")
    other_authority("https://login.mailtoken-test.invalid/organizations")
    before = grant(env)
    result, took = run(env, "token", "work", "--timeout", "10")
    line = assert_failed(result, 75, "try again later")
    # A resolver that answers says so at once; one that does not answer runs into the deadline.
    assert "cannot resolve login.mailtoken-test.invalid" in line or "gave up after 10 s" in line, line
    assert took < 25
    assert grant(env) == before


def test_tls_failure(world: tuple[Env, FakeEntra], other_authority: Any, tmp_path: Path) -> None:
    env, _fake = world
    FAULTS_TRIED.append("tls-untrusted-certificate")
    with FakeEntra(tmp_path / "impostor") as impostor:  # its CA is not the one REQUESTS_CA_BUNDLE trusts
        other_authority(impostor.authority())
        before = grant(env)
        result, _took = run(env, "token", "work", "--timeout", "20")
        host = impostor.base_url.removeprefix("https://")
        assert_failed(result, 75, f"TLS with {host} failed", "REQUESTS_CA_BUNDLE")
        assert impostor.counts["refresh_token"] == 0
        assert grant(env) == before


# --- sign-in required: the authoritative answers ------------------------------------------------------------

CONDITIONAL = [
    pytest.param(
        {"error": "interaction_required", "code": 50076},
        "multi-factor authentication is required",
        id="interaction_required-50076",
    ),
    pytest.param(
        {"error": "invalid_grant", "code": 50076, "suberror": "basic_action"},
        "multi-factor authentication is required",
        id="invalid_grant-50076",
    ),
    pytest.param(
        {"error": "invalid_grant", "code": 53003},
        "blocked by a Conditional Access policy",
        id="conditional-access-53003",
    ),
    pytest.param({"error": "interaction_required", "code": 53003}, "--browser", id="interaction_required-53003"),
    pytest.param({"error": "invalid_grant", "code": 65001}, "consent", id="consent-65001"),
]


@pytest.mark.parametrize(("kw", "advice"), CONDITIONAL)
def test_conditions_exit_77_with_advice_but_do_not_mark_the_grant(
    world: tuple[Env, FakeEntra], kw: dict[str, Any], advice: str
) -> None:
    env, fake = world
    FAULTS_TRIED.append(f"{kw['error']}-{kw['code']}")
    env.age_record(expires_in=-5)
    before = grant(env)
    fake.inject("aadsts", **kw)
    result, took = run(env, "token", "work")
    assert_failed(result, 77, "sign-in required", f"AADSTS{kw['code']}", advice, "mailtoken login work")
    assert took < 60
    assert grant(env) == before and not rejected_mark(env).exists()
    # The condition may clear (a compliant network, an admin's consent): the next call asks again, and here
    # the grant is still good, so it works without a new sign-in.
    recovers(env, fake)


@pytest.mark.parametrize(
    ("how", "needle"),
    [
        pytest.param("revoke", "AADSTS50173", id="revoked-50173"),
        pytest.param({"error": "invalid_grant", "code": 70008}, "AADSTS70008", id="expired-70008"),
        pytest.param({"error": "invalid_grant", "code": 700082}, "AADSTS700082", id="expired-unused-700082"),
        pytest.param(
            {"error": "invalid_grant", "code": 70000, "suberror": "bad_token"}, "AADSTS70000", id="invalid-70000"
        ),
    ],
)
def test_invalid_grant_exits_77_marks_the_grant_and_login_clears_it(
    signed_in: Env, fake: FakeEntra, how: Any, needle: str
) -> None:
    env = signed_in
    FAULTS_TRIED.append(f"invalid_grant-{needle}")
    env.age_record(expires_in=-5)
    before = grant(env)
    if how == "revoke":
        fake.revoke(EMAIL)
    else:
        fake.inject("aadsts", **how)
    first = env.run("token", "work")
    line = assert_failed(first, 77, "sign-in required", needle, "run 'mailtoken login work'")
    # The grant is kept (never deleted), and marked: the next callers exit 77 at once, same line, no request.
    assert grant(env) == before
    assert rejected_mark(env).exists() and rejected_mark(env).stat().st_mode & 0o777 == 0o600
    asked = fake.counts["refresh_token"]
    for command in ("token", "xoauth2", "oauthbearer"):
        again = env.run(command, "work")
        assert assert_failed(again, 77) == line
    assert fake.counts["refresh_token"] == asked
    # A new sign-in stores a new grant, whose fingerprint differs: the mark no longer applies.
    fake.auto_approve = EMAIL
    assert env.run("login", "work").returncode == 0
    fake.auto_approve = None
    env.age_record(expires_in=-5)
    assert_token(env.run("token", "work"), fake)
    assert not rejected_mark(env).exists()


# --- device-code sign-in faults -----------------------------------------------------------------------------


def test_device_code_slow_down_is_obeyed(signed_in: Env, fake: FakeEntra) -> None:
    FAULTS_TRIED.append("device-slow_down")
    fake.device_interval = 1
    fake.auto_approve = EMAIL
    fake.inject("aadsts", error="slow_down", code=70016)
    started = time.monotonic()
    result = signed_in.run("login", "work", timeout=120)
    took = time.monotonic() - started
    fake.auto_approve = None
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    polls = [r for r in fake.requests if r["form"].get("grant_type", "").endswith("device_code")]
    assert len(polls) == 2
    # RFC 8628: after slow_down the interval grows by 5 s.
    assert polls[1]["time"] - polls[0]["time"] >= 5, "polled again before the slowed-down interval"
    assert took < 60


@pytest.mark.parametrize(
    ("kw", "needle"),
    [
        pytest.param(
            {"error": "expired_token", "code": 70019}, "the code expired before sign-in finished", id="expired_token"
        ),
        pytest.param({"error": "access_denied", "code": 65004}, "sign-in was declined", id="access_denied"),
        pytest.param(
            {"error": "authorization_declined", "code": 65004}, "sign-in was declined", id="authorization_declined"
        ),
    ],
)
def test_device_code_login_failures_keep_the_old_grant(
    signed_in: Env, fake: FakeEntra, kw: dict[str, Any], needle: str
) -> None:
    FAULTS_TRIED.append(f"device-{kw['error']}")
    before = grant(signed_in)
    fake.inject("aadsts", **kw)
    result = signed_in.run("login", "work", timeout=120)
    assert result.returncode == 77, result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    last = result.stderr.splitlines()[-1]
    assert last.startswith("mailtoken: work: ") and needle in last and "mailtoken login" in last, last
    # A failed sign-in leaves the previous grant alone: tokens keep coming without a new sign-in.
    assert grant(signed_in) == before
    signed_in.age_record(expires_in=-5)
    assert_token(signed_in.run("token", "work"), fake)
