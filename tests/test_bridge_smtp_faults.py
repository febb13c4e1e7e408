"""Issue 13: the SMTP bridge when things go wrong or differ: identity platform down, revoked grant, tokens
expiring under open sessions, many sessions at once, and the scripted Exchange Online front end.

Its own stack (module fixture): revoking the grant here must not touch the other modules' users.
"""

from __future__ import annotations

import smtplib
import threading
import time

import pytest

from tests.conftest import EMAIL, Env
from tests.servers import drivers
from tests.servers.bridge import BridgeProcess, ServeTable
from tests.servers.exchange import SMTP_535, FakeExchange, Scenario
from tests.servers.stack import MailStack

RCPT = "bob@example.org"
SHARED = "team@contoso.com"


@pytest.fixture(scope="module")
def user(mailstack: MailStack) -> Env:
    env = mailstack.user("bridge-faults")
    notice = env.home / "notice.txt"
    text = env.config_path.read_text().replace(
        'store = "file"\n',
        f'store = "file"\nshared = ["{SHARED}"]\n'
        f'notify_cmd = ["sh", "-c", "printf %s \\"$MAILTOKEN_MESSAGE\\" > {notice}"]\n',
        1,
    )
    env.write_config(text)
    return env


def _dovecot(stack: MailStack) -> ServeTable:
    return ServeTable("smtp", upstream=f"127.0.0.1:{stack.server.ports.submission}", upstream_tls="starttls")


def _message(subject: str) -> str:
    return f"From: {EMAIL}\r\nTo: {RCPT}\r\nSubject: {subject}\r\n\r\nThrough the bridge.\r\n"


def _auth_plain(port: int, user: str, password: str) -> tuple[int, str]:
    with smtplib.SMTP("127.0.0.1", port, "localhost", timeout=60) as smtp:
        smtp.ehlo()
        smtp.user, smtp.password = user, password
        try:
            code, text = smtp.auth("PLAIN", smtp.auth_plain)
        except smtplib.SMTPAuthenticationError as exc:
            code, text = exc.smtp_code, exc.smtp_error
    return code, text.decode(errors="replace")


def test_identity_platform_down_gets_454_and_the_next_try_works(mailstack: MailStack, user: Env) -> None:
    with BridgeProcess(user, [_dovecot(mailstack)]) as bridge:
        password = bridge.password("idp-down")
        (user.record_dir / "work.token").unlink()  # no cached token to fall back on
        mailstack.fake.inject("status", status=503)
        code, text = _auth_plain(bridge.tables[0].port, EMAIL, password)
        assert code == 454, text
        assert "temporary" in bridge.wait_log("temporary failure")
        assert _auth_plain(bridge.tables[0].port, EMAIL, password)[0] == 235


def test_many_sessions_share_one_refresh_grant(mailstack: MailStack, user: Env) -> None:
    with BridgeProcess(user, [_dovecot(mailstack)]) as bridge:
        password = bridge.password("many")
        user.age_record()
        mailstack.fake.reset_counts()
        subjects = [drivers.unique(f"many-{i}") for i in range(20)]
        failures: list[BaseException] = []

        def send(subject: str) -> None:
            try:
                with smtplib.SMTP("127.0.0.1", bridge.tables[0].port, "localhost", timeout=60) as smtp:
                    smtp.login(EMAIL, password)
                    smtp.sendmail(EMAIL, [RCPT], _message(subject))
            except BaseException as exc:  # noqa: BLE001 - reported below
                failures.append(exc)

        threads = [threading.Thread(target=send, args=(s,)) for s in subjects]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not failures, f"{failures}\n{bridge.log()}"
        for subject in subjects:
            mailstack.sink.wait_for(subject)
        assert mailstack.fake.counts["refresh_token"] == 1


