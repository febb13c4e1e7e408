"""Issue 13: password-only IMAP clients through `mailtoken serve` to the real Dovecot (XOAUTH2 only, TLS upstream).

Each client is configured as its users do (a login name and the device password) and each test asserts the
effect (the seeded message fetched) and Dovecot's own `Login: user=<...>, method=XOAUTH2`. The second half runs
the bridge against the scripted Exchange server and its quirks.
"""

from __future__ import annotations

import imaplib
import re
import select
import socket
import ssl
import time
from collections.abc import Iterator
from urllib.parse import quote

import pytest

from tests.conftest import EMAIL, Env, require
from tests.servers import drivers
from tests.servers.bridge import BridgeProcess, ServeTable
from tests.servers.exchange import FakeExchange, Scenario
from tests.servers.stack import MailStack


@pytest.fixture(scope="module")
def user(mailstack: MailStack) -> Env:
    return mailstack.user("bridge-imap")


def _table(stack: MailStack, **kw) -> ServeTable:
    return ServeTable("imap", upstream=f"127.0.0.1:{stack.server.ports.imaps}", upstream_tls="implicit", **kw)


@pytest.fixture(scope="module")
def bridge(mailstack: MailStack, user: Env) -> Iterator[BridgeProcess]:
    """One plain local listener for the module's clients (each test makes its own device password)."""
    with BridgeProcess(user, [_table(mailstack)]) as running:
        yield running


def _port(bridge: BridgeProcess) -> int:
    return bridge.tables[0].port


def _login_fails(port: int, password: str, reply: str) -> None:
    with imaplib.IMAP4("127.0.0.1", port, timeout=60) as imap, pytest.raises(imaplib.IMAP4.error, match=reply):
        imap.login(EMAIL, password)


def _no_secrets(stack: MailStack, bridge: BridgeProcess, *secrets: str) -> None:
    log = bridge.log()
    for secret in (*secrets, stack.token(bridge.env)):
        assert secret not in log


# -- Python imaplib -------------------------------------------------------------------------------------------


def test_imaplib_login_reads_the_inbox_and_dovecot_sees_xoauth2(mailstack: MailStack, bridge: BridgeProcess) -> None:
    password = bridge.password("imaplib")
    subject = mailstack.seed()
    mark = mailstack.server.mark()
    with imaplib.IMAP4("127.0.0.1", _port(bridge), timeout=30) as imap:
        assert "AUTH=PLAIN" in imap.capabilities and "AUTH=XOAUTH2" not in imap.capabilities
        typ, data = imap.login(EMAIL, password)
        assert typ == "OK"
        imap.select("INBOX", readonly=True)
        typ, found = imap.search(None, "SUBJECT", f'"{subject}"')
        assert typ == "OK" and found[0].split(), found
    mailstack.server.wait_login(mark, "imap", EMAIL, "XOAUTH2")
    bridge.wait_log("ok, upstream signed in")
    _no_secrets(mailstack, bridge, password)


def test_authenticate_plain_and_login_literals(mailstack: MailStack, bridge: BridgeProcess) -> None:
    """AUTHENTICATE PLAIN without SASL-IR (imaplib), and LOGIN with a {n} literal (`+` first) and a {n+} one."""
    password = bridge.password("literals")
    with imaplib.IMAP4("127.0.0.1", _port(bridge), timeout=30) as imap:
        typ, _ = imap.authenticate("PLAIN", lambda _challenge: f"\0{EMAIL}\0{password}".encode())
        assert typ == "OK" and imap.select("INBOX", readonly=True)[0] == "OK"
    with socket.create_connection(("127.0.0.1", _port(bridge)), timeout=30) as sock:
        assert _read_until(sock, b"\r\n").startswith(b"* OK [CAPABILITY ")
        name, secret = EMAIL.encode(), password.encode()
        sock.sendall(b"a1 LOGIN {%d}\r\n" % len(name))
        assert _read_until(sock, b"\r\n").startswith(b"+ ")
        sock.sendall(name + b" {%d+}\r\n" % len(secret) + secret + b"\r\n")
        assert re.search(rb"^a1 OK ", _read_until(sock, b"a1 OK"), re.M)
        sock.sendall(b"a2 EXAMINE INBOX\r\n")
        assert b"a2 OK" in _read_until(sock, b"a2 OK")


def test_wrong_password_gets_authenticationfailed_and_no_upstream_login(
    mailstack: MailStack, bridge: BridgeProcess
) -> None:
    mark = mailstack.server.mark()
    _login_fails(_port(bridge), "not-the-password", r"\[AUTHENTICATIONFAILED\]")
    time.sleep(0.3)
    assert mailstack.server.logins(mark) == []


