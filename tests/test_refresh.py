"""`mailtoken refresh` and the systemd timer that runs it (issue 7): renew what expires within the window, never
prompt, report each failing account and keep going, exit with the core issue's codes.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from mailtoken import errors, systemd
from tests.conftest import MAILTOKEN, Env, require
from tests.fakes.entra import FakeEntra

ROOT = Path(__file__).resolve().parent.parent


def test_refreshes_only_tokens_expiring_within_the_window(signed_in: Env, fake: FakeEntra) -> None:
    before = signed_in.run("token", "work").stdout
    quiet = signed_in.run("refresh")
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "", "")
    assert fake.counts["refresh_token"] == 0, "a token with an hour left is outside the default 30 min window"

    renewed = signed_in.run("refresh", "work", "--min-validity", "2h")
    assert (renewed.returncode, renewed.stdout, renewed.stderr) == (0, "", "")
    assert fake.counts["refresh_token"] == 1
    after = signed_in.run("token", "work")
    assert after.stdout != before and fake.is_valid_access_token(after.stdout.strip())
    assert fake.counts["refresh_token"] == 1, "the token refresh wrote must be served from the record"


def test_stale_record_is_refreshed_with_the_default_window(signed_in: Env, fake: FakeEntra) -> None:
    signed_in.age_record()
    result = signed_in.run("-v", "refresh", "--all")
    assert result.returncode == 0, result.stderr
    assert "work: refreshed; valid until" in result.stderr
    assert fake.counts["refresh_token"] == 1


def test_all_reports_each_failing_account_and_refreshes_the_rest(signed_in: Env, fake: FakeEntra) -> None:
    signed_in.add_account("home", authority=fake.authority(), email="bob@contoso.com")
    fake.auto_approve = "bob@contoso.com"
    assert signed_in.run("login", "home").returncode == 0
    fake.revoke("bob@contoso.com")
    before = fake.counts["refresh_token"]
    result = signed_in.run("refresh", "--all", "--min-validity", "2h")
    assert result.returncode == errors.EX_NOPERM
    assert result.stdout == ""
    assert result.stderr.startswith("mailtoken: home: sign-in required") and result.stderr.count("\n") == 1
    assert fake.counts["refresh_token"] == before + 2, "work is refreshed although home failed"


def test_all_skips_accounts_never_signed_in_with_a_note(signed_in: Env, fake: FakeEntra) -> None:
    """Issue 12: a new account nobody signed in yet must not fail the timer (exit 77) until then."""
    signed_in.add_account("home", authority=fake.authority(), email="bob@contoso.com")
    result = signed_in.run("refresh", "--all", "--min-validity", "2h")
    assert result.returncode == 0, result.stderr
    assert result.stderr == "mailtoken: home: never signed in, skipped (run 'mailtoken login home')\n"
    assert fake.counts["refresh_token"] == 1, "work is still refreshed"
    named = signed_in.run("refresh", "home")
    assert named.returncode == errors.EX_NOPERM, "an account named on the command line is not skipped"
    assert named.stderr == "mailtoken: home: not signed in: run 'mailtoken login home'\n"


def test_temporary_failure_exits_75_and_the_cached_token_still_serves(signed_in: Env, fake: FakeEntra) -> None:
    token = signed_in.run("token", "work").stdout
    fake.inject("status", status=503)
    result = signed_in.run("refresh", "work", "--min-validity", "2h")
    assert result.returncode == errors.EX_TEMPFAIL, result.stderr
    assert result.stderr.startswith("mailtoken: work: temporary failure")
    assert signed_in.run("token", "work").stdout == token


def test_refresh_and_parallel_token_calls_make_one_grant(signed_in: Env, fake: FakeEntra) -> None:
    signed_in.age_record()
    procs = [signed_in.popen("refresh", "work")] + [signed_in.popen("token", "work") for _ in range(4)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0] * 5, outs
    assert len({out for out, _ in outs[1:]}) == 1
    assert fake.counts["refresh_token"] == 1


@pytest.mark.parametrize(
    ("args", "code", "text"),
    [
        (["refresh", "work", "--all"], errors.EX_USAGE, "not both"),
        (["refresh", "--min-validity", "soon"], errors.EX_USAGE, "not a duration"),
        (["refresh", "nosuch"], errors.EX_CONFIG, "no account 'nosuch'"),
    ],
)
def test_usage_and_config_errors(env: Env, args: list[str], code: int, text: str) -> None:
    env.add_account(authority="https://login.example.test/organizations")
    result = env.run(*args)
    assert result.returncode == code
    assert text in result.stderr and result.stdout == ""


@pytest.mark.parametrize(
    "codes, expected",
    [
        ({errors.EX_TEMPFAIL, errors.EX_NOPERM, errors.EX_OK}, errors.EX_NOPERM),
        ({errors.EX_TEMPFAIL, errors.EX_OK}, errors.EX_TEMPFAIL),
        ({errors.EX_OK}, errors.EX_OK),
        (set(), errors.EX_OK),
        ({errors.EX_NOPERM, errors.EX_CONFIG}, errors.EX_CONFIG),
        ({errors.EX_NOPERM, errors.EX_UNAVAILABLE}, errors.EX_UNAVAILABLE),
        ({errors.EX_SOFTWARE, errors.EX_CONFIG, errors.EX_TEMPFAIL}, errors.EX_SOFTWARE),
        ({errors.EX_USAGE, errors.EX_TEMPFAIL}, errors.EX_TEMPFAIL),
    ],
)
def test_exit_code_is_the_most_severe_failure(codes: set[int], expected: int) -> None:
    """One ranking for `refresh` (accounts) and `test` (servers): what needs a human outranks what the next
    run fixes by itself (errors.SEVERITY)."""
    assert errors.most_severe(codes) == expected


# --- the systemd user timer --------------------------------------------------------------------------------


def test_contrib_units_are_what_the_install_command_writes() -> None:
    rendered = systemd.render(systemd.CONTRIB_EXEC)
    for name, text in rendered.items():
        assert (ROOT / "contrib" / "systemd" / name).read_text() == text, f"contrib/systemd/{name} drifted"


def test_systemd_install_writes_valid_units_and_enables_the_timer(env: Env) -> None:
    log = env.fake_systemctl()
    env.vars["MAILTOKEN_CONFIG"] = str(env.root / "my config%.toml")
    result = env.run("systemd", "install")
    assert result.returncode == 0, result.stderr
    units = env.home / ".config" / "systemd" / "user"
    service = (units / systemd.SERVICE_NAME).read_text()
    assert f"ExecStart={MAILTOKEN} refresh --all\n" in service
    assert f'Environment="MAILTOKEN_CONFIG={env.root}/my config%%.toml"\n' in service
    assert (units / systemd.TIMER_NAME).read_text() == systemd.TIMER
    assert log.read_text().splitlines() == ["--user daemon-reload", "--user enable --now mailtoken-refresh.timer"]
    require("systemd-analyze")
    check = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *(str(units / n) for n in systemd.render("x"))],
        capture_output=True,
        text=True,
    )
    assert (check.returncode, check.stdout + check.stderr) == (0, "")

    removed = env.run("systemd", "uninstall")
    assert removed.returncode == 0, removed.stderr
    assert not list(units.iterdir())
    assert log.read_text().splitlines()[2:] == ["--user disable --now mailtoken-refresh.timer", "--user daemon-reload"]


def test_systemd_install_without_a_user_manager_says_what_to_run(env: Env) -> None:
    env.fake_systemctl(exit_code=1)
    result = env.run("systemd", "install")
    assert result.returncode == errors.EX_UNAVAILABLE
    assert "Failed to connect to bus" in result.stderr and "systemctl --user" in result.stderr
    assert "secret store" not in result.stderr and "keyring" not in result.stderr, "69 here is systemd's, said so"
    assert "systemctl --user enable --now mailtoken-refresh.timer" in result.stderr
    assert (env.home / ".config" / "systemd" / "user" / systemd.SERVICE_NAME).exists()
    only_files = env.run("systemd", "install", "--no-enable")
    assert only_files.returncode == 0 and "next: systemctl --user daemon-reload" in only_files.stderr
