"""Where mailtoken keeps things, computed with the stdlib so the hot path can afford it.

These few lines follow platformdirs' rules for Linux/BSD (XDG) and macOS (XDG variables if set, else
~/Library/Application Support; records in the per-user $TMPDIR); tests/test_locations.py proves they agree, with
the platform injected through PLATFORM. Elsewhere (Windows) `fast_supported()` is False and only `paths.py`
(platformdirs) is used.
"""

from __future__ import annotations

import os
import sys

APP = "mailtoken"
PLATFORM = sys.platform  # the tests inject "darwin" or "linux" here
_MACOS_HOME = os.path.join("Library", "Application Support")


def fast_supported() -> bool:
    """The cached path runs here: these functions know the platform's folders."""
    return PLATFORM not in ("win32", "cygwin")


def _home_based(env_var: str, default: str) -> str:
    value = os.environ.get(env_var, "")
    if value and os.path.isabs(value):
        return value
    return os.path.join(os.path.expanduser("~"), default)


def config_path() -> str:
    override = os.environ.get("MAILTOKEN_CONFIG")
    if override:
        return override
    default = _MACOS_HOME if PLATFORM == "darwin" else ".config"
    return os.path.join(_home_based("XDG_CONFIG_HOME", default), APP, "config.toml")


def state_dir() -> str:
    default = _MACOS_HOME if PLATFORM == "darwin" else os.path.join(".local", "state")
    return os.path.join(_home_based("XDG_STATE_HOME", default), APP)


def runtime_dir() -> str | None:
    """$XDG_RUNTIME_DIR/mailtoken when that folder is usable as the XDG spec requires, else None.

    macOS has no XDG_RUNTIME_DIR, but its $TMPDIR (/var/folders/…/T/) is the same thing: per user, 0700, and
    cleaned by the system; the same check accepts it.
    """
    base = os.environ.get("TMPDIR" if PLATFORM == "darwin" else "XDG_RUNTIME_DIR", "")
    if not base or not os.path.isabs(base):
        return None
    try:
        st = os.lstat(base)
    except OSError:
        return None
    # Same acceptance rule as platformdirs: a real folder, ours, 0700.
    if not (st.st_mode & 0o170000 == 0o040000 and st.st_uid == os.getuid() and st.st_mode & 0o077 == 0):
        return None
    return os.path.join(base.rstrip("/") or "/", APP)


def lock_path(account: str) -> str:
    """The account's lock file; lock.py takes it, the cached path waits on it."""
    return os.path.join(state_dir(), "locks", account + ".lock")


def record_dir() -> str:
    """Access-token records live on the runtime tmpfs where there is one, else beside the state."""
    return runtime_dir() or os.path.join(state_dir(), "run")


ACCOUNT_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._@+-")


def valid_account_name(name: str) -> bool:
    # Account names become file names: this set keeps them inside our folders.
    return 0 < len(name) <= 64 and name[0] not in ".-" and all(c in ACCOUNT_CHARS for c in name)
