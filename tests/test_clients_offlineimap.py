"""Issue 4: offlineimap3 with mailtoken's hook as `pythonfile` and `oauth2_access_token_eval = fresh_token(...)`."""

from __future__ import annotations

import signal
import subprocess
import sys

from tests.conftest import EMAIL, require
from tests.servers import drivers
from tests.servers.stack import MailStack, wait_until


def test_offlineimap_syncs_inbox(mailstack: MailStack) -> None:
    require("offlineimap")
    env = mailstack.user("offlineimap")
    login = drivers.offlineimap_sync(mailstack, env, drivers.contrib("offlineimap3"))
    assert login.method == "XOAUTH2" and login.user == EMAIL


def test_offlineimap_refreshes_a_stale_token_through_the_hook(mailstack: MailStack) -> None:
    """offlineimap's own Python cannot import msal here: the hook falls back to the mailtoken command."""
    require("offlineimap")
    env = mailstack.user("offlineimap")
    before = mailstack.token(env)
    env.age_record()
    refreshes = mailstack.fake.counts["refresh_token"]
    drivers.offlineimap_sync(mailstack, env, drivers.contrib("offlineimap3"))
    assert mailstack.fake.counts["refresh_token"] == refreshes + 1
    assert mailstack.token(env) != before


def test_fresh_token_keeps_autorefresh_mode_working(mailstack: MailStack) -> None:
    """offlineimap3 reads `_eval` once per process; fresh_token() makes each later login ask mailtoken again."""
    require("offlineimap")
    env = mailstack.user("offlineimap-auto")
    rc = drivers.write(env.home / ".offlineimaprc", drivers.localize(drivers.contrib("offlineimap3"), mailstack))
    first = mailstack.token(env)
    mark = mailstack.server.mark()
    mailstack.fake.reset_counts()

    def introspected() -> list[str]:
        return [r["form"].get("token", "") for r in mailstack.fake.requests if r["path"] == "/introspect"]

    # autorefresh under a second rounds to no sleep at all (offlineimap sleeps in whole 10 s steps otherwise):
    # sync after sync in one process, the way a long-running offlineimap lives through token lifetimes.
    proc = subprocess.Popen(
        ["offlineimap", "-u", "basic", "-c", str(rc), "-k", "Account_work:autorefresh=0.001"],
        env=env.vars,
        cwd=env.home,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_until(lambda: len(mailstack.server.logins(mark)) >= 1, 30, "offlineimap's first login")
        env.age_record()  # from now on mailtoken refreshes: a later login must bring the new token
        wait_until(lambda: any(t != first for t in introspected()), 30, "a login with a refreshed token")
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate(timeout=10)
    tokens = introspected()
    assert tokens[0] == first, out
    new = [t for t in tokens if t != first]
    assert new and all(mailstack.fake.is_valid_access_token(t) for t in new), out
    assert len(mailstack.server.logins(mark)) >= 2


def test_hook_refreshes_in_process_when_the_library_imports(mailstack: MailStack) -> None:
    """In a Python that has mailtoken's dependencies, token() refreshes through the library, not a subprocess."""
    env = mailstack.user("offlineimap-lib")
    env.age_record()
    code = (
        "import subprocess, mailtoken.offlineimap as h\n"
        "def no(*a, **k): raise AssertionError('ran a subprocess')\n"
        "subprocess.run = no\n"
        "print(h.token('work'))\n"
        "print(str(h.fresh_token('work')) == h.token('work'), repr(h.fresh_token('work')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], env=env.vars, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    new, check = result.stdout.splitlines()
    assert mailstack.fake.is_valid_access_token(new)
    assert check == "True <mailtoken access token for 'work'>"
    assert new == mailstack.token(env)


def test_hook_reports_mailtoken_errors(mailstack: MailStack) -> None:
    env = mailstack.user("offlineimap-lib")
    code = "import mailtoken.offlineimap as h\ntry:\n    h.token('nosuch')\nexcept RuntimeError as e:\n    print(e)\n"
    result = subprocess.run([sys.executable, "-c", code], env=env.vars, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("mailtoken: no account 'nosuch'"), result.stdout
