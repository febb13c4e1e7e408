"""Issue 4: curl with the bearer token fed on stdin (`--config -`), never on its command line."""

from __future__ import annotations

from tests.conftest import EMAIL, require
from tests.servers import drivers
from tests.servers.stack import MailStack


def test_curl_imap_pop_smtp(mailstack: MailStack) -> None:
    require("curl")
    env = mailstack.user("curl")
    logins = drivers.curl_all(mailstack, env, drivers.contrib("curl"))
    assert {login.service for login in logins.values()} == {"imap", "pop3", "submission"}
    # curl 7.88 prefers OAUTHBEARER when the server offers it (Dovecot does; Exchange Online offers XOAUTH2 only).
    assert all(login.method in ("OAUTHBEARER", "XOAUTH2") and login.user == EMAIL for login in logins.values())
