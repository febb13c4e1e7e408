"""Email addresses as the config may hold them: RFC 5321 mailboxes with RFC 6531 UTF-8, nothing invisible.

Any local part SMTP allows is accepted (o'brien, sales%eu, "a b"), because the generated client configs quote
every value for their own syntax (quoting.py). What is refused is what no mail system needs and what makes a
value lie on screen or break a line: control characters (C0, DEL, C1 such as U+0085 NEL and U+009B CSI),
format characters (bidi overrides such as U+202E, zero-width joiners), line and paragraph separators,
surrogates and unassigned code points.
"""

from __future__ import annotations

import re
import unicodedata

# RFC 5322 atext, which RFC 5321's Dot-string uses; RFC 6531 adds any UTF-8 non-ASCII character.
_ATEXT = r"A-Za-z0-9!#$%&'*+/=?^_`{|}~-"
_ATOM = rf"[\u0080-\U0010ffff{_ATEXT}]+"  # the range first: _ATEXT ends with a literal -
_DOT_STRING = re.compile(rf"^{_ATOM}(\.{_ATOM})*$")
# RFC 5321 Quoted-string: qtextSMTP (%d32-33 / %d35-91 / %d93-126) or a quoted-pair (backslash, %d32-126).
_QUOTED = re.compile(r'^"([\x20\x21\x23-\x5b\x5d-\x7e\u0080-\U0010ffff]|\\[\x20-\x7e])*"$')
_LABEL = re.compile(r"^[A-Za-z0-9\u0080-\U0010ffff]([A-Za-z0-9\u0080-\U0010ffff-]*[A-Za-z0-9\u0080-\U0010ffff])?$")
MAX_LENGTH = 254  # RFC 5321 path limit (256) less the angle brackets


def unsafe_char(value: str) -> str | None:
    """The first character that must not reach a config file or a terminal, as 'U+XXXX (NAME)'; else None."""
    for ch in value:
        if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Cn", "Zl", "Zp"):
            name = unicodedata.name(ch, "a control character" if unicodedata.category(ch) == "Cc" else "unnamed")
            return f"U+{ord(ch):04X} ({name})"
    return None


def shown(value: str) -> str:
    """VALUE for an error message: anything unsafe to print is written as an escape, never as itself."""
    return "".join(ch if unsafe_char(ch) is None else f"\\u{ord(ch):04x}" for ch in value)


def problem(value: str) -> str | None:
    """Why VALUE is not a mailbox address we accept, or None when it is one."""
    bad = unsafe_char(value)
    if bad:
        return f"holds {bad}, a control, bidi or invisible character"
    if len(value) > MAX_LENGTH:
        return f"longer than {MAX_LENGTH} characters"
    local, at, domain = value.rpartition("@")
    if not at or not local:
        return "needs a local part, an @ and a domain"
    if len(local.encode()) > 64:
        return "the part before the @ is longer than 64 bytes"
    if not (_DOT_STRING.match(local) or _QUOTED.match(local)):
        return (
            'the part before the @ needs quotes for spaces and ( ) < > [ ] , ; : \\ " '
            'or a misplaced dot, like "john smith"@example.com'
        )
    labels = domain.split(".")
    if len(labels) < 2 or not all(_LABEL.match(label) and len(label) <= 63 for label in labels):
        return "the domain must be a host name with a dot, like example.com"
    return None
