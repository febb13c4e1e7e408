"""Issue 12, "First sign-in": the messages a new user meets say the right thing, and name the right command."""

from __future__ import annotations

import re

import pytest

from tests.conftest import EMAIL, Env
from tests.fakes.entra import FakeEntra

VERBS = ["token", "xoauth2", "oauthbearer", "login", "refresh", "systemd", "logout", "add", "status", "config", "test"]


def _one_line(result) -> str:  # noqa: ANN001
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("mailtoken: "), result.stderr
    assert result.stdout == ""
    return lines[0]


def test_a_mistyped_account_gets_did_you_mean_not_advice_to_add_it(env: Env) -> None:
    env.add_account(authority="https://127.0.0.1:9/organizations")
    line = _one_line(env.run("token", "wrok"))
    assert "did you mean 'work'?" in line and "mailtoken add" not in line, line
    line = _one_line(env.run("token", "zzz"))
    assert "add it with 'mailtoken add zzz'" in line, line


def test_an_account_table_outside_accounts_is_shown_its_right_form(env: Env) -> None:
    env.write_config(f'[work]\nemail = "{EMAIL}"\nclient_id = "11111111-2222-3333-4444-555555555555"\n')
    result = env.run("token", "work")
    assert result.returncode == 78
    assert "an account's table is [accounts.work], not [work]" in _one_line(result)


@pytest.mark.parametrize(
    ("argv", "meant"),
    [(["tokn", "work"], "token"), (["systemd", "instal"], "install"), (["add", "x", "--store", "fil"], "file")],
)
def test_a_mistyped_choice_gets_did_you_mean(env: Env, argv: list[str], meant: str) -> None:
    result = env.run(*argv)
    assert result.returncode == 64
    assert f"did you mean '{meant}'?" in _one_line(result)


def test_an_extra_argument_points_to_the_verbs_own_help(env: Env) -> None:
    result = env.run("token", "work", "extra")
    assert result.returncode == 64
    line = _one_line(result)
    assert "unrecognized arguments: extra" in line and "(see 'mailtoken token --help')" in line, line


@pytest.mark.parametrize("verb", VERBS)
def test_every_positional_argument_has_help(env: Env, verb: str) -> None:
    out = env.run(verb, "--help", env={"COLUMNS": "200"})
    assert out.returncode == 0, out.stderr
    section = out.stdout.split("positional arguments:\n", 1)[1].split("\n\n", 1)[0]
    entries = [line for line in section.splitlines() if re.match(r"  \S", line)]
    assert entries
    for entry in entries:
        assert re.match(r"  \S+ {2,}\S", entry), f"mailtoken {verb}: no help for {entry.strip()!r}"


def test_sign_in_advice_names_the_account(env: Env, fake: FakeEntra) -> None:
    env.add_account(authority=fake.authority())
    result = env.run("login", "work", "--timeout", "3", timeout=30)
    assert result.returncode == 77
    assert "run 'mailtoken login work' again" in result.stderr.splitlines()[-1], result.stderr


def test_the_file_store_names_the_accounts_own_file(signed_in: Env, fake: FakeEntra) -> None:
    grant = signed_in.state_dir / "grants" / "work.json"
    fake.auto_approve = EMAIL
    login = signed_in.run("login", "work")
    status = signed_in.run("status")
    logout = signed_in.run("logout", "work")
    for result in (login, status, logout):
        assert result.returncode == 0, result.stderr
        assert "<account>" not in result.stdout + result.stderr
    assert f"grant kept in file {grant} (mode 0600)" in login.stderr
    assert f"file {grant} (mode 0600)" in status.stdout
    assert f"grant in file {grant} (mode 0600)" in logout.stderr


@pytest.mark.parametrize("how", ["wait", "no-wait"])
def test_the_device_code_page_has_a_line_of_its_own(env: Env, fake: FakeEntra, how: str) -> None:
    """At 80 columns a URL inside a sentence wraps mid-word; alone on its line it is one double-click."""
    env.add_account(authority=fake.authority())
    fake.auto_approve = EMAIL
    result = env.run("login", "work", *(["--no-wait"] if how == "no-wait" else []), timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    urls = [line for line in lines if line.startswith("https://")]
    assert len(urls) == 1 and re.fullmatch(r"https://\S+", urls[0]), result.stderr
    before = lines[lines.index(urls[0]) - 1]
    after = lines[lines.index(urls[0]) + 1]
    assert before.endswith("open this page in a browser on any device:"), before
    assert re.match(r"mailtoken: work: and enter the code \S+", after), after
