"""Shared fixtures: an isolated user environment, the fake identity platform, and the installed console script.

Every test that runs `mailtoken` does so through the installed console script in a subprocess, with HOME and
the XDG folders moved into tmp_path, so nothing on the machine is read or written.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.entra import FakeEntra
from tests.secret_service import SecretService

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
BIN_DIR = Path(sys.executable).parent
MAILTOKEN = str(BIN_DIR / "mailtoken")
EMAIL = "alice@contoso.com"
CLIENT_ID = "11111111-2222-3333-4444-555555555555"


def _tree_digest(root: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in (".py", ".toml", ".typed")):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def pytest_sessionstart(session: pytest.Session) -> None:
    """A bare `pytest` after an edit tests the edit: reinstall when src/ differs from the installed package.

    The suite drives the installed console script (as users get it: pip's install of the launcher and the man
    pages), so an editable install would test less; this keeps a real install and keeps it current."""
    if hasattr(session.config, "workerinput"):
        return  # an xdist worker: the controller has already checked (and reinstalled) before starting it
    import mailtoken

    installed = Path(mailtoken.__file__).parent
    source = Path(__file__).resolve().parent.parent / "src" / "mailtoken"
    if installed.resolve() == source.resolve() or not source.is_dir():
        return
    if _tree_digest(installed) == _tree_digest(source):
        return
    print("\nconftest: src/ differs from the installed mailtoken; reinstalling it (pip install --no-deps .)")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps", "."],
        cwd=source.parent.parent,
        check=True,
    )


def require(*programs: str) -> None:
    """An integration test's external programs: missing ones fail in CI and skip elsewhere."""
    missing = [p for p in programs if shutil.which(p) is None and not os.path.exists(p)]
    if missing:
        message = f"missing programs: {', '.join(missing)} (scripts/test installs them)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


