"""Issue 5, promise 5: secret-store faults. A grant kept in the keyring is never hidden or lost.

When the keyring is unusable (the keyring module or a backend missing, no D-Bus as under cron, the Secret
Service locked, a backend that raises) `mailtoken token` exits 69 with one line that says what to do; it never
looks elsewhere and ends in a misleading "sign-in required". Once the store works again the same grant works:
nothing was lost. A store that refuses to save a rotated grant does not lose it either (the rescue file).
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import EMAIL, Env
from tests.fakes.entra import FakeEntra
from tests.secret_service import SecretService

FIX = 'set store = "file" for this account'
STORE_FAULTS_TRIED: list[str] = []


def assert_69(result: Any, *needles: str) -> str:
    assert result.returncode == 69, f"expected 69, got {result.returncode}: {result.stderr}"
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, lines
    line = lines[0]
    assert line.startswith("mailtoken: work: "), line
    assert "sign-in required" not in line and "not signed in" not in line, "a store fault must not pose as 77"
    for needle in needles:
        assert needle in line, f"{needle!r} not in {line!r}"
    return line


def assert_token(result: Any, fake: FakeEntra) -> str:
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    assert fake.is_valid_access_token(token)
    return token


@pytest.fixture
def in_keyring(env: Env, fake: FakeEntra, secret_service: SecretService) -> Env:
    """Account 'work' signed in with its grant in a real Secret Service (gnome-keyring on a private bus)."""
    env.add_account(authority=fake.authority(), store="keyring")
    fake.auto_approve = EMAIL
    result = env.run("login", "work")
    fake.auto_approve = None
    assert result.returncode == 0, result.stderr
    assert "grant kept in keyring (keyring.backends.SecretService.Keyring)" in result.stderr
    assert "username = work" in secret_service.search()
    assert not (env.state_dir / "grants" / "work.json").exists()
    return env


def test_locked_secret_service_exits_69_then_recovers(
    in_keyring: Env, fake: FakeEntra, secret_service: SecretService
) -> None:
    STORE_FAULTS_TRIED.append("secret-service-locked")
    env = in_keyring
    env.age_record(expires_in=-10)
    secret_service.lock()
    result = env.run("token", "work", "--timeout", "30")
    assert_69(result, "locked", "unlock")
    assert fake.counts["refresh_token"] == 0, "nothing may reach the identity platform without the grant"
    secret_service.unlock()
    assert_token(env.run("token", "work"), fake)
    assert fake.counts["refresh_token"] == 1


@pytest.mark.parametrize(
    ("case", "extra_env", "needles"),
    [
        pytest.param("no-dbus", {"DBUS_SESSION_BUS_ADDRESS": ""}, ("no keyring backend is usable", FIX), id="cron"),
        pytest.param(
            "dbus-gone",
            {"DBUS_SESSION_BUS_ADDRESS": "unix:path=/nonexistent/mailtoken-test-bus"},
            ("no keyring backend is usable", FIX),
            id="bus-gone",
        ),
        pytest.param(
            "fail-backend",
            {"PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"},
            ("no keyring backend is usable", FIX),
            id="no-backend",
        ),
    ],
)
def test_unreachable_keyring_exits_69_with_the_fix(
    in_keyring: Env, fake: FakeEntra, case: str, extra_env: dict[str, str], needles: tuple[str, ...]
) -> None:
    STORE_FAULTS_TRIED.append(case)
    env = in_keyring
    env.age_record(expires_in=-10)
    vars_ = {k: v for k, v in env.vars.items() if not (k in extra_env and not extra_env[k])}
    vars_.update({k: v for k, v in extra_env.items() if v})
    saved, env.vars = env.vars, vars_
    try:
        assert_69(env.run("token", "work", "--timeout", "30"), *needles)
        assert_69(env.run("xoauth2", "work", "--timeout", "30"), *needles)
    finally:
        env.vars = saved
    # The grant is where it was: with the keyring back, the next call works without a sign-in.
    assert_token(env.run("token", "work"), fake)


def test_keyring_module_missing_exits_69(in_keyring: Env, fake: FakeEntra, tmp_path: Path) -> None:
    STORE_FAULTS_TRIED.append("keyring-module-missing")
    shadow = tmp_path / "no-keyring"
    (shadow / "keyring").mkdir(parents=True)
    (shadow / "keyring" / "__init__.py").write_text("raise ImportError('keyring is not installed here')\n")
    in_keyring.age_record(expires_in=-10)
    result = in_keyring.run("token", "work", env={"PYTHONPATH": str(shadow)})
    assert_69(result, "the keyring module is not installed", FIX)
    assert_token(in_keyring.run("token", "work"), fake)


# A keyring backend that keeps its secrets in a JSON file and fails on command (MODE file beside it).
BACKEND = textwrap.dedent(
    """
    import json, os
    from keyring.backend import KeyringBackend

    HERE = os.path.dirname(os.path.abspath(__file__))
    STORE = os.path.join(HERE, "secrets.json")

    def _mode():
        with open(os.path.join(HERE, "MODE")) as fh:
            return fh.read().strip()

    class Keyring(KeyringBackend):
        priority = 1

        def __init__(self):
            super().__init__()
            if _mode() == "fail-init":
                raise RuntimeError("the backend could not start")

        def _load(self):
            try:
                with open(STORE) as fh:
                    return json.load(fh)
            except FileNotFoundError:
                return {}

        def get_password(self, service, username):
            if _mode() in ("fail-read", "fail-all"):
                raise RuntimeError("backend exploded while reading")
            return self._load().get(f"{service}/{username}")

        def set_password(self, service, username, password):
            if _mode() in ("fail-write", "fail-all"):
                raise OSError("backend refused the write")
            data = self._load()
            data[f"{service}/{username}"] = password
            fd = os.open(STORE + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                json.dump(data, fh)
            os.replace(STORE + ".tmp", STORE)

        def delete_password(self, service, username):
            data = self._load()
            data.pop(f"{service}/{username}", None)
            with open(STORE, "w") as fh:
                json.dump(data, fh)
    """
)


class FlakyKeyring:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir()
        (folder / "flaky_keyring.py").write_text(BACKEND)
        self.mode("ok")

    def mode(self, mode: str) -> None:
        (self.folder / "MODE").write_text(mode)

    def secret(self) -> str | None:
        data = json.loads((self.folder / "secrets.json").read_text())
        return data.get("mailtoken/work")

    @property
    def vars(self) -> dict[str, str]:
        return {"PYTHONPATH": str(self.folder), "PYTHON_KEYRING_BACKEND": "flaky_keyring.Keyring"}


@pytest.fixture
def flaky(env: Env, fake: FakeEntra, tmp_path: Path) -> FlakyKeyring:
    backend = FlakyKeyring(tmp_path / "flaky")
    env.vars.update(backend.vars)
    env.add_account(authority=fake.authority(), store="keyring")
    fake.auto_approve = EMAIL
    result = env.run("login", "work")
    fake.auto_approve = None
    assert result.returncode == 0, result.stderr
    assert "flaky_keyring.Keyring" in result.stderr
    assert backend.secret()
    return backend


@pytest.mark.parametrize(
    ("mode", "needles"),
    [
        pytest.param("fail-read", ("the keyring failed to read (RuntimeError: backend exploded", FIX), id="raises"),
        pytest.param("fail-init", ("keyring backend failed to load (RuntimeError)", FIX), id="raises-on-load"),
    ],
)
def test_raising_backend_exits_69(
    env: Env, fake: FakeEntra, flaky: FlakyKeyring, mode: str, needles: tuple[str, ...]
) -> None:
    STORE_FAULTS_TRIED.append(f"backend-{mode}")
    env.age_record(expires_in=-10)
    flaky.mode(mode)
    assert_69(env.run("token", "work"), *needles)
    assert fake.counts["refresh_token"] == 0
    flaky.mode("ok")
    assert_token(env.run("token", "work"), fake)


def test_a_store_that_refuses_the_rotated_grant_loses_nothing(env: Env, fake: FakeEntra, flaky: FlakyKeyring) -> None:
    """Strict rotation: the old refresh token is spent once the new one is issued; the new one must survive."""
    STORE_FAULTS_TRIED.append("backend-refuses-write")
    assert fake.strict_rotation
    rescue = env.state_dir / "grants" / "work.rescue.json"
    before = flaky.secret()
    env.age_record(expires_in=-10)
    flaky.mode("fail-write")
    first = env.run("token", "work")
    assert_token(first, fake)
    assert first.stderr.count("\n") == 1 and first.stderr.startswith("mailtoken: work: warning: ")
    assert "backend refused the write" in first.stderr and str(rescue) in first.stderr
    assert rescue.stat().st_mode & 0o777 == 0o600
    assert flaky.secret() == before  # the store kept the old grant; the new one is in the rescue file
    # Again, still failing: the rescued grant is used (the stored one is spent) and rescued anew.
    env.age_record(expires_in=-10)
    assert_token(env.run("token", "work"), fake)
    # The store works again: the next refresh saves into it and drops the rescue file.
    flaky.mode("ok")
    env.age_record(expires_in=-10)
    last = env.run("token", "work")
    assert_token(last, fake)
    assert last.stderr == ""
    assert not rescue.exists()
    assert flaky.secret() != before
    env.age_record(expires_in=-10)
    assert_token(env.run("token", "work"), fake)
    assert fake.counts["refresh_token"] == 4
    assert fake.counts["token_errors"] == 0


def test_unsafe_file_store_is_refused_not_bypassed(signed_in: Env, fake: FakeEntra) -> None:
    """The file store's grant readable by others: exit 69 naming the file and the fix, never 77."""
    STORE_FAULTS_TRIED.append("file-store-group-readable")
    grant = signed_in.state_dir / "grants" / "work.json"
    signed_in.age_record(expires_in=-10)
    grant.chmod(0o640)
    assert_69(signed_in.run("token", "work"), str(grant), "readable by others (mode 0640)", "chmod 600")
    grant.chmod(0o600)
    assert_token(signed_in.run("token", "work"), fake)


@pytest.fixture(scope="module", autouse=True)
def _report() -> Any:
    yield
    print(f"\nsecret-store faults tried ({len(STORE_FAULTS_TRIED)}): {', '.join(STORE_FAULTS_TRIED)}")
