"""Issue 13: password-only SMTP clients through `mailtoken serve` to the real Dovecot submission (XOAUTH2 only).

Every test asserts the effect (the message at the sink) and Dovecot's own `Login: ... method=XOAUTH2` line.
"""

from __future__ import annotations

import smtplib
import ssl
import uuid
from collections.abc import Iterator

import pytest

from tests.conftest import EMAIL, Env, require
from tests.servers import drivers
from tests.servers.bridge import BridgeProcess, ServeTable
from tests.servers.stack import MailStack

RCPT = "bob@example.org"


@pytest.fixture(scope="module")
def user(mailstack: MailStack) -> Env:
    return mailstack.user("bridge-smtp")


def _table(stack: MailStack, **kw) -> ServeTable:
    return ServeTable("smtp", upstream=f"127.0.0.1:{stack.server.ports.submission}", upstream_tls="starttls", **kw)


@pytest.fixture
def bridge(mailstack: MailStack, user: Env) -> Iterator[BridgeProcess]:
    with BridgeProcess(user, [_table(mailstack)]) as running:
        yield running


def _message(subject: str) -> str:
    return f"From: {EMAIL}\r\nTo: {RCPT}\r\nSubject: {subject}\r\n\r\nThrough the bridge.\r\n"


def _auth_plain(port: int, user: str, password: str) -> tuple[int, bytes]:
    """One AUTH PLAIN attempt (smtplib's login() would try PLAIN, then LOGIN)."""
    with smtplib.SMTP("127.0.0.1", port, "localhost", timeout=60) as smtp:
        smtp.ehlo()
        smtp.user, smtp.password = user, password
        try:
            return smtp.auth("PLAIN", smtp.auth_plain)
        except smtplib.SMTPAuthenticationError as exc:
            return exc.smtp_code, exc.smtp_error


def _send_smtplib(port: int, user: str, password: str, subject: str, **kw) -> None:
    with smtplib.SMTP("127.0.0.1", port, "localhost", timeout=30) as smtp:
        smtp.login(user, password)
        smtp.sendmail(EMAIL, [RCPT], _message(subject))


def test_python_smtplib_login_sends_through_the_upstream_with_xoauth2(
    mailstack: MailStack, bridge: BridgeProcess
) -> None:
    password = bridge.password("script")
    subject = drivers.unique("smtplib")
    mark = mailstack.server.mark()
    _send_smtplib(bridge.tables[0].port, EMAIL, password, subject)
    received = mailstack.sink.wait_for(subject)
    assert received.rcpt_tos == (RCPT,) and received.mail_from == EMAIL
    mailstack.server.wait_login(mark, "submission", EMAIL, "XOAUTH2")
    bridge.wait_log("ok, upstream signed in")
    log = bridge.log()
    assert password not in log and mailstack.token(bridge.env) not in log
    assert "bytes" in bridge.wait_log("closed (authenticated")


@pytest.mark.parametrize("mechanism", ["plain", "login"])
def test_msmtp_with_a_local_password_sends_with_auth(mailstack: MailStack, user: Env, mechanism: str) -> None:
    require("msmtp")
    with BridgeProcess(user, [_table(mailstack)]) as bridge:
        password = bridge.password(f"msmtp-{mechanism}")
        rc = drivers.write(
            user.home / ".msmtprc",
            f"account work\nhost 127.0.0.1\nport {bridge.tables[0].port}\ntls off\nauth {mechanism}\n"
            f"user {EMAIL}\npassword {password}\nfrom {EMAIL}\n",
        )
        subject = drivers.unique(f"msmtp-{mechanism}")
        mark = mailstack.server.mark()
        run = mailstack.run(user, ["msmtp", "-C", str(rc), "-a", "work", RCPT], input=_message(subject))
        assert run.returncode == 0, f"{run}\n{bridge.log()}"
        assert mailstack.sink.wait_for(subject).rcpt_tos == (RCPT,)
        mailstack.server.wait_login(mark, "submission", EMAIL, "XOAUTH2")