def test_new_sessions_get_a_fresh_token_while_old_ones_stay_open(mailstack: MailStack, user: Env) -> None:
    mailstack.fake.set(token_lifetime=605)  # just over the bridge's 10 minutes: due again within seconds
    try:
        with BridgeProcess(user, [_dovecot(mailstack)]) as bridge:
            password = bridge.password("expiring")
            user.age_record()
            mailstack.fake.reset_counts()
            port = bridge.tables[0].port
            with smtplib.SMTP("127.0.0.1", port, "localhost", timeout=60) as old:
                old.login(EMAIL, password)
                assert mailstack.fake.counts["refresh_token"] == 1
                time.sleep(6)  # the token now has less than 600 s left
                subject = drivers.unique("new-session")
                with smtplib.SMTP("127.0.0.1", port, "localhost", timeout=60) as new:
                    new.login(EMAIL, password)
                    new.sendmail(EMAIL, [RCPT], _message(subject))
                assert mailstack.fake.counts["refresh_token"] == 2
                later = drivers.unique("old-session")
                old.sendmail(EMAIL, [RCPT], _message(later))  # the open session keeps working
            mailstack.sink.wait_for(subject)
            mailstack.sink.wait_for(later)
    finally:
        mailstack.fake.set(token_lifetime=3600)


# --- the scripted Exchange Online -----------------------------------------------------------------------


def _exchange(stack: MailStack, user: Env, scenario: Scenario):
    exchange = FakeExchange(stack.tls, scenario)
    table = ServeTable("smtp", upstream=f"127.0.0.1:{exchange.submission}", upstream_tls="starttls")
    return exchange, BridgeProcess(user, [table])


def test_exchange_auth_login_xoauth2_after_starttls_and_mail_goes_upstream(mailstack: MailStack, user: Env) -> None:
    scenario = Scenario()
    exchange, bridge = _exchange(mailstack, user, scenario)
    with exchange, bridge:
        password = bridge.password("exo")
        token = mailstack.token(user)
        with smtplib.SMTP("127.0.0.1", bridge.tables[0].port, "localhost", timeout=60) as smtp:
            smtp.ehlo()
            # Exchange's own extensions come through; its AUTH LOGIN XOAUTH2 is replaced by the local ones.
            assert smtp.has_extn("chunking") and smtp.has_extn("smtputf8")
            assert smtp.esmtp_features["auth"].split() == ["PLAIN", "LOGIN"]
            smtp.login(EMAIL, password)
            # The scripted server knows no MAIL: its own 500 proves the command went upstream untouched.
            code, text = smtp.mail(EMAIL)
        assert code == 500 and b"5.3.3" in text
        assert scenario.received == [("smtp", f"user={EMAIL}\x01auth=Bearer {token}\x01\x01")]


def test_exchange_shared_mailbox_address_is_the_xoauth2_user(mailstack: MailStack, user: Env) -> None:
    scenario = Scenario()
    exchange, bridge = _exchange(mailstack, user, scenario)
    with exchange, bridge:
        password = bridge.password("exo-shared")
        assert _auth_plain(bridge.tables[0].port, SHARED.upper(), password)[0] == 235
        assert scenario.received[0][1].startswith(f"user={SHARED}\x01auth=Bearer ")


def test_exchange_refusal_reaches_the_client_with_exchanges_words(mailstack: MailStack, user: Env) -> None:
    exchange, bridge = _exchange(mailstack, user, Scenario(smtp="tenant"))
    with exchange, bridge:
        password = bridge.password("exo-tenant")
        code, text = _auth_plain(bridge.tables[0].port, EMAIL, password)
        assert code == 535 and "SmtpClientAuthentication is disabled" in text, text
        assert "mailtoken test work" in bridge.wait_log("SmtpClientAuthentication")
        assert SMTP_535["tenant"].split()[1] == "5.7.139"


# Last: it revokes the grant of this module's user.
def test_revoked_grant_gets_the_sign_in_text_and_notify_cmd(mailstack: MailStack, user: Env) -> None:
    with BridgeProcess(user, [_dovecot(mailstack)]) as bridge:
        password = bridge.password("revoked")
        mailstack.fake.revoke(EMAIL)
        user.age_record()
        code, text = _auth_plain(bridge.tables[0].port, EMAIL, password)
        assert code == 535 and "sign-in required: run 'mailtoken login work'" in text, text
        notice = user.home / "notice.txt"

        def noticed() -> str:  # the shell creates the file a moment before printf fills it
            return notice.read_text() if notice.exists() else ""

        deadline = time.monotonic() + 10
        while "work:" not in noticed() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "work:" in noticed() and "sign-in" in noticed()
        assert password not in bridge.log()