class Env:
    """A user's world in tmp_path: HOME, XDG folders, config, and the environment for subprocesses."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.home = root / "home"
        self.runtime = root / "run"
        for folder in (self.home, self.runtime):
            folder.mkdir(mode=0o700)
            folder.chmod(0o700)
        self.config_path = self.home / ".config" / "mailtoken" / "config.toml"
        self.vars: dict[str, str] = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("XDG_", "MAILTOKEN_", "DBUS_", "PYTHON_KEYRING", "http_", "https_", "HTTP_", "HTTPS_"))
            and k not in ("HOME", "DISPLAY", "WAYLAND_DISPLAY", "BROWSER", "SSH_CONNECTION")
        }
        self.vars.update(
            HOME=str(self.home),
            XDG_RUNTIME_DIR=str(self.runtime),
            NO_PROXY="*",
            PYTHONDONTWRITEBYTECODE="1",
        )

    @property
    def state_dir(self) -> Path:
        return self.home / ".local" / "state" / "mailtoken"

    @property
    def record_dir(self) -> Path:
        return self.runtime / "mailtoken"

    def age_record(self, account: str = "work", *, expires_in: int | None = None) -> None:
        """Make the account's record due for a refresh, as time would: its refresh moment is now past, and with
        `expires_in` its token expires that many seconds from now (negative: already expired). The boot-clock
        line is moved with the wall clock, so both clocks agree (record.py checks both). Written atomically:
        a client may be reading the record right now."""
        path = self.record_dir / f"{account}.token"
        now = int(time.time())
        magic, *rest = path.read_text().splitlines()
        fields = {line.partition(" ")[0]: line.partition(" ")[2] for line in rest}
        expires = now + expires_in if expires_in is not None else int(fields["expires"])
        refresh = min(now - 1, expires - 60) if expires_in is not None and expires_in <= 0 else now - 1
        fields["expires"], fields["refresh"] = str(expires), str(refresh)
        if "boot" in fields:
            offset = time.clock_gettime(time.CLOCK_BOOTTIME) - time.time()
            obtained = int(fields["boot"].split()[0])
            fields["boot"] = f"{min(obtained, int(refresh + offset))} {int(refresh + offset)} {int(expires + offset)}"
        lines = [magic] + [f"{k} {v}" for k, v in fields.items()]
        tmp = path.with_suffix(".aging")
        tmp.write_text("\n".join(lines) + "\n")
        tmp.chmod(0o600)
        os.replace(tmp, path)

    def fake_systemctl(self, exit_code: int = 0) -> Path:
        """A `systemctl` first on PATH that logs its arguments (the returned file) and exits `exit_code`
        (non-zero: as without a user manager, saying "Failed to connect to bus")."""
        bin_dir = self.root / "bin"
        bin_dir.mkdir(exist_ok=True)
        log = self.root / "systemctl.log"
        script = bin_dir / "systemctl"
        fail = 'echo "Failed to connect to bus" >&2\n' if exit_code else ""
        script.write_text(f'#!/bin/sh\necho "$*" >> {log}\n{fail}exit {exit_code}\n')
        script.chmod(0o755)
        if not self.vars["PATH"].startswith(f"{bin_dir}:"):
            self.vars["PATH"] = f"{bin_dir}:{self.vars['PATH']}"
        return log

    def write_config(self, text: str) -> Path:
        self.config_path.parent.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(text)
        return self.config_path

    def add_account(
        self, name: str = "work", *, authority: str, email: str = EMAIL, store: str = "file", extra: str = ""
    ) -> None:
        existing = self.config_path.read_text() if self.config_path.exists() else ""
        self.write_config(
            existing + f'\n[accounts.{name}]\nprovider = "microsoft"\nemail = "{email}"\nclient_id = "{CLIENT_ID}"\n'
            f'tenant = "organizations"\nauthority = "{authority}"\nstore = "{store}"\n{extra}'
        )

    def run(
        self, *args: str, input: str | None = None, timeout: float = 60, env: dict[str, str] | None = None, **kwargs
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [MAILTOKEN, *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**self.vars, **(env or {})},
            stdin=None if input is not None else subprocess.DEVNULL,
            **kwargs,
        )

    def python(self, code: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run Python code with the installed package, in this environment."""
        return subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.vars,
            stdin=subprocess.DEVNULL,
        )

    def popen(self, *args: str, env: dict[str, str] | None = None, **kwargs) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [MAILTOKEN, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**self.vars, **(env or {})},
            **kwargs,
        )


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return Env(tmp_path)


@pytest.fixture
def fake(tmp_path: Path, env: Env) -> Iterator[FakeEntra]:
    with FakeEntra(tmp_path / "fake") as server:
        server.add_user(EMAIL)
        env.vars["REQUESTS_CA_BUNDLE"] = server.ca_pem
        yield server


@pytest.fixture
def signed_in(env: Env, fake: FakeEntra) -> Env:
    """An account 'work' in the file store, signed in through the device flow with the fake approving."""
    env.add_account(authority=fake.authority())
    fake.auto_approve = EMAIL
    result = env.run("login", "work")
    assert result.returncode == 0, result.stderr
    fake.auto_approve = None
    fake.reset_counts()
    return env


@pytest.fixture
def secret_service(tmp_path: Path, env: Env) -> Iterator[SecretService]:
    """A real Secret Service (gnome-keyring on a private D-Bus), unlocked, and the env pointed at it."""
    require("dbus-daemon", "gnome-keyring-daemon", "secret-tool")
    service = SecretService(tmp_path / "secret-service").start()
    env.vars["DBUS_SESSION_BUS_ADDRESS"] = service.address
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture(scope="module")
def mailstack(tmp_path_factory: pytest.TempPathFactory):
    """Issue 4: a private Dovecot + SMTP sink + fake identity platform, one per test module (tests/servers/)."""
    from tests.servers.dovecot import DOVEADM, DOVECOT
    from tests.servers.stack import MailStack

    require(DOVECOT, DOVEADM)
    with MailStack(tmp_path_factory.mktemp("mailstack")) as stack:
        yield stack
