"""Config edits must never cost mail (issue 12): only an account's own settings decide whether its token stands,
and only its own table's mistakes fail its calls."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import EMAIL, Env
from tests.fakes.entra import FakeEntra

BOB = "bob@contoso.com"


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[Env, FakeEntra]]:
    env = Env(tmp_path)
    with FakeEntra(tmp_path / "fake") as fake:
        fake.add_user(EMAIL)
        env.vars["REQUESTS_CA_BUNDLE"] = fake.ca_pem
        env.add_account(authority=fake.authority())
        fake.auto_approve = EMAIL
        assert env.run("login", "work").returncode == 0
        fake.auto_approve = None
        yield env, fake


def _edits(authority: str) -> list[tuple[str, str, bool]]:
    """(what, how to change the text, whether work's own settings change)."""
    other = f'\n[accounts.home]\nemail = "{BOB}"\nclient_id = "x"\nauthority = "{authority}"\n'
    return [
        ("a comment", "\n# edited by hand\n", False),
        ("another account added", other, False),
        ("another account broken", '\n[accounts.home]\nemail = "bob@contoso.com"\ntennant = "consumers"\n', False),
        ("this account's email changed", "email:Alice@contoso.com", True),
        ("this account's tenant changed", "tenant:contoso.onmicrosoft.com", True),
    ]


def _apply(env: Env, text: str, edit: str) -> None:
    if edit.startswith(("email:", "tenant:")):
        key, value = edit.split(":", 1)
        lines = [f'{key} = "{value}"' if line.startswith(f"{key} =") else line for line in text.splitlines()]
        env.config_path.write_text("\n".join(lines) + "\n")
    else:
        env.config_path.write_text(text + edit)


@pytest.mark.parametrize("idp_up", [True, False], ids=["identity-platform-up", "identity-platform-down"])
def test_five_edits_count_grants_and_keep_mail_flowing(world: tuple[Env, FakeEntra], idp_up: bool) -> None:
    env, fake = world
    original = env.config_path.read_text()
    for what, edit, own in _edits(fake.authority()):
        env.config_path.write_text(original)
        token = env.run("token", "work").stdout
        assert token, what
        fake.reset_counts()
        _apply(env, original, edit)
        if not idp_up:
            fake.inject("close", count=5)
        result = env.run("token", "work")
        grants = fake.counts["refresh_token"]
        with fake._lock:
            fake._faults.clear()
        if not own:
            # The file changed, this account did not: the same token, no network call, and back on the fast path.
            assert (result.returncode, result.stdout) == (0, token), f"{what}: {result.stderr}"
            assert grants == 0, f"{what}: {grants} refresh grants for an edit that does not touch the account"
            st = env.config_path.stat()
            stamp = f"config {st.st_mtime_ns} {st.st_size} {st.st_ino}"
            assert stamp in (env.record_dir / "work.token").read_text().splitlines(), f"{what}: not re-stamped"
        elif idp_up:
            assert result.returncode == 0 and result.stdout != token, f"{what}: {result.stderr}"
            assert grants == 1, f"{what}: an edit of the account itself gets one new token"
        else:
            # The account changed and the identity platform is down: its old token is for other settings.
            assert result.returncode == 75 and result.stdout == "", f"{what}: {result.stderr}"


def test_a_typo_in_one_account_does_not_break_another(world: tuple[Env, FakeEntra]) -> None:
    env, fake = world
    token = env.run("token", "work").stdout
    env.config_path.write_text(
        env.config_path.read_text() + f'\n[accounts.home]\nemail = "{BOB}"\nclient_id = "x"\ntennant = "consumers"\n'
    )
    fake.inject("close", count=5)  # and offline: work's cached token must still be served
    ok = env.run("token", "work")
    assert (ok.returncode, ok.stdout, ok.stderr) == (0, token, ""), "token stays silent about other accounts"
    broken = env.run("token", "home")
    assert broken.returncode == 78
    assert "[accounts.home] tennant: unknown key (did you mean 'tenant'?)" in broken.stderr
    status = env.run("status")
    assert status.returncode == 78
    assert "work" in status.stdout and "home" in status.stdout and "config error" in status.stdout
    assert "tennant" in status.stderr
    rows = {r["account"]: r for r in json.loads(env.run("status", "--json").stdout)["accounts"]}
    assert rows["home"]["state"] == "config-error" and rows["work"]["state"] == "signed-in"
    assert rows["work"]["token_valid"] is True and rows["work"]["needs_login"] is False


def test_a_toml_syntax_error_still_fails_every_account_naming_line_and_column(world: tuple[Env, FakeEntra]) -> None:
    env, _fake = world
    env.config_path.write_text(env.config_path.read_text() + "\n[accounts.home\n")
    result = env.run("token", "work")
    assert result.returncode == 78
    assert "not valid TOML" in result.stderr and "line" in result.stderr and "column" in result.stderr
