"""Issue 14, the bridge's Graph upstream: an SMTP listener with `upstream = "graph"` takes the message after local
AUTH and submits it with Microsoft Graph (the fake Graph beside the fake Entra, the real msal), answering DATA
with 250 only after Graph's 202. The client is the real msmtp with `auth plain` and a local password.
"""

from __future__ import annotations

import re
import smtplib
import subprocess
import time
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailtoken import config
from mailtoken.bridge import smtp_submit
from mailtoken.bridge.events import Close, Send
from mailtoken.errors import ConfigError
from tests import graphenv
from tests.conftest import EMAIL, Env, require
from tests.fakes.entra import FakeEntra
from tests.fakes.graph import FakeGraph
from tests.graphenv import crlf
from tests.servers import drivers
from tests.servers.bridge import BridgeProcess, ServeTable

graph, sender = graphenv.graph, graphenv.sender  # fixtures
TO, CC, HIDDEN = "bob@fabrikam.com", "carol@fabrikam.com", "hidden@fabrikam.com"
MESSAGE = (
    f"From: Zoë <{EMAIL}>\n"
    f"To: Bob <{TO}>\n"
    f"Cc: {CC}\n"
    f"Bcc: {HIDDEN}\n"
    "Subject: =?utf-8?q?Scan_f=C3=BCr_Bob?=\n"
    "Date: Wed, 02 Dec 2026 01:00:00 +0000\n"
    "Message-ID: <scan-1@contoso.com>\n"
    "MIME-Version: 1.0\n"
    "Content-Type: text/plain; charset=utf-8\n"
    "Content-Transfer-Encoding: 8bit\n"
    "\n"
    "Grüße from the printer.\n"
    ".a line that starts with a dot\n"
    "..and one with two\n"
).encode()


def _expected(written: bytes, hidden: list[str]) -> bytes:
    """What Graph must get: CRLF line ends, the Bcc field replaced by one naming the envelope-only recipients."""
    head, sep, body = crlf(written).partition(b"\r\n\r\n")
    kept = [f for f in re.split(rb"\r\n(?![ \t])", head) if not f.lower().startswith(b"bcc:")]
    kept += [b"Bcc: " + ", ".join(hidden).encode()] if hidden else []
    return b"\r\n".join(kept) + sep + body


def _msmtp(env: Env, port: int, password: str, *recipients: str, message: bytes = MESSAGE):
    rc = drivers.write(
        env.home / ".msmtprc-graph",
        f"account work\nhost 127.0.0.1\nport {port}\ntls off\nauth plain\nuser {EMAIL}\npassword {password}\n"
        f"from {EMAIL}\n",
    )
    return subprocess.run(
        ["msmtp", "-C", str(rc), "-a", "work", *recipients],
        input=message,
        capture_output=True,
        env=env.vars,
        timeout=90,
    )


@pytest.fixture
def bridge(sender: Env) -> Iterator[BridgeProcess]:
    with BridgeProcess(sender, [ServeTable("smtp", upstream="graph")]) as running:
        yield running


def test_msmtp_auth_plain_through_the_bridge_reaches_graph_byte_exact_with_bcc_kept_out(
    bridge: BridgeProcess, graph: FakeGraph
) -> None:
    require("msmtp")
    password = bridge.password("printer")
    run = _msmtp(bridge.env, bridge.tables[0].port, password, TO, CC, HIDDEN)
    assert run.returncode == 0, f"{run.stderr!r}\n{bridge.log()}"
    [sent] = graph.sent
    assert sent.mailbox == EMAIL
    assert sorted(sent.recipients) == sorted([TO, CC, HIDDEN])
    assert sent.mime == _expected(MESSAGE, [HIDDEN])  # dot-stuffing undone, 8-bit bytes as written
    assert HIDDEN.encode() not in sent.delivered and b"\r\nbcc:" not in sent.delivered.lower()
    line = bridge.wait_log("accepted by Graph")
    assert "3 recipient(s)" in line
    assert "1 message(s) sent with Graph" in bridge.wait_log("closed (authenticated")
    assert password not in bridge.log()


def test_graph_refusals_reach_the_client_as_451_or_550_and_nothing_is_sent(
    bridge: BridgeProcess, graph: FakeGraph
) -> None:
    require("msmtp")
    password = bridge.password("printer")
    port = bridge.tables[0].port
    graph.inject("status", count=50, status=503, retry_after=1)
    run = _msmtp(bridge.env, port, password, TO, CC, HIDDEN)
    assert run.returncode != 0 and b"451" in run.stderr, run.stderr
    assert graph.sent == []
    assert "not sent: 451" in bridge.wait_log("not sent")
    with graph._lock:
        graph._faults.clear()
    # Another user's From without Send As: Graph's 403 ErrorSendAsDenied, a permanent refusal.
    other = MESSAGE.replace(f"From: Zoë <{EMAIL}>".encode(), b"From: ceo@contoso.com")
    run = _msmtp(bridge.env, port, password, TO, CC, message=other.replace(f"Bcc: {HIDDEN}\n".encode(), b""))
    assert run.returncode != 0 and b"550" in run.stderr and b"ErrorSendAsDenied" in run.stderr, run.stderr
    assert graph.sent == []


