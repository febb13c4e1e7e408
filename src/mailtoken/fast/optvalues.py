"""Option values, one rule per kind, shared by the cached path's parser (cached.py) and argparse.

Stdlib only and tiny: the cached path imports it when an option is given. Python's float() and int() accept
more than a person means (`inf`, `nan`, `1e309`, `1_0`, superscript and other non-ASCII digits), and some of
that crashes later (OverflowError in the alarm, ValueError in int()): each rule here takes only plain ASCII
numbers in range.
"""

from __future__ import annotations

# A day: longer than any sign-in code lives; anything above is a typo, and the alarm cannot take infinity.
MAX_SECONDS = 86400.0


def seconds(text: str) -> float:
    """A timeout in seconds: a plain number, more than 0 and at most a day. ValueError (with the reason) if not."""
    try:
        value = float(text) if text.isascii() and text.strip() == text and "_" not in text else -1.0
    except ValueError:
        value = -1.0
    # The range test also refuses nan (every comparison with it is false) and infinity.
    if not (0 < value <= MAX_SECONDS):
        raise ValueError(f"'{text}' is not a number of seconds greater than 0 and at most {MAX_SECONDS:g}")
    return value


def port(text: str) -> int:
    """A TCP port: ASCII digits, 1 to 65535. ValueError (with the reason) if not."""
    if not (text.isascii() and text.isdigit() and 0 < int(text) < 65536):
        raise ValueError(f"'{text}' is not a port number from 1 to 65535")
    return int(text)
