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

# When this process started (as near as the cached path can tell): every command's --timeout counts from here,
# so a wait for another process's refresh and the refresh itself share one deadline (deadline.py).
STARTED = time.monotonic()

_COMMANDS = ("token", "xoauth2", "oauthbearer")
# The --timeout of every command that must never hang a mail client: the one default (cli.py, deadline.py,
# offlineimap.py use this).
DEFAULT_TIMEOUT = 30.0


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
        if name in ("--port", "--timeout"):
            from . import optvalues  # here, not at the top: most calls have no option, and pay nothing

            try:
                # Anything odd is the full CLI's to explain (a usage error), never a crash here.
                (optvalues.port if name == "--port" else optvalues.seconds)(value)
            except ValueError:
                return None
        opts[name[2:]] = value
    return opts


def fresh_record(account: str) -> record.Record | None:
    """The account's record if it may be served now: fresh, and made under the config file as it is."""
    try:
        rec = record.read(record.path_for(locations.record_dir(), account))
    except OSError:
        return None
    if rec is None or not rec.fresh(time.time(), record.config_stamp(locations.config_path())):
        return None
    return rec


# Locks this process claimed on the cached path, by account; lock.account_lock() takes them over.
_CLAIMED: dict[str, int] = {}


def take_claim(account: str) -> int | None:
    """The account's lock file descriptor if the cached path of this process holds its refresh lock; the
    caller now owns it (and closes it to release the lock)."""
    return _CLAIMED.pop(account, None)


def _claim_or_wait(account: str, timeout: float) -> str:
    """Claim the account's refresh lock, or wait for the process that holds it.

    Returns "claimed" (this process holds the lock: it goes on to refresh), "waited" (another process held it
    and has finished: the record is worth another look) or "none" (no lock file yet, or the wait timed out).
    Claiming here, before the full CLI is imported, makes the other callers of a storm wait for one refresh
    at the cost of a sleep instead of each importing msal & co. The refresher's flock is exclusive; a
    shared one is granted to every waiter as soon as it ends. Polling keeps `signal` off this path.
    """
    import fcntl

    try:
        fd = os.open(locations.lock_path(account), os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return "none"
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pass
    else:
        _CLAIMED[account] = fd
        return "claimed"
    try:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            time.sleep(0.01)
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                return "waited"
            except BlockingIOError:
                pass
        return "none"
    finally:
        os.close(fd)  # also drops our shared lock


def serve(argv: list[str]) -> bool:
    """Print the answer and return True, or return False to let the full CLI handle the call."""
    if not locations.fast_supported():
        return False
    opts = _parse(argv)
    if opts is None:
        return False
    rec = fresh_record(opts["account"])
    if rec is None:
        # Stale: claim the refresh for this process, or wait for the one refreshing right now rather than start
        # the full CLI; in a storm of parallel callers that saves each of them ~0.2 s of CPU.
        left = float(opts.get("timeout", DEFAULT_TIMEOUT)) - (time.monotonic() - STARTED)
        if _claim_or_wait(opts["account"], left) != "waited":
            return False
        rec = fresh_record(opts["account"])
        if rec is None:
            return False
    port = int(opts["port"]) if "port" in opts else None
    user = opts.get("user", rec.user)
    emit(secret(opts["command"], rec.token, user, raw="raw" in opts, host=opts.get("host"), port=port))
    return True


def secret(command: str, token: str, user: str, *, raw: bool, host: str | None, port: int | None) -> str:
    """What `token`, `xoauth2` and `oauthbearer` print for this token (the cached path's and the CLI's)."""
    if command == "token":
        return token
    if command == "xoauth2":
        return sasl.xoauth2_raw(user, token) if raw else sasl.xoauth2(user, token)
    encode = sasl.oauthbearer_raw if raw else sasl.oauthbearer
    return encode(user, token, host, port)


def emit(text: str) -> None:
    """One line on stdout; a reader that went away (a client closing the pipe) is no error and no traceback."""
    try:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
