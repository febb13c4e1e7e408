"""The hot path's stdlib locations agree with platformdirs on this OS (issue 3)."""

from __future__ import annotations

import os
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
