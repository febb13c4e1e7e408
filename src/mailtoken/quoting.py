"""One quoting function per syntax mailtoken writes into: every value pasted into another program's config.

Each function returns VALUE as a single token of that syntax which the program reads back as exactly VALUE,
with nothing expanded or run. tests/test_quoting.py feeds hostile values through each into the real parser
(sh, mutt, neomutt, msmtp, mpop, ConfigParser, imapfilter's Lua, systemd-analyze). No syntax here can hold
a line break in a value, and none of them needs to: a control character is refused, never escaped.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable

from .address import unsafe_char


def _checked(value: str) -> str:
    bad = unsafe_char(value)
    if bad:
        raise ValueError(f"cannot write {bad} into a config file")
    return value


def sh(value: str) -> str:
    """POSIX sh (and s-nail, whose quoting follows sh): single quotes, with ' written as '\\''."""
    return shlex.quote(_checked(value))


def sh_always(value: str) -> str:
    """POSIX sh, always in single quotes (for values a reader should see as one quoted word)."""
    return "'" + _checked(value).replace("'", "'\\''") + "'"


def sh_join(argv: Iterable[str]) -> str:
    """A command line for `sh -c`: what msmtp/mpop passwordeval, mbsync PassCmd, mutt, aerc and popen run."""
    return " ".join(sh(arg) for arg in argv)


def muttrc(value: str) -> str:
    """mutt and neomutt: single quotes stop backtick and $ expansion; ' is written '\\'' (backslash outside)."""
    return "'" + _checked(value).replace("'", "'\\''") + "'"


def ini_interpolated(value: str) -> str:
    """Python's ConfigParser with BasicInterpolation (offlineimap3): % starts an interpolation, %% is a %."""
    value = _checked(value)
    if value != value.strip():
        raise ValueError("ConfigParser strips a value's leading and trailing blanks")
    return value.replace("%", "%%")


def ini_raw(value: str) -> str:
    """RawConfigParser (getmail6): nothing is special inside a value; only its ends are stripped."""
    value = _checked(value)
    if value != value.strip():
        raise ValueError("ConfigParser strips a value's leading and trailing blanks")
    return value


def msmtprc(value: str) -> str:
    """msmtprc and mpoprc: an argument is the rest of the line; one pair of enclosing double quotes is removed
    and nothing inside is escaped, so quotes are added only when the ends need protecting."""
    value = _checked(value)
    if not value or value[0] in ' \t"' or value[-1] in ' \t"':
        return f'"{value}"'
    return value


def fetchmailrc(value: str) -> str:
    """fetchmailrc: a double-quoted string, with \\ and \" escaped by a backslash (fetchmail(1), "the run
    control file": C-like escapes in quoted strings)."""
    return '"' + _checked(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def postfix_value(value: str) -> str:
    """A Postfix main.cf value or a sasl_passwd key/value: no quoting exists there, so a blank, a comma or a
    # (which Postfix reads as a separator or a comment) is refused rather than written."""
    value = _checked(value)
    if not value or any(c in value for c in " \t,#"):
        raise ValueError("Postfix's tables have no quoting for blanks, commas or #")
    return value


def mbsyncrc(value: str) -> str:
    """mbsync: double quotes, with \\ and \" escaped by a backslash (isync's man page, "configuration"),
    when a blank, a quote, a backslash or a # needs them."""
    value = _checked(value)
    if value and not any(c in value for c in ' \t"\\#'):
        return value
    return '"' + _checked(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def aerc(value: str) -> str:
    """aerc's accounts.conf (go-ini, default options): an unquoted value ends at its first # or ; (even
    inside double quotes), a trailing \\ continues it, and one pair of surrounding quotes is dropped. A value
    in backquotes is taken as is, up to the last backquote on the line."""
    value = _checked(value)
    plain = value == value.strip() and not any(c in value for c in "#;") and not value.endswith("\\")
    if plain and value and value[0] not in "\"'`" and value[-1] not in "\"'`":
        return value
    return f"`{value}`"


def python(value: str) -> str:
    """A Python string literal (getmail's tuples, offlineimap's _eval lines are evaluated as Python).

    A JSON string is one (its escapes are a subset of Python's), in the double quotes the docs show."""
    import json

    return json.dumps(_checked(value), ensure_ascii=False)


def lua(value: str) -> str:
    """A Lua string literal (imapfilter's config): double quotes, \\ and \" escaped; UTF-8 passes as bytes."""
    return '"' + _checked(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _systemd(value: str) -> str:
    # systemd.syntax(7): % starts a specifier; inside double quotes C escapes apply.
    value = _checked(value).replace("%", "%%")
    if value and not any(c in value for c in " \t\"'\\;"):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def systemd_exec_path(path: str) -> str:
    """ExecStart='s program. systemd takes it literally (no $ expansion: `$$` would stay `$$`, as
    systemd-analyze verify shows) and refuses names with quotes or backslashes ("Executable name contains
    special characters"). Only the arguments after it expand $NAME; mailtoken writes none from outside."""
    if any(c in path for c in "\"'\\"):
        raise ValueError("systemd cannot run a program whose path holds a quote or a backslash")
    return _systemd(path)


def systemd_env(assignment: str) -> str:
    """An Environment= assignment: quoted whole; systemd.exec(5): "$" has no special meaning there."""
    return _systemd(assignment)
