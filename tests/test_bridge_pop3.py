"""Issue 13: password-only POP3 clients through `mailtoken serve` to the real Dovecot (XOAUTH2 only, TLS upstream).

Each test asserts the effect (the seeded message retrieved) and Dovecot's `Login: user=<...>, method=XOAUTH2`;
the last ones run the bridge against the scripted Exchange, which refuses the one-line AUTH XOAUTH2.
"""

from __future__ import annotations

import base64
import poplib
import re
import socket
import ssl
from collections.abc import Iterator

import pytest

from tests.conftest import EMAIL, Env, require
from tests.servers import drivers
from tests.servers.bridge import BridgeProcess, ServeTable
from tests.servers.exchange import FakeExchange, Scenario
from tests.servers.stack import MailStack


@pytest.fixture(scope="module")
def user(mailstack: MailStack) -> Env:
    return mailstack.user("bridge-pop3")


def _table(stack: MailStack, **kw) -> ServeTable:
    return ServeTable("pop3", upstream=f"127.0.0.1:{stack.server.ports.pop3s}", upstream_tls="implicit", **kw)


@pytest.fixture(scope="module")
def bridge(mailstack: MailStack, user: Env) -> Iterator[BridgeProcess]:
    with BridgeProcess(user, [_table(mailstack)]) as running:
        yield running


def _port(bridge: BridgeProcess) -> int:
    return bridge.tables[0].port


def _subjects(pop: poplib.POP3) -> list[str]:
    count, _size = pop.stat()
    found = []
    for i in range(1, count + 1):
        _resp, lines, _octets = pop.top(i, 0)
        found += [line.decode(errors="replace")[9:] for line in lines if line.startswith(b"Subject: ")]
    return found


def test_poplib_user_pass_retrieves_and_dovecot_sees_xoauth2(mailstack: MailStack, bridge: BridgeProcess) -> None:
    password = bridge.password("poplib")
    subject = mailstack.seed()
    mark = mailstack.server.mark()
    pop = poplib.POP3("127.0.0.1", _port(bridge), timeout=30)
    try:
        caps = pop.capa()
        assert "USER" in caps and caps.get("SASL") == ["PLAIN"]
        pop.user(EMAIL)
        assert pop.pass_(password).startswith(b"+OK")
        assert subject in _subjects(pop)
    finally:
        pop.quit()
    mailstack.server.wait_login(mark, "pop3", EMAIL, "XOAUTH2")
    log = bridge.log()
    assert password not in log and mailstack.token(bridge.env) not in log


def test_auth_plain_in_two_steps_then_stat(mailstack: MailStack, bridge: BridgeProcess) -> None:
    password = bridge.password("pop-plain")
    response = base64.b64encode(f"\0{EMAIL}\0{password}".encode())
    with socket.create_connection(("127.0.0.1", _port(bridge)), timeout=30) as sock:
        f = sock.makefile("rb")
        assert f.readline().startswith(b"+OK")
        sock.sendall(b"AUTH PLAIN\r\n")
        assert f.readline() == b"+ \r\n"
        sock.sendall(response + b"\r\n")
        assert f.readline().startswith(b"+OK")
        sock.sendall(b"STAT\r\n")
        assert re.match(rb"\+OK \d+ \d+", f.readline())


def test_wrong_password_gets_err_auth(mailstack: MailStack, bridge: BridgeProcess) -> None:
    mark = mailstack.server.mark()
    pop = poplib.POP3("127.0.0.1", _port(bridge), timeout=60)
    try:
        pop.user(EMAIL)
        with pytest.raises(poplib.error_proto, match=r"-ERR \[AUTH\]"):
            pop.pass_("not the password")
    finally:
        pop.close()
    assert mailstack.server.logins(mark) == []


def test_local_stls_then_login(mailstack: MailStack, user: Env) -> None:
    table = _table(mailstack, local_tls="starttls")
    table.extra.update(cert=str(mailstack.tls.cert_pem), key=str(mailstack.tls.key_pem))
    with BridgeProcess(user, [table]) as bridge:
        password = bridge.password("stls")
        mark = mailstack.server.mark()
        pop = poplib.POP3("127.0.0.1", table.port, timeout=30)
        try:
            assert "STLS" in pop.capa() and "USER" not in pop.capa()
            pop.stls(ssl.create_default_context(cafile=str(mailstack.tls.ca_pem)))
            assert "USER" in pop.capa() and "STLS" not in pop.capa()
            pop.user(EMAIL)
            pop.pass_(password)
            assert pop.stat()[0] >= 0
        finally:
            pop.quit()
        mailstack.server.wait_login(mark, "pop3", EMAIL, "XOAUTH2")


