"""`login --paste`: read back the address the browser was sent to after sign-in, typed or pasted by the user.

For machines where no browser can reach a listener here (SSH sessions, no browser, an app registration whose
redirect URI is not a loopback http:// one, like https://localhost): the browser runs anywhere, fails to load the
redirect page, and the user copies its address. The state and PKCE checks are the engine's, as for --browser.
"""

from __future__ import annotations

import os
import select
import sys
import time
import urllib.parse

from ..config import Account
from ..errors import SignInRequired

# Long enough for any authorization response (Entra's codes are about 1 KB); a terminal in canonical mode
# would cut a line at 4096 bytes (Linux) or 1024 (macOS), so on a terminal the line is read uncooked.
MAX_LINE = 64 * 1024


def read_redirect(acct: Account, redirect_uri: str, timeout: float) -> dict[str, str]:
    """The authorization response (code, state, or error) from the pasted address."""
    line = read_line(timeout).strip()
    if not line:
        raise SignInRequired(
            f"no address was pasted: run 'mailtoken login {acct.name} --paste' again", account=acct.name
        )
    return parse(acct, line, redirect_uri)


def parse(acct: Account, text: str, redirect_uri: str) -> dict[str, str]:
    query = text
    if "://" in text:
        got, want = urllib.parse.urlsplit(text), urllib.parse.urlsplit(redirect_uri)
        # The port may differ (Entra and Google accept any port on a loopback redirect URI); the rest may not.
        if (got.scheme, got.hostname, got.path.rstrip("/")) != (want.scheme, want.hostname, want.path.rstrip("/")):
            raise SignInRequired(
                f"that is not the address the browser was sent to (it starts with {redirect_uri}): "
                f"run 'mailtoken login {acct.name} --paste' again and copy the address bar after sign-in",
                account=acct.name,
            )
        query = got.query or got.fragment
    fields = dict(urllib.parse.parse_qsl(query.lstrip("?#")))
    if "code" not in fields and "error" not in fields:
        raise SignInRequired(
            "the pasted address holds no authorization code (copy it after signing in, when the browser shows "
            f"{redirect_uri}): run 'mailtoken login {acct.name} --paste' again",
            account=acct.name,
        )
    return fields


def read_line(timeout: float) -> str:
    """One line from stdin within `timeout` seconds; "" at end of input or when time is up."""
    fd = sys.stdin.fileno()
    if os.isatty(fd):
        try:
            import termios
        except ImportError:  # pragma: no cover - Windows
            return sys.stdin.readline()
        old = termios.tcgetattr(fd)
        raw = termios.tcgetattr(fd)
        raw[3] &= ~termios.ICANON  # no line-length limit; echo stays on
        raw[6][termios.VMIN], raw[6][termios.VTIME] = 1, 0
        termios.tcsetattr(fd, termios.TCSANOW, raw)
        try:
            return _read(fd, timeout)
        finally:
            termios.tcsetattr(fd, termios.TCSADRAIN, old)
    return _read(fd, timeout)


def _read(fd: int, timeout: float) -> str:
    end = time.monotonic() + timeout
    data = b""
    while len(data) < MAX_LINE:
        left = end - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            break
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
        if b"\n" in data or b"\r" in data:
            break
    return data.replace(b"\r", b"\n").split(b"\n", 1)[0].decode("utf-8", "replace")
