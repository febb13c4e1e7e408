"""`mailtoken config fetchmail|postfix ACCOUNT` (issue 13): blocks for password-only clients, pointed at the
account's [[serve]] listener, never holding a password. fetchmail's own parser reads the block back
(`--configdump`); the real fetchmail fetching through the bridge with it is in test_bridge_imap.py and
test_bridge_pop3.py (tests/servers/drivers.fetchmail_fetch). Postfix cannot run unprivileged here: its block is
checked value by value."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.conftest import Env, require
from tests.servers.bridge import ServeTable

ODD = "o'brien%eu@contoso.com"


def _config(env: Env, *tables: ServeTable, email: str = ODD) -> None:
    env.add_account(authority="https://login.microsoftonline.com/organizations", email=email)
    env.write_config(env.config_path.read_text() + "\n" + "".join(t.toml() for t in tables))


def test_fetchmail_block_reads_back_in_fetchmails_own_parser(env: Env) -> None:
    require("fetchmail")
    table = ServeTable("imap")
    _config(env, table)
    block = env.run("config", "fetchmail", "work")
    assert block.returncode == 0, block.stderr
    assert "DEVICE-PASSWORD" in block.stdout and "mailtoken serve passwd fetchmail --account work" in block.stdout
    rc = env.home / ".fetchmailrc"
    rc.write_text(block.stdout)
    rc.chmod(0o600)
    dump = subprocess.run(
        ["fetchmail", "-f", str(rc), "--configdump"], capture_output=True, text=True, env=env.vars, timeout=30
    )
    assert dump.returncode == 0, dump.stderr
    assert f'"remote":"{ODD}"' in dump.stdout, "the address reaches fetchmail exactly"
    assert '"password":"DEVICE-PASSWORD"' in dump.stdout
    assert '"pollname":"127.0.0.1"' in dump.stdout
    assert f'"service":"{table.port}"' in dump.stdout
    assert '"sslproto":""' in dump.stdout, "a plain local listener: no STARTTLS attempt"


def test_fetchmail_over_local_starttls_trusts_the_bridges_own_certificate(env: Env) -> None:
    _config(env, ServeTable("pop3", local_tls="starttls"))
    block = env.run("config", "fetchmail", "work").stdout
    assert "protocol POP3" in block
    assert re.search(r'sslproto TLS1\.2\+ sslcertck sslcertfile ".*/serve/cert\.pem"', block), block


@pytest.mark.parametrize(
    "local_tls, lines",
    [
        (None, ["smtp_tls_security_level = none"]),
        ("starttls", ["smtp_tls_security_level = encrypt", "smtp_tls_CAfile = "]),
        ("implicit", ["smtp_tls_wrappermode = yes", "smtp_tls_security_level = encrypt"]),
    ],
)
def test_postfix_block_relays_through_the_smtp_listener(env: Env, local_tls: str | None, lines: list[str]) -> None:
    table = ServeTable("smtp", local_tls=local_tls)
    _config(env, table, email="me@contoso.com")
    block = env.run("config", "postfix", "work")
    assert block.returncode == 0, block.stderr
    text = block.stdout
    assert f"relayhost = [127.0.0.1]:{table.port}\n" in text
    assert "smtp_sasl_auth_enable = yes\n" in text and "smtp_sasl_security_options = noanonymous\n" in text
    assert f"[127.0.0.1]:{table.port} me@contoso.com:DEVICE-PASSWORD\n" in text
    for line in lines:
        assert line in text


def test_a_client_without_a_listener_for_it_is_told_which_table_to_add(env: Env) -> None:
    _config(env, ServeTable("smtp"), email="me@contoso.com")
    result = env.run("config", "fetchmail", "work")
    assert result.returncode == 78
    assert "no [[serve]] imap or pop3 listener for account 'work'" in result.stderr


def test_postfix_refuses_an_address_its_tables_cannot_hold(env: Env) -> None:
    _config(env, ServeTable("smtp"), email='\\"a,b\\"@contoso.com')  # "a,b"@contoso.com, escaped for TOML
    result = env.run("config", "postfix", "work")
    assert result.returncode == 78, result.stderr
    assert "email" in result.stderr and "Postfix" in result.stderr
