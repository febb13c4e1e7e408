"""Issue 15: imapfilter with `oauth2 = mailtoken_xoauth2(...)`, a real filter, and a daemon across token expiry."""

from __future__ import annotations

import os
import signal

from tests.conftest import EMAIL, require
from tests.servers import drivers
from tests.servers.more_drivers import imapfilter_args, imapfilter_config, imapfilter_filter, pid_from
from tests.servers.stack import LONG_TOKEN, MailStack, wait_until


def test_imapfilter_counts_inbox_and_copies_it_into_sent(mailstack: MailStack) -> None:
    require("imapfilter")
    env = mailstack.user("imapfilter")
    login, _ = imapfilter_filter(mailstack, env, drivers.contrib("imapfilter"))
    assert (login.service, login.user, login.method) == ("imap", EMAIL, "XOAUTH2")


def test_imapfilter_takes_an_entra_sized_token(mailstack: MailStack) -> None:
    require("imapfilter")
    env = mailstack.user("imapfilter-long", LONG_TOKEN)
    login, _ = imapfilter_filter(mailstack, env, drivers.contrib("imapfilter"))
    assert login.method == "XOAUTH2"


DAEMON = """
local function rules(account)
  local count = #account.INBOX:select_all()
  local log = io.open({log}, "a")
  log:write(os.time() .. " " .. count .. "\\n")
  log:close()
end
mailtoken_daemon(1, mailtoken_work, rules)
"""


def test_imapfilter_daemon_logs_in_with_a_new_token_after_the_first_one_expired(mailstack: MailStack) -> None:
    """become_daemon runs the rules every second; tokens live 4 s. Every round must log in with a token
    mailtoken hands out then, so rounds keep working long after the first token died."""
    require("imapfilter")
    lifetime = 4
    mailstack.fake.set(token_lifetime=lifetime)
    try:
        env = mailstack.user("imapfilter-daemon")
        first = mailstack.token(env)
        first_exp = mailstack.fake.issued_access_tokens[first]["exp"]
        rounds = env.home / "rounds.log"
        config = imapfilter_config(
            mailstack, env, drivers.contrib("imapfilter"), DAEMON.replace("{log}", f'"{rounds}"')
        )
        pidfile = env.home / "imapfilter.pid"
        mailstack.seed()
        mark = mailstack.server.mark()
        run = mailstack.run(env, [*imapfilter_args(mailstack, config), "-p", str(pidfile)])
        assert run.returncode == 0, str(run)  # the parent returns once the daemon is forked
        pid = pid_from(pidfile)
        try:
            # Rounds that began a full token lifetime after the first token died.
            wait_until(
                lambda: (
                    rounds.exists()
                    and any(int(line.split()[0]) > first_exp + lifetime for line in rounds.read_text().splitlines())
                ),
                40,
                "an imapfilter round after two token lifetimes",
            )
        finally:
            os.kill(pid, signal.SIGTERM)
            wait_until(lambda: not _alive(pid), 10, "imapfilter to stop")
    finally:
        mailstack.fake.set(token_lifetime=3600)
    introspected = [
        (r["time"], r["form"].get("token", "")) for r in mailstack.fake.requests if r["path"] == "/introspect"
    ]
    late = [tok for when, tok in introspected if when > first_exp]
    assert late, "no login asked for a token after the first one expired"
    assert first not in late, "a login after the first token's expiry reused it"
    assert len(set(late)) >= 2, "the daemon did not fetch a new token as they expired"
    logins = mailstack.server.logins(mark)
    assert len(logins) >= 6 and all(login.method == "XOAUTH2" for login in logins)
    assert not mailstack.server.failed_logins(mark)
    counts = [int(line.split()[1]) for line in rounds.read_text().splitlines()]
    assert counts and min(counts) >= 1


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False
