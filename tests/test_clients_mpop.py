"""Issue 15: mpop with `passwordeval "mailtoken token ACCOUNT"`, `auth xoauth2` and `keep on`, over POP3S."""

from __future__ import annotations

from tests.conftest import EMAIL, require
from tests.servers import drivers
from tests.servers.more_drivers import mpop_fetch
from tests.servers.stack import LONG_TOKEN, MailStack


def test_mpop_fetches_into_a_maildir_and_keeps_the_mail_on_the_server(mailstack: MailStack) -> None:
    require("mpop")
    env = mailstack.user("mpop")
    login, _ = mpop_fetch(mailstack, env, drivers.contrib("mpop"))
    assert (login.service, login.user, login.method) == ("pop3", EMAIL, "XOAUTH2")


def test_mpop_takes_an_entra_sized_token(mailstack: MailStack) -> None:
    """mpop sends XOAUTH2 as a continuation after `AUTH XOAUTH2`, so 2,500 characters pass POP's line limit."""
    require("mpop")
    env = mailstack.user("mpop-long", LONG_TOKEN)
    assert len(mailstack.token(env)) == LONG_TOKEN
    login, _ = mpop_fetch(mailstack, env, drivers.contrib("mpop"))
    assert login.method == "XOAUTH2"
