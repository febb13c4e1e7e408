"""The cached path: print a still-fresh token from the record with the stdlib alone.

Clients run the helper on every connection, so this must cost no more than starting Python. Anything unusual
(an option it does not know, no record, a stale one, an unsafe file) returns None and the full CLI takes over,
which also explains any problem.
"""

from __future__ import annotations

import os
import sys
import time

from . import locations, record, sasl

_COMMANDS = ("token", "xoauth2", "oauthbearer")


def _parse(argv: list[str]) -> dict[str, str] | None:
    if len(argv) < 2 or argv[0] not in _COMMANDS or not locations.valid_account_name(argv[1]):
        return None
    opts = {"command": argv[0], "account": argv[1]}
    rest = argv[2:]
    while rest:
        arg = rest.pop(0)
        if arg == "--raw" and argv[0] != "token":
            opts["raw"] = "1"
            continue
        name, eq, value = arg.partition("=")
        if name not in ("--user", "--host", "--port", "--timeout") or (name != "--timeout" and argv[0] == "token"):
            return None
        if not eq:
            if not rest:
                return None
            value = rest.pop(0)
        if name == "--port" and not value.isdigit():
            return None
        opts[name[2:]] = value
    return opts


def serve(argv: list[str]) -> bool:
    """Print the answer and return True, or return False to let the full CLI handle the call."""
    if not locations.xdg_supported():
        return False
    opts = _parse(argv)
    if opts is None:
        return False
    try:
        rec = record.read(record.path_for(locations.record_dir(), opts["account"]))
    except OSError:
        return False
    if rec is None or not rec.fresh(time.time(), record.config_stamp(locations.config_path())):
        return False
    command = opts["command"]
    if command == "token":
        out = rec.token
    else:
        user = opts.get("user", rec.user)
        if command == "xoauth2":
            out = sasl.xoauth2_raw(user, rec.token) if "raw" in opts else sasl.xoauth2(user, rec.token)
        else:
            port = int(opts["port"]) if "port" in opts else None
            encode = sasl.oauthbearer_raw if "raw" in opts else sasl.oauthbearer
            out = encode(user, rec.token, opts.get("host"), port)
    try:
        sys.stdout.write(out + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        # The client went away; nothing useful to say, and no traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return True
