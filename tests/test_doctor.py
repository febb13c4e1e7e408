"""Issue 4: `mailtoken test ACCOUNT`: real sign-ins against Dovecot, and Exchange's failure replies explained."""

from __future__ import annotations

import base64
import json
import time

import pytest

from mailtoken import doctor
from mailtoken.config import Account
from mailtoken.fast import record
from tests.conftest import EMAIL, Env
from tests.servers.exchange import FakeExchange, Scenario
from tests.servers.ports import free_port
from tests.servers.stack import LONG_TOKEN, MailStack
from tests.servers.tls import TestTLS

LINE = r"^(IMAP|POP |SMTP) "


def _dovecot_urls(stack: MailStack, starttls: bool = False) -> list[str]:
    p = stack.server.ports
    if starttls:
        return ["--imap", f"imap://127.0.0.1:{p.imap}", "--pop", f"pop3://127.0.0.1:{p.pop3}",
                "--smtp", f"smtp://127.0.0.1:{p.submission}"]  # fmt: skip
    return ["--imap", f"imaps://127.0.0.1:{p.imaps}", "--pop", f"pop3s://127.0.0.1:{p.pop3s}",
            "--smtp", f"smtp://127.0.0.1:{p.submission}"]  # fmt: skip


def _lines(out: str) -> dict[str, str]:
    return {line.split()[0]: line for line in out.splitlines()}


# --- against Dovecot ---------------------------------------------------------------------------------------


def test_doctor_signs_in_everywhere(mailstack: MailStack) -> None:
    env = mailstack.user("doctor")
    mailstack.seed()
    sent_before = len(mailstack.sink.messages)
    mark = mailstack.server.mark()
    result = env.run("test", "work", *_dovecot_urls(mailstack), "--cafile", str(mailstack.tls.ca_pem), timeout=90)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = _lines(result.stdout)
    assert list(lines) == ["token", "IMAP", "POP", "SMTP"], result.stdout
    assert "sign-in alice@contoso.com, valid for" in lines["token"]
    assert '"Logged in": INBOX holds ' in lines["IMAP"] and " ok: " in lines["IMAP"]
    assert '"+OK Logged in.": STAT: ' in lines["POP"]
    assert '"235 2.7.0 Logged in.": no mail sent' in lines["SMTP"]
    for service in ("imap", "pop3", "submission"):
        mailstack.server.wait_login(mark, service, EMAIL, "XOAUTH2")
    assert len(mailstack.sink.messages) == sent_before, "the doctor must not send mail"
    assert mailstack.token(env) not in result.stdout + result.stderr


def test_doctor_starttls_ports_with_an_entra_sized_token(mailstack: MailStack) -> None:
    """STARTTLS everywhere; responses on continuation lines, so 2,500 characters pass Dovecot's line limits."""
    env = mailstack.user("doctor-long", LONG_TOKEN)
    mark = mailstack.server.mark()
    result = env.run("test", "work", *_dovecot_urls(mailstack, starttls=True), timeout=90)  # SSL_CERT_FILE trusts
    assert result.returncode == 0, result.stdout + result.stderr
    for service in ("imap", "pop3", "submission"):
        assert "TLS" in mailstack.server.wait_login(mark, service, EMAIL, "XOAUTH2").line


