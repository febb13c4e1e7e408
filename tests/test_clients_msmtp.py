"""Issue 4: msmtp with `passwordeval mailtoken token ACCOUNT`, XOAUTH2 and OAUTHBEARER, through Dovecot's submission."""

from __future__ import annotations

from tests.conftest import EMAIL, require
from tests.servers import drivers
from tests.servers.stack import LONG_TOKEN, MailStack


def test_msmtp_xoauth2(mailstack: MailStack) -> None:
    require("msmtp")
    env = mailstack.user("msmtp")
    login = drivers.msmtp_send(mailstack, env, (drivers.CONTRIB / "msmtp" / "msmtprc").read_text())
    assert login.method == "XOAUTH2" and login.user == EMAIL


def test_msmtp_oauthbearer(mailstack: MailStack) -> None:
    require("msmtp")
    env = mailstack.user("msmtp")
    rc = (drivers.CONTRIB / "msmtp" / "msmtprc-oauthbearer").read_text()
    login = drivers.msmtp_send(mailstack, env, rc, method="OAUTHBEARER")
    assert login.method == "OAUTHBEARER"


def test_msmtp_xoauth2_with_an_entra_sized_token(mailstack: MailStack) -> None:
    """msmtp sends the XOAUTH2 response on its own line, so a 2,500-character token passes Dovecot's 1 KB limit."""
    require("msmtp")
    env = mailstack.user("msmtp-long", LONG_TOKEN)
    login = drivers.msmtp_send(mailstack, env, (drivers.CONTRIB / "msmtp" / "msmtprc").read_text())
    assert login.method == "XOAUTH2"
