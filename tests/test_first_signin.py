"""Issue 12, "First sign-in": the messages a new user meets say the right thing, and name the right command."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import time

import pytest

from tests.conftest import CLIENT_ID, EMAIL, MAILTOKEN, Env
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


def test_every_positional_argument_of_every_verb_has_help(env: Env) -> None:
    """Verbs are read from `mailtoken --help`, so a new verb is held to the rule as well."""
    top = env.run("--help", env={"COLUMNS": "200"}).stdout
    verbs = re.findall(r"^    (\w+) {2,}\S", top, flags=re.M)
    assert set(VERBS) <= set(verbs), verbs
    for verb in verbs:
        out = env.run(verb, "--help", env={"COLUMNS": "200"})
        assert out.returncode == 0, out.stderr
        section = out.stdout.split("positional arguments:\n", 1)[1].split("\n\n", 1)[0].splitlines()
        for i, line in enumerate(section):
            if not re.match(r"  \S", line):
                continue  # a continuation line of the help before it
            # Help on the same line, or (for a long name) on the next, further indented, line.
            helped = re.match(r"  \S+ {2,}\S", line) or (i + 1 < len(section) and section[i + 1].startswith("      "))
            assert helped, f"mailtoken {verb}: no help for {line.strip()!r}"


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


# --- `add` on a terminal: each answer checked as it is given --------------------------------------------------

PROMPTS = (
    "Email address: ",
    "Application (client) ID: ",
    "Tenant (common, organizations, consumers, a domain or GUID) [common]: ",
)


def _pty_add(env: Env, answers: list[str | None], *args: str) -> tuple[int, str]:
    """`mailtoken add work` on a pseudo-terminal; each answer is typed when a prompt shows (None: Ctrl-D)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [MAILTOKEN, *args, "add", "work"], stdin=slave, stdout=slave, stderr=slave, env=env.vars, close_fds=True
    )
    os.close(slave)
    seen = b""

    def read(until_prompt: bool) -> None:
        nonlocal seen
        end = time.monotonic() + 20
        while time.monotonic() < end:
            if until_prompt and seen.decode(errors="replace").endswith(PROMPTS):
                return
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: the child closed the terminal
                    return
                if not chunk:
                    return
                seen += chunk
            elif proc.poll() is not None and not until_prompt:
                return
        if until_prompt:
            raise AssertionError(f"no prompt: {seen.decode(errors='replace')!r}")

    try:
        for answer in answers:
            read(until_prompt=True)
            os.write(master, b"\x04" if answer is None else answer.encode() + b"\r")
        read(until_prompt=False)
        code = proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    return code, seen.decode(errors="replace").replace("\r\n", "\n")


def test_add_asks_again_until_each_answer_is_right(env: Env) -> None:
    answers = ["alice", EMAIL, "my-app", CLIENT_ID[:-1], CLIENT_ID, "organisations", "contoso", "organizations"]
    code, screen = _pty_add(env, answers)
    assert code == 0, screen
    assert "email: 'alice' is not an email address; try again (Ctrl-D stops)" in screen
    assert "client_id: 'my-app' is not an application (client) ID" in screen and "App registrations" in screen
    assert f"'{CLIENT_ID[:-1]}' is not an application (client) ID" in screen
    assert "'organisations' is not a tenant: did you mean 'organizations'?" in screen
    assert "'contoso' is not a tenant: give common, organizations, consumers, a domain" in screen
    assert screen.count(PROMPTS[0]) == 2 and screen.count(PROMPTS[1]) == 3 and screen.count(PROMPTS[2]) == 3
    text = env.config_path.read_text()
    assert f'client_id = "{CLIENT_ID}"' in text and 'tenant = "organizations"' in text and EMAIL in text


@pytest.mark.parametrize("verbose", [False, True])
def test_ctrl_d_stops_add_cleanly_with_nothing_written(env: Env, verbose: bool) -> None:
    code, screen = _pty_add(env, [EMAIL, None], *(["-v"] if verbose else []))
    assert code == 64, screen
    assert "mailtoken: work: stopped at the end of input (Ctrl-D): nothing was written" in screen
    assert "internal error" not in screen and "Traceback" not in screen and "EOFError" not in screen
    assert not env.config_path.exists()


@pytest.mark.parametrize(
    ("option", "value", "needle"),
    [
        ("--client-id", "my-app", "--client-id: 'my-app' is not an application (client) ID"),
        ("--client-id", CLIENT_ID[:-1], "is not an application (client) ID"),
        ("--tenant", "organisations", "--tenant: 'organisations' is not a tenant: did you mean 'organizations'?"),
        ("--tenant", "contoso", "--tenant: 'contoso' is not a tenant"),
        ("--email", "alice", "--email: 'alice' is not an email address"),
    ],
)
def test_add_refuses_an_option_that_cannot_be_right(env: Env, option: str, value: str, needle: str) -> None:
    given = {"--email": EMAIL, "--client-id": CLIENT_ID, "--tenant": "organizations", option: value}
    result = env.run("add", "work", *[x for pair in given.items() for x in pair])
    assert result.returncode == 64
    assert needle in _one_line(result)
    assert not env.config_path.exists()


@pytest.mark.parametrize("tenant", ["common", "Organizations", "consumers", "contoso.onmicrosoft.com", CLIENT_ID])
def test_add_takes_every_tenant_form(env: Env, tenant: str) -> None:
    result = env.run("add", "work", "--email", EMAIL, "--client-id", CLIENT_ID, "--tenant", tenant)
    assert result.returncode == 0, result.stderr
    assert f'tenant = "{tenant}"' in env.config_path.read_text()
