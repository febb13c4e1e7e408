"""Helpers for the sign-in tests of every provider: a login run as a person would, with a scripted browser."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from tests.conftest import MAILTOKEN, Env
from tests.fakes.browser import Browser

BROWSER_SCRIPT = Path(__file__).parent / "fakes" / "browser.py"


def browser_command(env: Env) -> str:
    """A BROWSER value (Python's webbrowser) that runs the scripted browser on the URL.

    webbrowser takes $BROWSER as one program (no arguments), so a small wrapper script runs ours.
    """
    wrapper = env.root / "browser"
    if not wrapper.exists():
        wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{BROWSER_SCRIPT}" "$@"\n')
        wrapper.chmod(0o755)
    return str(wrapper)


def trust(env: Env, ca_pem: str) -> None:
    """Point both engines (msal's requests, the stdlib client) and the scripted browser at a test CA."""
    env.vars["REQUESTS_CA_BUNDLE"] = ca_pem
    env.vars["SSL_CERT_FILE"] = ca_pem


class Login:
    """`mailtoken login ...` in a subprocess whose stderr is read line by line and whose stdin the test types to."""

    def __init__(self, env: Env, *args: str, on_line: Callable[[Login, str], None] | None = None) -> None:
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [MAILTOKEN, "login", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env.vars,
        )
        self._on_line = on_line
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            if self._on_line:
                try:
                    self._on_line(self, line)
                except Exception as exc:  # shown in the assertion message, not lost in a thread
                    self.lines.append(f"[test] {type(exc).__name__}: {exc}\n")

    def type(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def wait(self, timeout: float = 60) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code

    @property
    def stderr(self) -> str:
        return "".join(self.lines)

    @property
    def stdout(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.read()


def paste_as_browser(cafile: str, login: str | None = None, tamper: Callable[[str], str] | None = None):
    """An on_line handler: when login prints the authorize URL, sign in with the scripted browser, and paste
    the address it was sent to (never delivered: nothing listens there)."""

    def on_line(proc: Login, line: str) -> None:
        url = line.strip()
        if url.startswith("https://") and ("/authorize?" in url or "/auth?" in url):
            address = Browser(login, cafile=cafile).run(url, deliver=False)
            proc.type(tamper(address) if tamper else address)

    return on_line


def approve_device(cafile: str, login: str) -> Callable[[Login, str], None]:
    """An on_line handler: approve the device code at the provider's own pages, as the user would."""

    shown: list[str] = []

    def on_line(proc: Login, line: str) -> None:
        # login prints the page's URL on a line of its own, then the code.
        if re.fullmatch(r"https?://\S+", line.strip()):
            shown.append(line.strip())
        match = re.search(r"enter the code (\S+)", line)
        if match and shown:
            Browser(login, cafile=cafile).approve_device(f"{shown[-1]}?user_code={match.group(1)}")

    return on_line
