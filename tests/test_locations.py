"""The hot path's stdlib locations agree with platformdirs on this OS (issue 3)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import platformdirs
import pytest

from mailtoken import paths
from mailtoken.fast import locations


@pytest.fixture
def xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for var in ("XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_RUNTIME_DIR", "MAILTOKEN_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path


def test_defaults_agree_with_platformdirs(xdg: Path) -> None:
    assert locations.config_path() == paths.config_path()
    assert locations.config_path() == os.path.join(platformdirs.user_config_dir("mailtoken"), "config.toml")
    assert locations.state_dir() == platformdirs.user_state_dir("mailtoken")
    assert locations.state_dir() == paths.state_dir()


def test_xdg_variables_agree_with_platformdirs(xdg: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(xdg / "cfg"))
    monkeypatch.setenv("XDG_STATE_HOME", str(xdg / "state"))
    runtime = xdg / "run"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    assert locations.config_path() == os.path.join(platformdirs.user_config_dir("mailtoken"), "config.toml")
    assert locations.state_dir() == platformdirs.user_state_dir("mailtoken")
    assert locations.runtime_dir() == platformdirs.user_runtime_dir("mailtoken")
    assert locations.record_dir() == str(runtime / "mailtoken")


def test_relative_xdg_is_ignored_like_platformdirs(xdg: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", "relative/cfg")
    assert locations.config_path() == os.path.join(platformdirs.user_config_dir("mailtoken"), "config.toml")


def test_unsafe_runtime_dir_falls_back_to_state(xdg: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = xdg / "run"
    runtime.mkdir(mode=0o755)
    runtime.chmod(0o755)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    assert locations.runtime_dir() is None
    assert locations.record_dir() == os.path.join(platformdirs.user_state_dir("mailtoken"), "run")


def test_mailtoken_config_overrides(xdg: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILTOKEN_CONFIG", "/etc/other.toml")
    assert locations.config_path() == paths.config_path() == "/etc/other.toml"


@pytest.mark.parametrize("name", ["work", "a.b", "me@contoso.com", "x+y-z_1"])
def test_valid_account_names(name: str) -> None:
    assert locations.valid_account_name(name)


@pytest.mark.parametrize("name", ["", "..", "../x", "a/b", ".hidden", "-x", "a b", "é", "x" * 65, "a\x00"])
def test_invalid_account_names(name: str) -> None:
    assert not locations.valid_account_name(name)


# macOS, injected: the hot path's own copy of platformdirs' macOS rules, checked against platformdirs' MacOS class
# (which computes from HOME and the environment alone, so it runs here). No macOS machine runs the suite.


@pytest.fixture
def macos(xdg: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(locations, "PLATFORM", "darwin")
    monkeypatch.delenv("TMPDIR", raising=False)
    return xdg


def _mac() -> platformdirs.PlatformDirsABC:
    from platformdirs.macos import MacOS

    return MacOS("mailtoken", appauthor=False)


def test_macos_defaults_agree_with_platformdirs(macos: Path) -> None:
    home = macos / "home"
    assert locations.fast_supported()
    assert locations.config_path() == os.path.join(_mac().user_config_dir, "config.toml")
    assert locations.config_path() == str(home / "Library" / "Application Support" / "mailtoken" / "config.toml")
    assert locations.state_dir() == _mac().user_state_dir
    assert paths.config_path() == locations.config_path() and paths.state_dir() == locations.state_dir()


def test_macos_xdg_variables_agree_with_platformdirs(macos: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(macos / "cfg"))
    monkeypatch.setenv("XDG_STATE_HOME", str(macos / "state"))
    assert locations.config_path() == os.path.join(_mac().user_config_dir, "config.toml")
    assert locations.state_dir() == _mac().user_state_dir


def test_macos_records_go_to_the_private_per_user_tmpdir(macos: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # What macOS gives each user: TMPDIR=/var/folders/xx/yyyy/T/, a 0700 folder the user owns, trailing slash.
    tmpdir = macos / "folders" / "T"
    tmpdir.mkdir(parents=True, mode=0o700)
    monkeypatch.setenv("TMPDIR", str(tmpdir) + "/")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(macos))  # ignored on macOS
    assert locations.record_dir() == paths.record_dir() == str(tmpdir / "mailtoken")


@pytest.mark.parametrize("case", ["unset", "relative", "shared", "missing"])
def test_macos_unsafe_tmpdir_falls_back_to_state(macos: Path, monkeypatch: pytest.MonkeyPatch, case: str) -> None:
    shared = macos / "tmp"
    shared.mkdir(mode=0o777)
    shared.chmod(0o1777)
    value = {"unset": None, "relative": "tmp", "shared": str(shared), "missing": str(macos / "gone")}[case]
    if value is not None:
        monkeypatch.setenv("TMPDIR", value)
    assert locations.runtime_dir() is None
    assert locations.record_dir() == paths.record_dir() == os.path.join(_mac().user_state_dir, "run")


def test_macos_cached_path_serves_from_the_tmpdir_record(
    macos: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The fast path itself, in this process, on the macOS layout: config under Application Support, record in
    $TMPDIR. (The installed CLI on this Linux box can only show the Linux layout.)"""
    from mailtoken.fast import cached, record

    tmpdir = macos / "T"
    tmpdir.mkdir(mode=0o700)
    monkeypatch.setenv("TMPDIR", str(tmpdir))
    config = Path(locations.config_path())
    config.parent.mkdir(parents=True)
    config.write_text('[accounts.work]\nemail = "me@example.org"\n')
    now = int(time.time())
    rec = record.Record(now + 3600, now + 3300, record.config_stamp(str(config)), "me@example.org", "tok-mac")
    record.write(record.path_for(locations.record_dir(), "work"), rec)
    assert (tmpdir / "mailtoken" / "work.token").exists()
    assert cached.serve(["token", "work"]) is True
    assert capsys.readouterr().out == "tok-mac\n"
    monkeypatch.setattr(locations, "PLATFORM", "win32")
    assert cached.serve(["token", "work"]) is False, "without known folders the full CLI answers"
