"""Issue 4: aerc with `source-cred-cmd`/`outgoing-cred-cmd = mailtoken token ACCOUNT`, driven on a tmux terminal."""

from __future__ import annotations

from tests.conftest import EMAIL, require
from tests.servers import drivers
from tests.servers.stack import MailStack


def test_aerc_opens_inbox_and_sends(mailstack: MailStack) -> None:
    require("aerc", "tmux")
    env = mailstack.user("aerc")
    imap, smtp = drivers.aerc_open_and_send(mailstack, env, drivers.contrib("aerc"))
    assert (imap.method, smtp.method) == ("XOAUTH2", "XOAUTH2")
    assert imap.user == smtp.user == EMAIL