def test_the_graph_listener_advertises_size_and_no_chunking_and_refuses_mail_before_auth(
    bridge: BridgeProcess, graph: FakeGraph
) -> None:
    password = bridge.password("script")
    with smtplib.SMTP("127.0.0.1", bridge.tables[0].port, "localhost", timeout=30) as smtp:
        smtp.ehlo()
        assert smtp.has_extn("size") and int(smtp.esmtp_features["size"]) == 2 * 1024 * 1024
        assert not smtp.has_extn("chunking") and smtp.has_extn("auth")
        assert smtp.mail(EMAIL)[0] == 530
        smtp.login(EMAIL, password)
        assert smtp.docmd("BDAT", "10 LAST")[0] == 502
        assert smtp.mail(EMAIL, ["SIZE=999999999"])[0] == 552
        smtp.rset()
        # smtplib's own path: envelope recipients decide, the To header names one of them.
        smtp.sendmail(EMAIL, [TO, HIDDEN], f"From: {EMAIL}\r\nTo: {TO}\r\nSubject: x\r\n\r\nhi\r\n")
    [sent] = graph.sent
    assert sorted(sent.recipients) == sorted([TO, HIDDEN]) and HIDDEN.encode() not in sent.delivered


def test_a_wrong_password_on_the_graph_listener_gets_535_and_graph_hears_nothing(
    bridge: BridgeProcess, graph: FakeGraph
) -> None:
    bridge.password("printer")
    port = bridge.tables[0].port
    with (
        smtplib.SMTP("127.0.0.1", port, "localhost", timeout=30) as smtp,
        pytest.raises(smtplib.SMTPAuthenticationError) as exc,
    ):
        smtp.login(EMAIL, "not-the-password")
    assert exc.value.smtp_code == 535 and graph.requests == []


def test_a_revoked_grant_fails_the_auth_with_the_sign_in_text_before_any_message(
    bridge: BridgeProcess, graph: FakeGraph, fake: FakeEntra
) -> None:
    password = bridge.password("printer")
    fake.revoke(EMAIL)
    (bridge.env.record_dir / "work~graph.token").unlink()  # no cached Graph token: the login must refresh
    with smtplib.SMTP("127.0.0.1", bridge.tables[0].port, "localhost", timeout=60) as smtp:
        smtp.ehlo()
        smtp.user, smtp.password = EMAIL, password
        with pytest.raises(smtplib.SMTPAuthenticationError) as exc:
            smtp.auth("PLAIN", smtp.auth_plain)
    assert exc.value.smtp_code == 535 and b"sign-in required: run 'mailtoken login work'" in exc.value.smtp_error
    assert graph.requests == [] and password not in bridge.log()


def test_sigterm_ends_an_idle_authenticated_graph_session_with_421_and_exits_0(
    bridge: BridgeProcess, graph: FakeGraph
) -> None:
    password = bridge.password("printer")
    smtp = smtplib.SMTP("127.0.0.1", bridge.tables[0].port, "localhost", timeout=30)
    smtp.login(EMAIL, password)
    started = time.monotonic()
    assert bridge.stop() == 0
    assert time.monotonic() - started < 5  # not the 10 s drain: nothing was in flight
    code, text = smtp.getreply()
    assert code == 421 and b"shutting down" in text
    assert "closed by shutdown" in bridge.log()


# -- config ---------------------------------------------------------------------------------------------------

GRAPH_ACCOUNT = f'[accounts.work]\nemail = "{EMAIL}"\nclient_id = "x"\nsend = "graph"\n'


def _refused(serve: str, accounts: str = GRAPH_ACCOUNT) -> str:
    with pytest.raises(ConfigError) as exc:
        config.parse(accounts + serve, "/cfg.toml")
    assert exc.value.exit_code == 78
    return exc.value.message


