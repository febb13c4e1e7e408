"""A real Secret Service for tests: a private D-Bus session bus with gnome-keyring-daemon on it, unlocked."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

PASSWORD = "test-keyring-password"


class SecretService:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.bus: subprocess.Popen[str] | None = None
        self.daemon: subprocess.Popen[bytes] | None = None
        self.address = ""
        self.env: dict[str, str] = {}

    def start(self) -> SecretService:
        self.root.mkdir(parents=True, exist_ok=True)
        home = self.root / "home"
        home.mkdir(exist_ok=True)
        runtime = self.root / "run"
        runtime.mkdir(mode=0o700, exist_ok=True)
        base = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "XDG_RUNTIME_DIR": str(runtime),
            "XDG_DATA_HOME": str(home / ".local" / "share"),
        }
        self.bus = subprocess.Popen(
            ["dbus-daemon", "--session", "--nofork", "--print-address=1", "--nopidfile"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=base,
        )
        assert self.bus.stdout is not None
        self.address = self.bus.stdout.readline().strip()
        if not self.address:
            raise RuntimeError("dbus-daemon did not print its address")
        self.env = {**base, "DBUS_SESSION_BUS_ADDRESS": self.address}
        self.start_keyring()
        return self

    def start_keyring(self) -> None:
        try:
            self._start_keyring()
        except RuntimeError:
            # Seen under load: the daemon gives up claiming the bus name. One more try, then the error stands.
            self.stop_keyring()
            self._start_keyring()

    def _start_keyring(self) -> None:
        self.daemon = subprocess.Popen(
            ["gnome-keyring-daemon", "--foreground", "--replace", "--unlock", "--components=secrets"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=self.env,
        )
        assert self.daemon.stdin is not None
        self.daemon.stdin.write(PASSWORD.encode())
        self.daemon.stdin.close()
        self.wait_ready()

    def wait_ready(self, timeout: float = 45) -> None:
        # Generous: on a loaded 2-core machine the daemon can take many seconds to claim its bus name.
        end = time.monotonic() + timeout
        last = ""
        # The daemon makes the login keyring from the password on its stdin some time after it is on the bus.
        # A client asking for the default collection before that starts a "create a keyring" prompt, which
        # fails or hangs without a display and leaves no login collection: so the file comes first.
        login = Path(self.env["HOME"]) / ".local" / "share" / "keyrings" / "login.keyring"
        while not login.exists() and time.monotonic() < end:
            if self.daemon is not None and self.daemon.poll() is not None:
                raise RuntimeError(f"gnome-keyring-daemon exited with status {self.daemon.returncode}")
            time.sleep(0.05)
        # Likewise after a restart (unlock()): the file is there, but the collection is unlocked from stdin a
        # moment later, and a write before that starts an unlock prompt. Ask without prompting until it is.
        while not self._login_unlocked() and time.monotonic() < end:
            if self.daemon is not None and self.daemon.poll() is not None:
                raise RuntimeError(f"gnome-keyring-daemon exited with status {self.daemon.returncode}")
            time.sleep(0.1)
        while time.monotonic() < end:
            if self.daemon is not None and self.daemon.poll() is not None:
                raise RuntimeError(f"gnome-keyring-daemon exited with status {self.daemon.returncode}")
            try:
                probe = subprocess.run(
                    ["secret-tool", "store", "--label=probe", "service", "mailtoken-test-probe", "username", "probe"],
                    input="x",
                    capture_output=True,
                    text=True,
                    env=self.env,
                    timeout=10,
                )
            except subprocess.TimeoutExpired:
                last = "timed out"
                continue
            if probe.returncode == 0:
                return
            last = (probe.stderr or probe.stdout).strip()[-300:]
            time.sleep(0.2)
        raise RuntimeError(f"gnome-keyring-daemon did not come up on the private bus (secret-tool said: {last!r})")

    def _login_unlocked(self) -> bool:
        """Whether the login collection exists and is unlocked, asked over D-Bus without any prompt."""
        code = (
            "import sys, secretstorage\n"
            "from secretstorage.collection import Collection\n"
            "c = Collection(secretstorage.dbus_init(), '/org/freedesktop/secrets/collection/login')\n"
            "sys.exit(1 if c.is_locked() else 0)\n"
        )
        try:
            done = subprocess.run([sys.executable, "-c", code], env=self.env, capture_output=True, timeout=10)
        except subprocess.TimeoutExpired:
            return False
        return done.returncode == 0

    def lock(self) -> None:
        """Lock the login collection, as a screen lock or a fresh boot leaves it."""
        # secret-tool's own `lock` crashes on Debian 12; the Secret Service D-Bus API through secretstorage works.
        code = (
            "import secretstorage\n"
            "conn = secretstorage.dbus_init()\n"
            "secretstorage.get_default_collection(conn).lock()\n"
        )
        subprocess.run([sys.executable, "-c", code], env=self.env, check=True, timeout=20)

    def unlock(self) -> None:
        self.stop_keyring()
        self.start_keyring()

    def stop_keyring(self) -> None:
        if self.daemon and self.daemon.poll() is None:
            self.daemon.send_signal(signal.SIGTERM)
            self.daemon.wait(10)
        self.daemon = None

    def search(self, service: str = "mailtoken") -> str:
        """What secret-tool sees: the items our keyring store wrote (attributes service/username)."""
        out = subprocess.run(
            ["secret-tool", "search", "--all", "service", service],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=10,
        )
        # Attributes only: the secret lines are left out so a test never prints one.
        lines = (out.stdout + out.stderr).splitlines()
        return "\n".join(line for line in lines if not line.startswith("secret ="))

    def stop(self) -> None:
        self.stop_keyring()
        if self.bus and self.bus.poll() is None:
            self.bus.terminate()
            self.bus.wait(10)
