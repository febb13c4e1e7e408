"""Every location mailtoken uses, from platformdirs (with MAILTOKEN_CONFIG overriding the config file).

Where the cached path runs (Linux/BSD, macOS) the places come from locations.py, the stdlib copy of platformdirs'
rules the hot path uses, so the two can never disagree; tests/test_locations.py proves that copy matches
platformdirs. Elsewhere, platformdirs decides.
"""

from __future__ import annotations

import os

from .fast import locations

APP = locations.APP


def config_path() -> str:
    override = os.environ.get("MAILTOKEN_CONFIG")
    if override:
        return override
    if locations.fast_supported():
        return locations.config_path()
    import platformdirs

    return os.path.join(platformdirs.user_config_dir(APP, appauthor=False), "config.toml")


def state_dir() -> str:
    if locations.fast_supported():
        return locations.state_dir()
    import platformdirs

    return platformdirs.user_state_dir(APP, appauthor=False)


def record_dir() -> str:
    if locations.fast_supported():
        # Must be where the cached path (fast/cached.py) looks.
        return locations.record_dir()
    return os.path.join(state_dir(), "run")


def grants_dir() -> str:
    return os.path.join(state_dir(), "grants")


def accounts_dir() -> str:
    return os.path.join(state_dir(), "accounts")


def locks_dir() -> str:
    return os.path.join(state_dir(), "locks")
