"""What the IMAP and POP3 client sides share: SASL PLAIN (RFC 4616), base64 responses, safe reply text."""

from __future__ import annotations

import base64
import binascii


def clean(text: str, default: str = "Authentication failed") -> str:
    """A message for the client and the log: one line of printable text."""
    return "".join(ch if ch.isprintable() else " " for ch in text).strip()[:400] or default


def parse_plain(response: bytes) -> tuple[str, str] | None:
    """[authzid] NUL authcid NUL passwd -> (login name, password); None if malformed.

    A differing authzid names the mailbox to act as (a shared mailbox), so it is the login name."""
    parts = response.split(b"\x00")
    if len(parts) != 3 or not parts[1] or not parts[2]:
        return None
    authzid, authcid, password = (p.decode("utf-8", "replace") for p in parts)
    return (authzid or authcid), password


def decode_b64(text: bytes) -> bytes | None:
    """A SASL response line: base64, or `=` for an empty one (RFC 4959, RFC 5034); None if not base64."""
    text = text.strip()
    if text == b"=":
        return b""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
