"""Issue 15: s-nail (mailx) with its `oauthbearer` (which sends XOAUTH2) and the token set by a macro."""

from __future__ import annotations

from tests.conftest import EMAIL, require
from tests.servers import drivers
from tests.servers.more_drivers import snail_args, snail_env, snail_list, snail_send
from tests.servers.stack import LONG_TOKEN, MailStack


def test_s_nail_sends_through_submission(mailstack: MailStack) -> None:
    require("s-nail")
    env = mailstack.user("s-nail")
    login = snail_send(mailstack, env, drivers.contrib("s-nail"))
    assert (login.service, login.user, login.method) == ("submission", EMAIL, "XOAUTH2")


def test_s_nail_lists_inbox_in_batch_mode(mailstack: MailStack) -> None:
    require("s-nail")
    env = mailstack.user("s-nail")
    login, _ = snail_list(mailstack, env, drivers.contrib("s-nail"))
    assert (login.service, login.user, login.method) == ("imap", EMAIL, "XOAUTH2")


def test_s_nail_imap_takes_an_entra_sized_token(mailstack: MailStack) -> None:
    """IMAP AUTHENTICATE sends the token on a continuation line. (s-nail puts it on the SMTP AUTH line itself,
    which Dovecot's submission refuses over 1 KB; Office 365 takes it: see the README.)"""
    require("s-nail")
    env = mailstack.user("s-nail-long", LONG_TOKEN)
    login, _ = snail_list(mailstack, env, drivers.contrib("s-nail"))
    assert login.method == "XOAUTH2"


def test_s_nail_never_logs_in_with_an_empty_password_when_sign_in_is_needed(mailstack: MailStack) -> None:
    """The account was never signed in, so `mailtoken token` exits 77: s-nail must stop with that status,
    say why, and not even connect (without the macro's check it logs in with an empty password)."""
    require("s-nail")
    env = mailstack.user("s-nail-fail")
    env.add_account("nosignin", authority=mailstack.fake.authority())
    block = drivers.contrib("s-nail").replace("mailtoken token work", "mailtoken token nosignin")
    rc = drivers.write(env.home / ".mailrc", drivers.localize(block, mailstack))
    mark = mailstack.server.mark()
    sends = mailstack.run(
        env,
        [*snail_args(mailstack, "work"), "-s", drivers.unique("never sent"), drivers.RCPT],
        input="Must not be sent.\n",
        extra_env=snail_env(env, rc),
    )
    lists = mailstack.run(
        env, [*snail_args(mailstack, "work"), "-#"], input="file +INBOX\nheaders\n", extra_env=snail_env(env, rc)
    )
    for run in (sends, lists):
        assert run.returncode == 77, str(run)
        assert "mailtoken: no token for work; not logging in" in run.stderr, str(run)
        assert "sign in" in run.stderr.lower() or "login" in run.stderr.lower(), str(run)
    # Dovecot logs every connection, even one that never tried to authenticate.
    new = [line for line in mailstack.server.log_since(mark).splitlines() if "-login:" in line]
    assert new == [], new
