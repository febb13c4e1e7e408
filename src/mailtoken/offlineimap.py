"""Hooks for offlineimap3: name this file as `[general] pythonfile`, then, in the IMAP repository,

    auth_mechanisms = XOAUTH2
    oauth2_access_token_eval = fresh_token("work")

`token(ACCOUNT)` returns the access token as a str, in-process: a fresh cached token costs a file read; a
refresh goes through mailtoken's library when offlineimap's Python can import it (msal and friends), else
through the `mailtoken` command. offlineimap3 evaluates `oauth2_access_token_eval` once per run and keeps the
result for every later login, so in autorefresh mode a str goes stale after about an hour. `fresh_token`
returns an object that offlineimap only ever strips and formats into its XOAUTH2 string: each login asks
mailtoken again. With `token(...)` instead, run `offlineimap -o` from a timer.

offlineimap loads a pythonfile as a loose module (not as part of this package), so this file uses absolute
imports only, and puts the folder holding the `mailtoken` package on sys.path when loaded that way.
Stdlib only at import time.
"""

from __future__ import annotations

import os

if not __package__:  # loaded by path, as offlineimap's pythonfile
    import site

    _here = os.path.dirname(os.path.abspath(__file__))
    # addsitedir, not sys.path.append: it also reads the .pth files an editable or venv install relies on.
    site.addsitedir(os.path.dirname(_here))

from mailtoken.fast.cached import DEFAULT_TIMEOUT  # noqa: E402 - needs the sys.path line above

__all__ = ["token", "fresh_token", "FreshToken"]


def _cached(account: str) -> str | None:
    """The cached token if still fresh (what `mailtoken token` serves without any import beyond the stdlib)."""
    from mailtoken.fast import cached, locations

    if not locations.fast_supported() or not locations.valid_account_name(account):
        return None
    rec = cached.fresh_record(account)
    return None if rec is None else rec.token


def _in_process(account: str, timeout: float) -> str:
    from mailtoken import config, paths, tokens
    from mailtoken.deadline import Deadline

    config_path = paths.config_path()
    acct = config.load(config_path).account(account)
    deadline = Deadline(timeout)
    with deadline.enforced(acct.name):
        return tokens.get(acct, config_path, deadline).token


def _helper(given: str | None) -> str:
    """The helper named in the config, else the console script beside this package (venv, pipx), else PATH's."""
    if given:
        return given
    here = os.path.dirname(os.path.abspath(__file__))
    # <prefix>/lib/pythonX.Y/site-packages/mailtoken/offlineimap.py -> <prefix>/bin/mailtoken
    candidate = os.path.join(here, *[os.pardir] * 4, "bin", "mailtoken")
    return os.path.normpath(candidate) if os.access(candidate, os.X_OK) else "mailtoken"


def _via_command(account: str, timeout: float, helper: str | None) -> str:
    import subprocess

    try:
        result = subprocess.run(
            [_helper(helper), "token", account, "--timeout", f"{timeout:g}"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout + 5,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RuntimeError(f"mailtoken: {account}: cannot run the mailtoken command ({exc})") from None
    if result.returncode != 0 or not result.stdout.strip():
        # mailtoken's stderr is one line that never holds a secret.
        why = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else f"exit {result.returncode}"
        raise RuntimeError(why)
    return result.stdout.strip()


def token(account: str, timeout: float = DEFAULT_TIMEOUT, helper: str | None = None) -> str:
    """The account's access token, refreshed if needed. Raises RuntimeError with mailtoken's message.

    HELPER is the `mailtoken` command to run when this Python cannot import mailtoken's dependencies."""
    cached = _cached(account)
    if cached is not None:
        return cached
    try:
        from mailtoken import errors
    except ImportError:  # pragma: no cover - the package itself is always importable here
        return _via_command(account, timeout, helper)
    import threading

    if threading.current_thread() is not threading.main_thread():
        # offlineimap syncs accounts in threads, where no alarm can fire, and socket timeouts do not bound an
        # identity platform that trickles its answer: a child process with a hard timeout does.
        return _via_command(account, timeout, helper)
    try:
        return _in_process(account, timeout)
    except ImportError:
        # offlineimap's Python lacks mailtoken's dependencies (a pipx or venv install): ask the command.
        return _via_command(account, timeout, helper)
    except errors.MailtokenError as exc:
        raise RuntimeError(errors.format_error(exc)) from None


class FreshToken:
    """Stands in for the token in offlineimap3, which only calls `.strip("\\n")` on it and formats it with %s.

    Each formatting asks mailtoken, so every login sends a token that is valid then. Its repr never shows
    the token (offlineimap logs reprs in some errors).
    """

    def __init__(self, account: str, timeout: float = DEFAULT_TIMEOUT, helper: str | None = None) -> None:
        self.account = account
        self.timeout = timeout
        self.helper = helper

    def strip(self, chars: str | None = None) -> FreshToken:
        return self

    def __str__(self) -> str:
        return token(self.account, self.timeout, self.helper)

    def __repr__(self) -> str:
        return f"<mailtoken access token for {self.account!r}>"


def fresh_token(account: str, timeout: float = DEFAULT_TIMEOUT, helper: str | None = None) -> FreshToken:
    return FreshToken(account, timeout, helper)


if not __package__:
    # As a pythonfile, hand offlineimap the package's own functions (one copy of the code and its state).
    from mailtoken.offlineimap import FreshToken, fresh_token, token  # noqa: F811