def test_curl_user_retrieves_over_the_bridge(mailstack: MailStack, bridge: BridgeProcess, user: Env) -> None:
    require("curl")
    password = bridge.password("curl-pop")
    subject = mailstack.seed()
    mark = mailstack.server.mark()
    # --user as users give it, from a curl config file (-K) so that the password stays out of argv.
    curlrc = drivers.write(user.home / "curl-pop.conf", f'user = "{EMAIL}:{password}"\n')
    url = f"pop3://127.0.0.1:{_port(bridge)}/"
    listing = mailstack.run(user, ["curl", "-sS", "-K", str(curlrc), url])
    assert listing.returncode == 0, str(listing)
    last = listing.stdout.split()[-2]
    run = mailstack.run(user, ["curl", "-sS", "-K", str(curlrc), url + last])
    assert run.returncode == 0 and f"Subject: {subject}" in run.stdout, str(run)
    mailstack.server.wait_login(mark, "pop3", EMAIL, "XOAUTH2")


def test_fetchmail_pop3_with_a_password(mailstack: MailStack, bridge: BridgeProcess, user: Env) -> None:
    require("fetchmail")
    password = bridge.password("fetchmail-pop")
    bridge.describe_in_config()  # other tests of the module rewrote the tables: `config` reads this one
    drivers.fetchmail_fetch(mailstack, user, "POP3", _port(bridge), password)
    assert password not in bridge.log()


def test_getmail6_pop3_with_a_password(mailstack: MailStack, bridge: BridgeProcess, user: Env) -> None:
    require("getmail")
    password = bridge.password("getmail-pop")
    rc = (
        f"[retriever]\ntype = SimplePOP3Retriever\nserver = 127.0.0.1\nport = {_port(bridge)}\n"
        f"username = {EMAIL}\npassword = {password}\n"
        "[destination]\ntype = Maildir\npath = ~/Mail/getmail-pop/\n[options]\nread_all = true\ndelete = false\n"
    )
    drivers.getmail_fetch(mailstack, user, rc, account="getmail-pop", service="pop3")


# -- against Exchange -----------------------------------------------------------------------------------------


@pytest.fixture
def exchange(mailstack: MailStack) -> Iterator[FakeExchange]:
    with FakeExchange(mailstack.tls, Scenario()) as fake:
        yield fake


def test_exchange_refuses_one_line_auth_xoauth2(mailstack: MailStack, exchange: FakeExchange) -> None:
    """The scripted Exchange behaves as the notes say; the next test's success then shows the two-step form."""
    ctx = mailstack.tls.client_context()
    pop = poplib.POP3_SSL("127.0.0.1", exchange.pop3s, context=ctx, timeout=10)
    try:
        with pytest.raises(poplib.error_proto, match="Protocol error"):
            pop._shortcmd("AUTH XOAUTH2 " + base64.b64encode(b"user=x\1auth=Bearer t\1\1").decode())
    finally:
        pop.close()


def test_exchange_pop_login_uses_the_two_step_auth(mailstack: MailStack, user: Env, exchange: FakeExchange) -> None:
    table = ServeTable("pop3", upstream=f"127.0.0.1:{exchange.pop3s}", upstream_tls="implicit")
    with BridgeProcess(user, [table]) as bridge:
        password = bridge.password("exo-pop")
        token = mailstack.token(user)  # after the bridge's tables went in: a config change asks for a new token
        pop = poplib.POP3("127.0.0.1", table.port, timeout=30)
        try:
            pop.user(EMAIL)
            pop.pass_(password)
            assert pop.stat() == (3, 3072)
        finally:
            pop.quit()
        exchange.scenario.pop = "refused"
        pop = poplib.POP3("127.0.0.1", table.port, timeout=60)
        try:
            pop.user(EMAIL)
            with pytest.raises(poplib.error_proto, match=r"-ERR \[AUTH\]"):
                pop.pass_(password)
        finally:
            pop.close()
    # The refusal made the bridge try once more with a new token (it may have been revoked early).
    assert [r[0] for r in exchange.scenario.received] == ["pop"] * 3
    assert exchange.scenario.received[0] == ("pop", f"user={EMAIL}\x01auth=Bearer {token}\x01\x01")
