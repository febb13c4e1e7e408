"""Issue 4: neomutt and mutt with `*_oauth_refresh_command = "mailtoken token ACCOUNT"` and xoauth2.

Opening a mailbox needs a terminal (tmux); sending runs in batch mode, as scripts do.
"""

from __future__ import annotations

import subprocess

from tests.conftest import EMAIL, require
from tests.servers import drivers
from tests.servers.stack import LONG_TOKEN, MailStack


def test_neomutt_opens_inbox(mailstack: MailStack) -> None:
    require("neomutt", "tmux")
    env = mailstack.user("neomutt")
    login = drivers.mutt_open(mailstack, env, "neomutt", drivers.contrib("neomutt"))
    assert login.method == "XOAUTH2" and login.user == EMAIL


def test_neomutt_sends(mailstack: MailStack) -> None:
    require("neomutt")
    env = mailstack.user("neomutt")
    assert drivers.mutt_send(mailstack, env, "neomutt", drivers.contrib("neomutt")).method == "XOAUTH2"


def test_neomutt_imap_takes_an_entra_sized_token(mailstack: MailStack) -> None:
    """NeoMutt's XOAUTH2 buffer holds about 4 KB (its OAUTHBEARER one only about 510 characters)."""
    require("neomutt", "tmux")
    env = mailstack.user("neomutt-long", LONG_TOKEN)
    assert drivers.mutt_open(mailstack, env, "neomutt", drivers.contrib("neomutt")).method == "XOAUTH2"


def test_neomutt_has_no_xoauth2_for_pop() -> None:
    """Pins the limitation contrib/neomutt documents: when Debian's NeoMutt gains it, the docs must change."""
    require("neomutt")
    result = subprocess.run(
        ["neomutt", "-n", "-F", "/dev/null", "-e", 'set pop_authenticators="xoauth2"', "-Q", "pop_authenticators"],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    assert "xoauth2 is not a valid authenticator" in result.stderr


def test_mutt_opens_inbox(mailstack: MailStack) -> None:
    require("mutt", "tmux")
    env = mailstack.user("mutt")
    assert drivers.mutt_open(mailstack, env, "mutt", drivers.contrib("mutt")).method == "XOAUTH2"


def test_mutt_opens_pop_mailbox(mailstack: MailStack) -> None:
    require("mutt", "tmux")
    env = mailstack.user("mutt")
    assert drivers.mutt_open(mailstack, env, "mutt", drivers.contrib("mutt"), pop=True).method == "XOAUTH2"


def test_mutt_sends(mailstack: MailStack) -> None:
    require("mutt")
    env = mailstack.user("mutt")
    assert drivers.mutt_send(mailstack, env, "mutt", drivers.contrib("mutt")).method == "XOAUTH2"


def test_mutt_pop_and_smtp_take_an_entra_sized_token(mailstack: MailStack) -> None:
    """mutt sends XOAUTH2 on a continuation line for POP and SMTP, so 2,500 characters pass Dovecot's limits."""
    require("mutt", "tmux")
    env = mailstack.user("mutt-long", LONG_TOKEN)
    assert drivers.mutt_open(mailstack, env, "mutt", drivers.contrib("mutt"), pop=True).method == "XOAUTH2"
    assert drivers.mutt_send(mailstack, env, "mutt", drivers.contrib("mutt")).method == "XOAUTH2"
