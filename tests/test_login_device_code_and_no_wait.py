"""`login` niceties (issue 7): the device code shown big on a terminal, copied with OSC 52 when enabled, and
`--no-wait` / `--resume` for scripts.
"""

from __future__ import annotations

import base64
import json
import shlex
import stat
import subprocess

import pytest

from mailtoken.errors import EX_NOPERM, EX_USAGE
from mailtoken.signin import device as devicecode
from tests.conftest import EMAIL, MAILTOKEN, Env, require
from tests.fakes.entra import FakeEntra

BLOCK = "\u2588"


def test_big_font_covers_device_code_characters() -> None:
    for char, glyph in devicecode._FONT.items():
        rows = glyph.split("|")
        assert len(rows) == 5 and len({len(r) for r in rows}) == 1, f"glyph {char!r} is ragged"
    art = devicecode.big("ABCD-1234", 80)
    assert art is not None and len(art.splitlines()) == 5 and BLOCK in art
    assert devicecode.big("ABCD-1234", 20) is None, "never wrap block letters: too narrow means plain text only"
    assert devicecode.big("ab?", 80) is None
    assert devicecode.osc52("RCXB-TDCM") == "\x1b]52;c;" + base64.b64encode(b"RCXB-TDCM").decode() + "\x07"


def _pty_login(env: Env, *args: str) -> str:
    """Run login under a pseudo-terminal (script(1)) and return what the terminal received."""
    require("script")
    command = shlex.join([MAILTOKEN, "login", "work", *args])
    result = subprocess.run(
        ["script", "-qec", command, "/dev/null"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        env={**env.vars, "COLUMNS": "100"},
    )
    assert result.returncode == 0, result.stdout
    return result.stdout


def test_terminal_shows_the_code_big_and_copies_it_when_enabled(env: Env, fake: FakeEntra) -> None:
    env.add_account(authority=fake.authority(), extra="copy_code = true\n")
    fake.auto_approve = EMAIL
    screen = _pty_login(env)
    code = screen.split("enter the code ", 1)[1].split()[0]
    assert devicecode.osc52(code) in screen
    assert "sent to the terminal's clipboard (OSC 52)" in screen
    assert devicecode.big(code, 100) in screen  # text mode has turned the pty's \r\n into \n
    assert f"signed in as {EMAIL}" in screen


def test_no_copy_unless_enabled_and_no_art_without_a_terminal(env: Env, fake: FakeEntra) -> None:
    env.add_account(authority=fake.authority())
    fake.auto_approve = EMAIL
    screen = _pty_login(env)
    assert "\x1b]52" not in screen and BLOCK in screen
    piped = env.run("login", "work")
    assert piped.returncode == 0, piped.stderr
    assert BLOCK not in piped.stderr and "\x1b" not in piped.stderr


def test_no_wait_then_resume(env: Env, fake: FakeEntra) -> None:
    env.add_account(authority=fake.authority())
    started = env.run("login", "work", "--no-wait")
    assert started.returncode == 0, started.stderr
    url, code = started.stdout.split()
    assert url == f"{fake.base_url}/devicelogin"
    assert fake.pending_user_codes() == [code]
    assert "then run 'mailtoken login work --resume'" in started.stderr
    pending = env.state_dir / "pending" / "work.json"
    assert stat.S_IMODE(pending.stat().st_mode) == 0o600
    assert fake.counts["device_code"] == 0, "--no-wait must return without polling"

    early = env.run("login", "work", "--resume", "--timeout", "1")
    assert early.returncode == EX_NOPERM
    assert pending.exists(), "a resume cut short by --timeout keeps the code for the next --resume"

    fake.approve(code, EMAIL)
    done = env.run("login", "work", "--resume")
    assert done.returncode == 0, done.stderr
    assert f"signed in as {EMAIL}" in done.stderr and done.stdout == ""
    assert not pending.exists()
    token = env.run("token", "work")
    assert token.returncode == 0 and fake.is_valid_access_token(token.stdout.strip())


def test_resume_errors(env: Env, fake: FakeEntra) -> None:
    env.add_account(authority=fake.authority())
    nothing = env.run("login", "work", "--resume")
    assert nothing.returncode == EX_USAGE
    assert "no sign-in to resume: start one with 'mailtoken login work --no-wait'" in nothing.stderr

    assert env.run("login", "work", "--no-wait").returncode == 0
    pending = env.state_dir / "pending" / "work.json"
    saved = json.loads(pending.read_text())
    saved["flow"]["expires_at"] = 1.0
    pending.write_text(json.dumps(saved))
    expired = env.run("login", "work", "--resume")
    assert expired.returncode == EX_NOPERM
    assert "expired: run 'mailtoken login work --no-wait' again" in expired.stderr
    assert not pending.exists()


@pytest.mark.parametrize("args", [["--no-wait", "--browser"], ["--resume", "--browser"], ["--no-wait", "--resume"]])
def test_conflicting_login_options(env: Env, args: list[str]) -> None:
    env.add_account(authority="https://login.invalid/organizations")
    result = env.run("login", "work", *args)
    assert result.returncode == EX_USAGE and result.stdout == ""