def test_upstream_graph_is_for_smtp_listeners_of_microsoft_accounts_that_send_with_graph() -> None:
    (lst,) = config.parse(GRAPH_ACCOUNT + '[[serve]]\nprotocol = "smtp"\nupstream = "graph"\n', "/c").serve
    assert (lst.upstream, lst.upstream_tls) == ("graph", None)
    assert 'needs protocol = "smtp"' in _refused('[[serve]]\nprotocol = "imap"\nupstream = "graph"\n')
    msg = _refused('[[serve]]\nprotocol = "smtp"\nupstream = "graph"\nupstream_tls = "implicit"\n')
    assert msg.startswith("/cfg.toml: [[serve]] #1 (smtp) upstream_tls: means nothing")
    assert 'needs send = "graph"' in _refused(
        '[[serve]]\nprotocol = "smtp"\nupstream = "graph"\n', GRAPH_ACCOUNT.replace('send = "graph"\n', "")
    )
    google = f'[accounts.work]\nprovider = "google"\nemail = "{EMAIL}"\nclient_id = "x"\nclient_secret = "y"\n'
    assert "needs a Microsoft account" in _refused('[[serve]]\nprotocol = "smtp"\nupstream = "graph"\n', google)


# -- the pure machine -----------------------------------------------------------------------------------------


def _sent(events: list[smtp_submit.SubmitEvent]) -> bytes:
    return b"".join(e.data for e in events if isinstance(e, Send))


def test_submit_machine_unstuffs_dots_answers_data_only_after_the_outcome_and_keeps_pipelined_commands() -> None:
    m = smtp_submit.SubmitSide(max_size=1000)
    out = m.receive(b"MAIL FROM:<a@b.example> BODY=8BITMIME\r\nRCPT TO:<c@d.example>\r\nDATA\r\n")
    assert _sent(out) == b"250 2.1.0 OK\r\n250 2.1.5 OK\r\n354 End data with <CR><LF>.<CR><LF>\r\n"
    out = m.receive(b"Subject: x\r\n\r\n..dot\r\n.\r\nQUIT\r\n")
    [submit] = out
    assert isinstance(submit, smtp_submit.Submit)
    assert (submit.sender, submit.recipients, submit.data) == (
        "a@b.example",
        ("c@d.example",),
        b"Subject: x\r\n\r\n.dot\r\n",
    )
    out = m.submitted(451, "4.3.0 try later")
    assert _sent(out) == b"451 4.3.0 try later\r\n221 2.0.0 Bye\r\n" and isinstance(out[-1], Close)


def test_submit_machine_refuses_an_oversized_message_after_reading_it_and_stays_usable() -> None:
    m = smtp_submit.SubmitSide(max_size=10)
    m.receive(b"MAIL FROM:<>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n")
    out = m.receive(b"x" * 200_000 + b"\r\n.\r\nNOOP\r\n")
    assert _sent(out).startswith(b"552 5.3.4") and _sent(out).endswith(b"250 2.0.0 OK\r\n")
    assert not any(isinstance(e, smtp_submit.Submit) for e in out)


_verbs = st.sampled_from([b"EHLO x", b"MAIL FROM:<a@b.example>", b"RCPT TO:<c@d.example>", b"DATA", b".", b"RSET"])
_noise = st.binary(max_size=300) | _verbs.map(lambda v: v + b"\r\n")


@settings(max_examples=300, deadline=None)
@given(st.lists(_noise, max_size=30), st.integers(0, 2000))
def test_submit_machine_never_raises_on_any_input(chunks: list[bytes], max_size: int) -> None:
    m = smtp_submit.SubmitSide(max_size=max_size)
    for chunk in chunks:
        for event in m.receive(chunk):
            assert isinstance(event, (Send, Close, smtp_submit.Submit))
            if isinstance(event, smtp_submit.Submit):
                assert len(event.data) <= max_size and event.recipients
                m.submitted(250, "2.0.0 ok")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=3000), st.lists(st.integers(1, 400), max_size=20))
def test_submit_machine_gets_the_same_message_whatever_the_chunking(body: bytes, cuts: list[int]) -> None:
    lines = body.replace(b"\r", b"").split(b"\n")
    message = b"".join(line + b"\r\n" for line in lines)
    stuffed = b"".join((b"." + line if line.startswith(b".") else line) + b"\r\n" for line in lines)
    wire = b"MAIL FROM:<>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n" + stuffed + b".\r\n"
    m = smtp_submit.SubmitSide(max_size=10**6)
    events: list[smtp_submit.SubmitEvent] = []
    at = 0
    for cut in cuts:
        events += m.receive(wire[at : at + cut])
        at += cut
    events += m.receive(wire[at:])
    [submit] = [e for e in events if isinstance(e, smtp_submit.Submit)]
    assert submit.data == message


def test_submit_machine_keeps_a_long_line_whole_when_a_chunk_ends_between_its_cr_and_lf() -> None:
    m = smtp_submit.SubmitSide(max_size=10**6)
    m.receive(b"MAIL FROM:<>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n")
    long = b"x" * 100_000
    assert m.receive(b"..dot\r\n" + long + b"\r") == []
    [submit] = m.receive(b"\n..y\r\n.\r\n")
    assert isinstance(submit, smtp_submit.Submit) and submit.data == b".dot\r\n" + long + b"\r\n.y\r\n"