def test_idle_is_relayed_both_ways(mailstack: MailStack, bridge: BridgeProcess) -> None:
    password = bridge.password("idle")
    with imaplib.IMAP4("127.0.0.1", _port(bridge), timeout=30) as imap:
        imap.login(EMAIL, password)
        _typ, count = imap.select("INBOX")
        before = int(count[0])
        sock = imap.socket()
        sock.sendall(b"i1 IDLE\r\n")
        assert _read_until(sock, b"+ ").startswith(b"+ ")
        mailstack.seed(subject="arrives while idling")
        pushed = _read_until(sock, b" EXISTS\r\n", timeout=20)
        assert re.search(rb"\* (\d+) EXISTS", pushed) and int(re.search(rb"\* (\d+) EXISTS", pushed)[1]) > before
        sock.sendall(b"DONE\r\n")
        assert b"i1 OK" in _read_until(sock, b"i1 OK")


def _read_until(sock: socket.socket, marker: bytes, timeout: float = 10) -> bytes:
    data, end = b"", time.monotonic() + timeout
    while marker not in data:
        left = end - time.monotonic()
        assert left > 0, f"no {marker!r} in {data!r}"
        if select.select([sock], [], [], left)[0]:
            chunk = sock.recv(65536)
            assert chunk, f"connection closed; got {data!r}"
            data += chunk
    return data


def test_local_starttls_is_required_before_login(mailstack: MailStack, user: Env) -> None:
    table = _table(mailstack, local_tls="starttls")
    table.extra.update(cert=str(mailstack.tls.cert_pem), key=str(mailstack.tls.key_pem))
    with BridgeProcess(user, [table]) as bridge:
        password = bridge.password("starttls")
        mark = mailstack.server.mark()
        with imaplib.IMAP4("127.0.0.1", table.port, timeout=30) as imap:
            assert "LOGINDISABLED" in imap.capabilities and "STARTTLS" in imap.capabilities
            with pytest.raises(imaplib.IMAP4.error, match="PRIVACYREQUIRED"):
                imap.login(EMAIL, password)
            imap.starttls(ssl.create_default_context(cafile=str(mailstack.tls.ca_pem)))
            assert "LOGINDISABLED" not in imap.capabilities and "AUTH=PLAIN" in imap.capabilities
            assert imap.login(EMAIL, password)[0] == "OK"
        mailstack.server.wait_login(mark, "imap", EMAIL, "XOAUTH2")


# -- real clients ---------------------------------------------------------------------------------------------


def test_curl_user_fetches_over_the_bridge(mailstack: MailStack, bridge: BridgeProcess, user: Env) -> None:
    require("curl")
    password = bridge.password("curl-imap")
    subject = mailstack.seed()
    mark = mailstack.server.mark()
    # --user as users give it, from a curl config file (-K) so that the password stays out of argv.
    curlrc = drivers.write(user.home / "curl-imap.conf", f'user = "{EMAIL}:{password}"\n')
    url = f"imap://127.0.0.1:{_port(bridge)}/INBOX"
    search = quote('SUBJECT "' + subject + '"')
    run = mailstack.run(user, ["curl", "-sS", "-K", str(curlrc), f"{url}?{search}"])
    assert run.returncode == 0 and re.search(r"^\* SEARCH \d+", run.stdout, re.M), str(run)
    uid = run.stdout.split()[-1]
    run = mailstack.run(user, ["curl", "-sS", "-K", str(curlrc), f"{url};MAILINDEX={uid}"])
    assert run.returncode == 0 and f"Subject: {subject}" in run.stdout, str(run)
    mailstack.server.wait_login(mark, "imap", EMAIL, "XOAUTH2")


def test_fetchmail_imap_with_a_password(mailstack: MailStack, bridge: BridgeProcess, user: Env) -> None:
    require("fetchmail")
    password = bridge.password("fetchmail-imap")
    bridge.describe_in_config()  # other tests of the module rewrote the tables: `config` reads this one
    drivers.fetchmail_fetch(mailstack, user, "IMAP", _port(bridge), password)
    assert password not in bridge.log()


def test_getmail6_with_a_password(mailstack: MailStack, bridge: BridgeProcess, user: Env) -> None:
    require("getmail")
    password = bridge.password("getmail-imap")
    rc = (
        f"[retriever]\ntype = SimpleIMAPRetriever\nserver = 127.0.0.1\nport = {_port(bridge)}\n"
        f"username = {EMAIL}\npassword = {password}\nmailboxes = ('INBOX',)\n"
        "[destination]\ntype = Maildir\npath = ~/Mail/getmail-bridge/\n[options]\nread_all = true\ndelete = false\n"
    )
    login = drivers.getmail_fetch(mailstack, user, rc, account="getmail-bridge")
    assert login.method == "XOAUTH2"


