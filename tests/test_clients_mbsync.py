"""Issue 4: isync/mbsync with `PassCmd "mailtoken token ACCOUNT"` and `AuthMechs XOAUTH2` (Cyrus SASL plugin)."""

from __future__ import annotations

import subprocess

from tests.conftest import EMAIL, IN_CI, require
from tests.servers import drivers
from tests.servers.stack import LONG_TOKEN, MailStack

PLUGINVIEWER = "/usr/sbin/saslpluginviewer"


def _require_xoauth2_plugin() -> None:
    """mbsync can only do XOAUTH2 through Cyrus SASL's plugin (Debian: libsasl2-modules-kdexoauth2)."""
    require("mbsync", PLUGINVIEWER)
    out = subprocess.run([PLUGINVIEWER, "-c", "-m", "XOAUTH2"], capture_output=True, text=True, timeout=30).stdout
    if "XOAUTH2" not in out.split("matching your criteria are:")[-1]:
        message = "Cyrus SASL offers no XOAUTH2 client plugin: install libsasl2-modules-kdexoauth2"
        assert not IN_CI, message
        import pytest

        pytest.skip(message)


def test_mbsync_syncs_inbox(mailstack: MailStack) -> None:
    _require_xoauth2_plugin()
    env = mailstack.user("mbsync")
    login = drivers.mbsync_sync(mailstack, env, drivers.contrib("mbsync"))
    assert login.method == "XOAUTH2" and login.user == EMAIL


def test_mbsync_with_an_entra_sized_token(mailstack: MailStack) -> None:
    """A 2,500-character token: PassCmd reads up to 8 KB, the plugin and Dovecot's continuation take it."""
    _require_xoauth2_plugin()
    env = mailstack.user("mbsync-long", LONG_TOKEN)
    assert len(mailstack.token(env)) == LONG_TOKEN
    login = drivers.mbsync_sync(mailstack, env, drivers.contrib("mbsync"))
    assert login.method == "XOAUTH2"
