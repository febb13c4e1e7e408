"""Messages for the human on stderr; stdout is reserved for the secret a command was asked for."""

from __future__ import annotations

import sys

verbose = False


def say(message: str) -> None:
    print(f"mailtoken: {message}", file=sys.stderr, flush=True)


def debug(message: str) -> None:
    if verbose:
        print(f"mailtoken: debug: {message}", file=sys.stderr, flush=True)
