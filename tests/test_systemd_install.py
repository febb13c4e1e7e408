"""Issue 11, point 4: `mailtoken systemd install` under a hostile umask, a planted symlink and odd paths.

The units say what runs every 20 minutes as the user: nobody else may be able to change them, whatever the
umask, and a value pasted into them (the program's path, MAILTOKEN_CONFIG) must mean what it says.
"""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailtoken import systemd
from tests.conftest import Env, require


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def _install(user: Env, **kwargs) -> subprocess.CompletedProcess[str]:
    return user.run("systemd", "install", "--no-enable", umask=0, **kwargs)


def test_units_and_the_folders_made_for_them_are_not_writable_by_others_under_umask_000(env: Env) -> None:
    env.fake_systemctl()
    result = _install(env)
    assert result.returncode == 0, result.stderr
    config = env.home / ".config"
    assert (_mode(config), _mode(config / "systemd"), _mode(config / "systemd" / "user")) == (0o700, 0o755, 0o755)
    for name in (systemd.SERVICE_NAME, systemd.TIMER_NAME):
        assert _mode(config / "systemd" / "user" / name) == 0o644
    assert sorted(p.name for p in (config / "systemd" / "user").iterdir()) == sorted(
        [systemd.SERVICE_NAME, systemd.TIMER_NAME]
    )


def test_folders_that_were_there_keep_their_mode(env: Env) -> None:
    env.fake_systemctl()
    config = env.home / ".config"
    config.mkdir(mode=0o755)
    config.chmod(0o750)
    assert _install(env).returncode == 0
    assert _mode(config) == 0o750


def test_a_planted_symlink_is_not_followed(env: Env) -> None:
    """The old writer opened the fixed name NAME.tmp with open(): a link there aimed its write anywhere."""
    env.fake_systemctl()
    units = env.home / ".config" / "systemd" / "user"
    units.mkdir(parents=True)
    victim = env.root / "victim"
    victim.write_text("untouched\n")
    for name in (systemd.SERVICE_NAME, systemd.TIMER_NAME):
        (units / f"{name}.tmp").symlink_to(victim)
    assert _install(env).returncode == 0
    assert victim.read_text() == "untouched\n"
    assert not (units / systemd.SERVICE_NAME).is_symlink()


@pytest.mark.parametrize("open_one", ["systemd/user", "systemd", "."])
def test_a_unit_folder_or_parent_others_can_write_is_refused(env: Env, open_one: str) -> None:
    """What the old install left under umask 000 (0777 folders): refused until the user fixes them."""
    env.fake_systemctl()
    units = env.home / ".config" / "systemd" / "user"
    units.mkdir(parents=True)
    (env.home / ".config" / open_one).chmod(0o777)
    result = _install(env)
    assert result.returncode == 78
    assert f"{(env.home / '.config' / open_one).resolve()} may be written by other users (mode 0777" in result.stderr
    assert not list(units.iterdir())


def test_a_line_break_in_the_config_path_is_refused(env: Env) -> None:
    env.fake_systemctl()
    result = _install(env, env={"MAILTOKEN_CONFIG": str(env.root / "a\nExecStartPre=/bin/touch /tmp/x")})
    assert result.returncode == 78
    assert result.stderr.count("\n") == 1 and "MAILTOKEN_CONFIG: cannot write U+000A" in result.stderr
    assert not (env.home / ".config" / "systemd" / "user" / systemd.SERVICE_NAME).exists()


@pytest.mark.parametrize("folder", ["plain", "with space", "dollar$HOME", "per%cent", "semi;colon", "ünï"])
def test_the_program_path_reaches_systemd_as_written(tmp_path: Path, folder: str) -> None:
    """systemd-analyze verify checks that ExecStart's program exists: a quoting slip points it elsewhere.
    (systemd takes the program's path literally: `$$` there would stay `$$`, unlike in its arguments.)"""
    require("systemd-analyze")
    program = tmp_path / folder / "mailtoken"
    program.parent.mkdir()
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    config = str(tmp_path / folder / "config.toml")
    units = systemd.render(systemd._exec_path(str(program)), config)
    for name, text in units.items():
        (tmp_path / name).write_text(text)
    check = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *(str(tmp_path / n) for n in units)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (check.returncode, check.stdout + check.stderr) == (0, ""), units[systemd.SERVICE_NAME]
    program.unlink()  # and the same unit with the program gone fails: the check above can fail
    check = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(tmp_path / systemd.SERVICE_NAME)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "is not executable" in check.stderr


def test_a_program_path_systemd_cannot_run_is_a_config_error() -> None:
    with pytest.raises(systemd.ConfigError, match="quote or a backslash"):
        systemd._exec_path("/opt/it's/mailtoken")


FOLDER_CHARS = list(" $%;{}|&<>()`#=*?!~^,:@+") + ["é", "日", "😀", "a", "Z", "0"]


@settings(max_examples=12, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    folder=st.lists(st.sampled_from(FOLDER_CHARS), min_size=1, max_size=12).map("".join),
    config_name=st.lists(st.sampled_from([*FOLDER_CHARS, "'", '"', "\\"]), min_size=1, max_size=12).map("".join),
)
def test_hostile_program_and_config_paths_give_units_systemd_reads(
    tmp_path_factory: pytest.TempPathFactory, folder: str, config_name: str
) -> None:
    """The program must be found where it is (a real round trip), and the Environment= line must parse."""
    require("systemd-analyze")
    root = tmp_path_factory.mktemp("units")
    program = root / folder.strip() / "mailtoken" if folder.strip() not in ("", ".") else root / "x" / "mailtoken"
    program.parent.mkdir(parents=True, exist_ok=True)
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    units = systemd.render(systemd._exec_path(str(program)), str(root / config_name))
    for name, text in units.items():
        (root / name).write_text(text)
    check = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *(str(root / n) for n in units)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (check.returncode, check.stdout + check.stderr) == (0, ""), units[systemd.SERVICE_NAME]