def test_curl_user_password_sends_over_smtp(mailstack: MailStack, bridge: BridgeProcess) -> None:
    require("curl")
    password = bridge.password("curl")
    subject = drivers.unique("curl")
    netrc = drivers.write(bridge.env.home / ".netrc-bridge", f"machine 127.0.0.1 login {EMAIL} password {password}\n")
    run = mailstack.run(
        bridge.env,
        [
            "curl",
            "-sS",
            f"smtp://127.0.0.1:{bridge.tables[0].port}",
            "--netrc-file",
            str(netrc),
            "--mail-from",
            EMAIL,
            "--mail-rcpt",
            RCPT,
            "--upload-file",
            "-",
        ],
        input=_message(subject),
    )
    assert run.returncode == 0, f"{run}\n{bridge.log()}"
    assert mailstack.sink.wait_for(subject).mail_from == EMAIL


def test_curl_user_option_sends_over_smtp(mailstack: MailStack, bridge: BridgeProcess) -> None:
    require("curl")
    password = bridge.password("curl-user")
    subject = drivers.unique("curl-user")
    run = mailstack.run(
        bridge.env,
        [
            "curl",
            "-sS",
            f"smtp://127.0.0.1:{bridge.tables[0].port}",
            "--user",
            f"{EMAIL}:{password}",
            "--mail-from",
            EMAIL,
            "--mail-rcpt",
            RCPT,
            "--upload-file",
            "-",
        ],
        input=_message(subject),
    )
    assert run.returncode == 0, f"{run}\n{bridge.log()}"
    assert mailstack.sink.wait_for(subject).mail_from == EMAIL


@pytest.mark.parametrize("binary", ["mutt", "neomutt"])
def test_mutt_smtp_pass_sends_through_the_bridge(mailstack: MailStack, bridge: BridgeProcess, binary: str) -> None:
    require(binary)
    password = bridge.password(binary)
    rc = drivers.write(
        bridge.env.home / f".{binary}rc-bridge",
        f'set from = "{EMAIL}"\nset smtp_url = "smtp://{EMAIL}@127.0.0.1:{bridge.tables[0].port}/"\n'
        f'set smtp_pass = "{password}"\nset smtp_authenticators = "plain:login"\nset ssl_starttls = no\n'
        'set ssl_force_tls = no\nset record = ""\n',
    )
    subject = drivers.unique(binary)
    mark = mailstack.server.mark()
    run = mailstack.run(bridge.env, [binary, "-n", "-F", str(rc), "-s", subject, "--", RCPT], input="Hi.\n")
    assert run.returncode == 0, f"{run}\n{bridge.log()}"
    assert mailstack.sink.wait_for(subject).rcpt_tos == (RCPT,)
    mailstack.server.wait_login(mark, "submission", EMAIL, "XOAUTH2")


@pytest.mark.parametrize("local_tls", ["starttls", "implicit"])
def test_local_tls_with_the_generated_certificate(mailstack: MailStack, user: Env, local_tls: str) -> None:
    with BridgeProcess(user, [_table(mailstack, local_tls=local_tls)]) as bridge:
        password = bridge.password(f"tls-{local_tls}")
        cert = user.state_dir / "serve" / "cert.pem"
        assert cert.exists() and (user.state_dir / "serve" / "key.pem").stat().st_mode & 0o777 == 0o600
        ctx = ssl.create_default_context(cafile=str(cert))
        port, subject = bridge.tables[0].port, drivers.unique(f"tls-{local_tls}")
        if local_tls == "implicit":
            smtp = smtplib.SMTP_SSL("127.0.0.1", port, "localhost", timeout=30, context=ctx)
        else:
            smtp = smtplib.SMTP("127.0.0.1", port, "localhost", timeout=30)
            smtp.ehlo()
            assert not smtp.has_extn("auth"), "AUTH offered before STARTTLS"
            smtp.starttls(context=ctx)
        with smtp:
            assert smtp.sock.version() in ("TLSv1.2", "TLSv1.3")
            smtp.login(EMAIL, password)
            smtp.sendmail(EMAIL, [RCPT], _message(subject))
        assert mailstack.sink.wait_for(subject).mail_from == EMAIL


