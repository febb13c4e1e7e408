"""Tell the user out of band that an account needs a new sign-in: `notify_cmd`, at most once per interval.

Mail clients run `mailtoken token` in the background, and timers run `mailtoken refresh`: their stderr reaches
a log at best, so a revoked or expired grant would otherwise go unnoticed until mail stops. The command runs
without a shell, with no stdin and no stdout (stdout belongs to the token), and is killed after NOTIFY_TIMEOUT
so a hanging notifier can never hang a mail client.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time

from . import state, ui
from .config import Account
from .fast import fsutil

NOTIFY_TIMEOUT = 5.0
PLACEHOLDERS = ("{account}", "{email}", "{message}")

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no flock, the interval alone limits notices
    fcntl = None  # type: ignore[assignment]


def stamp_path(account: str) -> str:
    return state.files(account).notice


def signin_required(acct: Account, message: str) -> bool:
    """Run the account's notify_cmd unless it ran within notify_interval. Returns whether it ran."""
    if not acct.notify_cmd:
        return False
    if not _claim(acct.name, acct.notify_interval):
        ui.debug(f"{acct.name}: notify_cmd ran less than {acct.notify_interval} s ago (notify_interval); not again")
        return False
    values = {"{account}": acct.name, "{email}": acct.email, "{message}": f"{acct.name}: {message}"}
    argv = [_expand(arg, values) for arg in acct.notify_cmd]
    env = {
        **os.environ,
        "MAILTOKEN_ACCOUNT": acct.name,
        "MAILTOKEN_EMAIL": acct.email,
        "MAILTOKEN_MESSAGE": values["{message}"],
    }
    ui.debug(f"{acct.name}: running notify_cmd {argv[0]}")
    _run(acct.name, argv, env)
    return True


def after_error(config_path: str, account: str | None, message: str) -> None:
    """The CLI's hook for a sign-in-required error; a failing notice must never change the command's answer."""
    if not account:
        return
    try:
        from . import config

        signin_required(config.load(config_path).account(account), message)
    except Exception as exc:
        ui.debug(f"{account}: no notice sent ({type(exc).__name__})")


def reset(account: str) -> None:
    """Forget the last notice (after a sign-in), so the next problem is reported at once."""
    with contextlib.suppress(OSError):
        fsutil.remove(stamp_path(account))


def _expand(arg: str, values: dict[str, str]) -> str:
    # Plain replacement, not str.format: a literal brace in a user's command must stay as written.
    for key, value in values.items():
        arg = arg.replace(key, value)
    return arg


def _claim(account: str, interval: int) -> bool:
    """Atomically decide that this process sends the notice: parallel callers of one account send one."""
    path = stamp_path(account)
    fsutil.ensure_private_dir(os.path.dirname(path))
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False  # another process is sending this very notice right now
        try:
            last = float(os.read(fd, 64).decode() or 0)
        except ValueError:
            last = 0.0
        now = time.time()
        # A clock set back (now < last) must not silence notices for the gap.
        if interval > 0 and 0 <= now - last < interval:
            return False
        os.lseek(fd, 0, os.SEEK_SET)
        os.ftruncate(fd, 0)
        os.write(fd, f"{now:.3f}".encode())
        return True
    finally:
        os.close(fd)  # also releases the flock


def _run(account: str, argv: list[str], env: dict[str, str]) -> None:
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=None if ui.verbose else subprocess.DEVNULL,
            env=env,
            close_fds=True,
            # Its own process group, so a timeout also stops whatever it started.
            start_new_session=True,
        )
    except OSError as exc:
        ui.say(f"{account}: warning: notify_cmd could not start {argv[0]} ({exc.strerror or exc})")
        return
    try:
        code = proc.wait(NOTIFY_TIMEOUT)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(OSError):
            if hasattr(os, "killpg"):
                os.killpg(proc.pid, signal.SIGKILL)
            else:  # pragma: no cover - Windows
                proc.kill()
        proc.wait()
        ui.say(f"{account}: warning: notify_cmd did not finish within {NOTIFY_TIMEOUT:g} s and was stopped")
        return
    if code != 0:
        ui.say(f"{account}: warning: notify_cmd exited with status {code}")
