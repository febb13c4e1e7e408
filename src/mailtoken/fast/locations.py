"""Where mailtoken keeps things, computed with the stdlib so the hot path can afford it.

These few lines follow platformdirs' XDG rules (tests/test_locations.py proves they agree on this OS). On
platforms without XDG folders (macOS, Windows) `xdg_supported()` is False and only `paths.py` (platformdirs) is used.
"""

from __future__ import annotations

import os
import sys

APP = "mailtoken"


def xdg_supported() -> bool:
    return sys.platform not in ("win32", "darwin", "cygwin")


def _home_based(env_var: str, default: str) -> str:
    value = os.environ.get(env_var, "")
    if value and os.path.isabs(value):
        return value
    return os.path.join(os.path.expanduser("~"), default)


def config_path() -> str:
    override = os.environ.get("MAILTOKEN_CONFIG")
    if override:
        return override
    return os.path.join(_home_based("XDG_CONFIG_HOME", ".config"), APP, "config.toml")


def state_dir() -> str:
    return os.path.join(_home_based("XDG_STATE_HOME", os.path.join(".local", "state")), APP)


def runtime_dir() -> str | None:
    """$XDG_RUNTIME_DIR/mailtoken when that folder is usable as the XDG spec requires, else None."""
    base = os.environ.get("XDG_RUNTIME_DIR", "")
    if not base or not os.path.isabs(base):
        return None
    try:
        st = os.lstat(base)
    except OSError:
        return None
    # Same acceptance rule as platformdirs: a real folder, ours, 0700.
    if not (st.st_mode & 0o170000 == 0o040000 and st.st_uid == os.getuid() and st.st_mode & 0o077 == 0):
        return None
    return os.path.join(base, APP)


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
