"""Issue 4: getmail6 with `use_xoauth2 = True` and `password_command = ("mailtoken", "token", ACCOUNT)`."""

from __future__ import annotations

from tests.conftest import EMAIL, require
from tests.servers import drivers
from tests.servers.stack import MailStack


def test_getmail_fetches_inbox(mailstack: MailStack) -> None:
    require("getmail")
    env = mailstack.user("getmail")
    login = drivers.getmail_fetch(mailstack, env, drivers.contrib("getmail6"))
    assert login.method == "XOAUTH2" and login.user == EMAIL