def test_mutt_with_imap_pass_over_local_starttls_opens_the_inbox(mailstack: MailStack, user: Env) -> None:
    """mutt 2.2 insists on TLS (ssl_force_tls): the listener offers STARTTLS with the test's certificate."""
    require("mutt", "tmux")
    table = _table(mailstack, local_tls="starttls")
    table.extra.update(cert=str(mailstack.tls.cert_pem), key=str(mailstack.tls.key_pem))
    with BridgeProcess(user, [table]) as bridge:
        password = bridge.password("mutt")
        rc = (
            f'set folder = "imap://127.0.0.1:{table.port}/"\nset spoolfile = "+INBOX"\n'
            f'set imap_user = "{EMAIL}"\nset imap_pass = "{password}"\n'
        )
        login = drivers.mutt_open(mailstack, user, "mutt", rc)
        assert login.method == "XOAUTH2"
        bridge.wait_log("ok, upstream signed in")


# -- against Exchange's quirks --------------------------------------------------------------------------------


@pytest.fixture
def exchange(mailstack: MailStack) -> Iterator[FakeExchange]:
    with FakeExchange(mailstack.tls, Scenario()) as fake:
        yield fake


def _exchange_bridge(user: Env, fake: FakeExchange) -> BridgeProcess:
    return BridgeProcess(user, [ServeTable("imap", upstream=f"127.0.0.1:{fake.imaps}", upstream_tls="implicit")])


def _bearer(received: tuple[str, str]) -> str:
    return received[1].split("auth=Bearer ", 1)[1].rstrip("\x01")


def test_exchange_login_is_checked_then_spliced(mailstack: MailStack, user: Env, exchange: FakeExchange) -> None:
    with _exchange_bridge(user, exchange) as bridge:
        password = bridge.password("exo-ok")
        with imaplib.IMAP4("127.0.0.1", bridge.tables[0].port, timeout=30) as imap:
            imap.login(EMAIL, password)
            assert imap.select("INBOX", readonly=True) == ("OK", [b"3"])
    [received] = exchange.scenario.received
    assert received == ("imap", f"user={EMAIL}\x01auth=Bearer {mailstack.token(user)}\x01\x01")


def test_exchange_authenticated_but_not_connected_is_a_clear_failure(
    mailstack: MailStack, user: Env, exchange: FakeExchange
) -> None:
    exchange.scenario.imap = "not_connected"
    with _exchange_bridge(user, exchange) as bridge:
        password = bridge.password("exo-nc")
        _login_fails(bridge.tables[0].port, password, r"AUTHENTICATIONFAILED.*not connected")
        assert "mailtoken test" in bridge.wait_log("not connected")


def test_exchange_throttling_is_a_temporary_failure(mailstack: MailStack, user: Env, exchange: FakeExchange) -> None:
    exchange.scenario.imap = "throttled"
    with _exchange_bridge(user, exchange) as bridge:
        password = bridge.password("exo-throttled")
        _login_fails(bridge.tables[0].port, password, r"\[UNAVAILABLE\]")


def test_exchange_token_expiry_bye_reaches_the_client_and_its_reconnect_gets_a_fresh_token(
    mailstack: MailStack, exchange: FakeExchange
) -> None:
    env = mailstack.user("bridge-imap-expiry")
    lifetime = 610  # the bridge keeps a token for new sessions while >= 600 s are left: 10 s here
    mailstack.fake.set(token_lifetime=lifetime)
    try:
        env.age_record()  # the bridge's first login refreshes: its token has `lifetime` seconds to live
        exchange.scenario.imap = "expires"
        with _exchange_bridge(env, exchange) as bridge:
            password = bridge.password("exo-expires")
            with imaplib.IMAP4("127.0.0.1", bridge.tables[0].port, timeout=30) as imap:
                imap.login(EMAIL, password)
                issued = time.time()  # no earlier than the token the login used
                with pytest.raises(imaplib.IMAP4.abort, match="AccessTokenExpired"):
                    imap.select("INBOX")
            time.sleep(max(0.0, issued + lifetime - 600 + 1 - time.time()))
            exchange.scenario.imap = "ok"
            with imaplib.IMAP4("127.0.0.1", bridge.tables[0].port, timeout=30) as imap:
                imap.login(EMAIL, password)
                assert imap.select("INBOX", readonly=True)[0] == "OK"
    finally:
        mailstack.fake.set(token_lifetime=3600)
    first, second = exchange.scenario.received
    assert _bearer(first) != _bearer(second)
    assert _bearer(second) == mailstack.token(env)