def test_doctor_tests_only_what_is_asked(mailstack: MailStack) -> None:
    env = mailstack.user("doctor")
    p = mailstack.server.ports
    result = env.run("test", "work", "--smtp", f"127.0.0.1:{p.submission}", timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert list(_lines(result.stdout)) == ["token", "SMTP"]


def test_doctor_unreachable_server(mailstack: MailStack) -> None:
    env = mailstack.user("doctor")
    result = env.run("test", "work", "--imap", f"imaps://127.0.0.1:{free_port()}", timeout=60)
    assert result.returncode == 75, result.stdout
    assert "IMAP" in result.stdout and "FAILED" in result.stdout and "cannot reach 127.0.0.1:" in result.stdout


def test_doctor_refused_token_against_dovecot(mailstack: MailStack) -> None:
    """Last in this module's stack, and on a spare Dovecot: a token the identity platform never issued."""
    env = mailstack.user("doctor-refused")
    _write_record(env, "made-up-" + "y" * 300)
    with mailstack.spare_dovecots("doctor") as (imap, pop, smtp):
        urls = ["--imap", f"imaps://127.0.0.1:{imap.ports.imaps}", "--pop", f"pop3s://127.0.0.1:{pop.ports.pop3s}",
                "--smtp", f"smtp://127.0.0.1:{smtp.ports.submission}"]  # fmt: skip
        marks = [server.mark() for server in (imap, pop, smtp)]
        result = env.run("test", "work", *urls, timeout=120)
        assert result.returncode == 77, result.stdout + result.stderr
        lines = _lines(result.stdout)
        for proto in ("IMAP", "POP", "SMTP"):
            assert "FAILED" in lines[proto] and "the server refused the token" in lines[proto], result.stdout
        assert 'Authentication failed. ({"status":"401","schemes":"bearer"' in lines["IMAP"]
        assert '"535 5.7.8 Authentication failed.' in lines["SMTP"]
        for server, mark, service in zip((imap, pop, smtp), marks, ("imap", "pop3", "submission"), strict=True):
            server.wait_failed(mark, service)
            assert server.logins(mark) == []


# --- against a scripted Exchange ---------------------------------------------------------------------------


def _jwt(**claims: object) -> str:
    def part(obj: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part({'typ': 'JWT', 'alg': 'RS256'})}.{part(claims)}.c2lnbmF0dXJl"


def _write_record(env: Env, token: str) -> None:
    """A fresh cached token for 'work', as if mailtoken had just fetched it (no identity platform needed)."""
    if not env.config_path.exists():
        env.add_account(authority="https://login.microsoftonline.com/organizations")
    now = int(time.time())
    rec = record.Record(now + 3600, now + 3000, record.config_stamp(str(env.config_path)), EMAIL, token)
    env.record_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    record.write(str(env.record_dir / "work.token"), rec)


ALL_SCOPES = "IMAP.AccessAsUser.All POP.AccessAsUser.All SMTP.Send"


@pytest.fixture
def tls(tmp_path) -> TestTLS:
    return TestTLS(tmp_path / "exchange-tls")


PROTOCOLS = ("imap", "pop", "smtp")


def _doctor(
    env: Env, tls: TestTLS, scenario: Scenario, token: str, protocols: tuple[str, ...] = PROTOCOLS, *extra: str
) -> tuple[int, dict[str, str]]:
    _write_record(env, token)
    with FakeExchange(tls, scenario) as server:
        result = env.run("test", "work", *server.urls(protocols), "--cafile", str(tls.ca_pem), *extra, timeout=60)
    assert token not in result.stdout + result.stderr
    if result.returncode == 0:
        assert result.stderr == "", result.stderr
    else:
        assert result.stderr.startswith("mailtoken: work: ") and result.stderr.endswith(
            " failed (see the lines above)\n"
        )
    return result.returncode, _lines(result.stdout)


def test_exchange_all_ok(env: Env, tls: TestTLS) -> None:
    scenario = Scenario()
    token = _jwt(aud="https://outlook.office.com", upn=EMAIL, scp=ALL_SCOPES, exp=int(time.time()) + 3600)
    code, lines = _doctor(env, tls, scenario, token)
    assert code == 0, lines
    assert f"for {EMAIL}, audience https://outlook.office.com, scopes {ALL_SCOPES}" in lines["token"]
    assert lines["IMAP"].endswith('ok: "AUTHENTICATE completed.": INBOX holds 3 messages')
    assert lines["POP"].endswith('ok: "+OK User successfully authenticated.": STAT: 3 messages')
    assert lines["SMTP"].endswith('ok: "235 2.7.0 Authentication successful": no mail sent')
    expected = f"user={EMAIL}\x01auth=Bearer {token}\x01\x01"
    assert sorted(scenario.received) == sorted([("imap", expected), ("pop", expected), ("smtp", expected)])


def test_the_token_line_says_who_signed_in_when_it_is_not_the_configured_email(env: Env, tls: TestTLS) -> None:
    """Issue 12: the id token's user (kept at login) beside the configured email, when they differ."""
    state = env.state_dir / "accounts"
    state.mkdir(mode=0o700, parents=True, exist_ok=True)
    (state / "work.json").write_text('{"store": "file", "username": "bob@fabrikam.com", "signed_in": 1}')
    (state / "work.json").chmod(0o600)
    token = _jwt(aud="https://outlook.office.com", upn=EMAIL, scp=ALL_SCOPES, exp=int(time.time()) + 3600)
    code, lines = _doctor(env, tls, Scenario(), token, ("imap",))
    assert code == 0, lines
    assert f"signed in as bob@fabrikam.com, not the configured email {EMAIL}" in lines["token"]


def test_exchange_authenticated_but_not_connected(env: Env, tls: TestTLS) -> None:
    code, lines = _doctor(env, tls, Scenario(imap="not_connected"), "tok-1234", ("imap",))
    assert code == 77
    assert '"BAD User is authenticated but not connected."' in lines["IMAP"]
    assert "signed in, but the mailbox is not reachable" in lines["IMAP"]
    assert f"'Get-CASMailbox -Identity {EMAIL} | Format-List ImapEnabled')" in lines["IMAP"]


def test_exchange_token_for_another_mailbox(env: Env, tls: TestTLS) -> None:
    token = _jwt(upn="bob@contoso.com", scp=ALL_SCOPES)
    code, lines = _doctor(env, tls, Scenario(imap="not_connected", pop="refused"), token, ("imap", "pop"))
    assert code == 77
    for proto in ("IMAP", "POP"):
        assert f"the token belongs to bob@contoso.com, not {EMAIL}" in lines[proto], lines


def test_exchange_shared_mailbox_goes_in_user(env: Env, tls: TestTLS) -> None:
    scenario = Scenario()
    code, lines = _doctor(env, tls, scenario, "tok-1234", ("imap",), "--user", "team@contoso.com")
    assert code == 0, lines
    assert scenario.received == [("imap", "user=team@contoso.com\x01auth=Bearer tok-1234\x01\x01")]


def test_exchange_wrong_scope(env: Env, tls: TestTLS) -> None:
    token = _jwt(upn=EMAIL, scp="IMAP.AccessAsUser.All SMTP.Send")
    code, lines = _doctor(env, tls, Scenario(pop="refused"), token)
    assert code == 77
    assert " ok: " in lines["IMAP"] and " ok: " in lines["SMTP"]
    assert '"-ERR Authentication failure: unknown user name or bad password."' in lines["POP"]
    assert "the token lacks POP.AccessAsUser.All" in lines["POP"]


@pytest.mark.parametrize(
    ("smtp", "diagnosis"),
    [
        ("tenant", f"SMTP AUTH is disabled for the whole tenant: an Exchange admin enables it for this mailbox "
                   f"with 'Set-CASMailbox -Identity {EMAIL} -SmtpClientAuthenticationDisabled $false'"),
        ("mailbox", f"SMTP AUTH is disabled for this mailbox: an Exchange admin runs 'Set-CASMailbox -Identity "
                    f"{EMAIL} -SmtpClientAuthenticationDisabled $false'"),
        ("security_defaults", "security defaults block SMTP AUTH"),
        ("conditional_access", "a Conditional Access policy refused this sign-in"),
        ("refused", "the server refused the token. Usual causes: "),
    ],
)  # fmt: skip
def test_exchange_smtp_refusals(env: Env, tls: TestTLS, smtp: str, diagnosis: str) -> None:
    code, lines = _doctor(env, tls, Scenario(smtp=smtp), "tok-1234", ("smtp",))
    assert code == 77
    assert list(lines) == ["token", "SMTP"]
    assert "FAILED" in lines["SMTP"] and diagnosis in lines["SMTP"], lines["SMTP"]
    assert '"535 5.7.' in lines["SMTP"]


def test_exchange_without_xoauth2(env: Env, tls: TestTLS) -> None:
    code, lines = _doctor(env, tls, Scenario(smtp="no_xoauth2"), "tok-1234", ("smtp",))
    assert code == 78
    assert '"EHLO AUTH LOGIN"' in lines["SMTP"] and "offers no XOAUTH2 for SMTP" in lines["SMTP"]


# --- units -------------------------------------------------------------------------------------------------


def test_default_servers_come_from_the_catalog() -> None:
    acct = Account(name="work", email=EMAIL, client_id="x")
    servers = doctor.servers(acct, {}, None)
    assert [(s.protocol, str(s), s.implicit_tls) for s in servers] == [
        ("imap", "outlook.office365.com:993", True),
        ("pop", "outlook.office365.com:995", True),
        ("smtp", "smtp.office365.com:587", False),
    ]
    gov = Account(name="gov", email=EMAIL, client_id="x", cloud="usgov")
    assert [str(s) for s in doctor.servers(gov, {"smtp": ""}, None)] == ["smtp.office365.us:587"]
    assert [str(s) for s in doctor.servers(acct, {"imap": "", "pop": ""}, "10.0.0.1")] == [
        "10.0.0.1:993",
        "10.0.0.1:995",
    ]


@pytest.mark.parametrize(
    ("proto", "spec", "expected"),
    [
        ("imap", "imap://mail.test", ("mail.test", 993, False)),
        ("imap", "imap://mail.test:143", ("mail.test", 143, False)),
        ("imap", "mail.test:1993", ("mail.test", 1993, False)),
        ("pop", "pop3s://[::1]:995", ("::1", 995, True)),
        ("smtp", "smtps://mail.test:465", ("mail.test", 465, True)),
        ("smtp", "mail.test:465", ("mail.test", 465, True)),
    ],
)
def test_parse_server(proto: str, spec: str, expected: tuple[str, int, bool]) -> None:
    s = doctor.parse_server(proto, spec, "default.test", doctor.DEFAULT_PORTS[proto])
    assert (s.host, s.port, s.implicit_tls) == expected


def test_parse_server_refuses_a_wrong_scheme() -> None:
    from mailtoken.errors import UsageError

    with pytest.raises(UsageError, match="'https://' is not a IMAP URL scheme"):
        doctor.parse_server("imap", "https://x", "d", 993)