def test_wrong_local_password_gets_535_and_a_growing_delay_and_deletes_nothing(
    mailstack: MailStack, bridge: BridgeProcess
) -> None:
    import time

    password = bridge.password("victim")
    port = bridge.tables[0].port
    mark = mailstack.server.mark()
    waits = []
    for _ in range(2):
        start = time.monotonic()
        code, _ = _auth_plain(port, EMAIL, password + "x")
        waits.append(time.monotonic() - start)
        assert code == 535
    assert waits[0] >= 1.0 and waits[1] >= 2.0, waits
    assert not mailstack.server.logins(mark), "a wrong local password reached the upstream"
    subject = drivers.unique("after-wrong")
    _send_smtplib(port, EMAIL, password, subject)  # the right one still works: nothing was deleted
    mailstack.sink.wait_for(subject)
    assert "wrong password" in bridge.log() and password not in bridge.log()


def test_unauthenticated_mail_gets_530_and_reaches_nobody(mailstack: MailStack, bridge: BridgeProcess) -> None:
    with smtplib.SMTP("127.0.0.1", bridge.tables[0].port, "localhost", timeout=30) as smtp:
        code, _ = smtp.mail(EMAIL)
        assert code == 530
        assert smtp.ehlo()[0] == 250 and "PLAIN" in smtp.esmtp_features.get("auth", "")


def test_a_revoked_device_password_is_refused_by_the_running_bridge(
    mailstack: MailStack, bridge: BridgeProcess
) -> None:
    password = bridge.password("gone")
    _send_smtplib(bridge.tables[0].port, EMAIL, password, drivers.unique("before-revoke"))
    assert bridge.env.run("serve", "revoke", "gone").returncode == 0
    listing = bridge.env.run("serve", "list")
    assert "gone" not in listing.stdout and password not in listing.stdout
    assert _auth_plain(bridge.tables[0].port, EMAIL, password)[0] == 535


def test_address_not_of_the_account_is_refused(mailstack: MailStack, bridge: BridgeProcess) -> None:
    password = bridge.password("other")
    assert _auth_plain(bridge.tables[0].port, f"mallory-{uuid.uuid4().hex[:6]}@contoso.com", password)[0] == 535


def test_upstream_down_gets_454(mailstack: MailStack, user: Env) -> None:
    from tests.servers.ports import free_port

    table = ServeTable("smtp", upstream=f"127.0.0.1:{free_port()}", upstream_tls="starttls")
    with BridgeProcess(user, [table]) as bridge:
        password = bridge.password("down")
        code, text = _auth_plain(table.port, EMAIL, password)
        assert code == 454, text
        assert "cannot connect to upstream" in bridge.wait_log("cannot connect to upstream")


def test_an_upstream_certificate_nobody_trusts_is_refused_with_454(mailstack: MailStack, user: Env) -> None:
    """Upstream TLS is verified against SSL_CERT_FILE (the other tests trust the suite's CA only that way)."""
    import trustme

    stranger = user.root / "stranger-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(stranger))
    with BridgeProcess(user, [_table(mailstack)], extra_env={"SSL_CERT_FILE": str(stranger)}) as bridge:
        password = bridge.password("distrust")
        mark = mailstack.server.mark()
        code, text = _auth_plain(bridge.tables[0].port, EMAIL, password)
        assert code == 454, text
        assert "unable to get local issuer certificate" in bridge.wait_log("(device distrust): TLS with upstream")
        assert not mailstack.server.logins(mark)
