"""The bridge's POP3 machines, driven byte by byte: the local AUTHORIZATION state and the XOAUTH2 sign-in upstream.

Pure: no sockets (real clients and servers are in tests/test_bridge_pop3.py). Replies are checked against
RFC 1939/2449/5034/3206 and Exchange's two-step AUTH; hypothesis throws arbitrary bytes and chunkings at both.
"""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailtoken.bridge.events import Authenticated, Close, Failed, Login, Send, Splice, StartTLS
from mailtoken.bridge.pop3 import ClientSide, UpstreamSide

PURE = settings(max_examples=300, deadline=None, database=None)
EXO_CAPA = ["TOP", "UIDL", "SASL PLAIN XOAUTH2", "USER"]
DOVECOT_CAPA = ["CAPA", "TOP", "UIDL", "RESP-CODES", "PIPELINING", "AUTH-RESP-CODE", "USER", "SASL XOAUTH2"]


def sent(events) -> bytes:
    return b"".join(e.data for e in events if isinstance(e, Send))


def logins(events) -> list[tuple[str, str]]:
    return [(e.user, e.password) for e in events if isinstance(e, Login)]


def b64(raw: bytes) -> bytes:
    return base64.b64encode(raw)


def machine(**kw) -> ClientSide:
    return ClientSide(capabilities=kw.pop("capabilities", DOVECOT_CAPA), **kw)


def capa(m: ClientSide) -> list[str]:
    reply = sent(m.receive(b"CAPA\r\n")).decode()
    assert reply.startswith("+OK") and reply.endswith("\r\n.\r\n")
    return reply.split("\r\n")[1:-2]


def test_greeting_is_ok() -> None:
    assert sent(machine().greeting()).startswith(b"+OK ")


def test_capa_lists_the_upstreams_extensions_and_the_local_logins() -> None:
    lines = capa(machine(starttls_available=True))
    assert {"TOP", "UIDL", "PIPELINING", "USER", "SASL PLAIN", "STLS", "RESP-CODES", "AUTH-RESP-CODE"} <= set(lines)
    assert "SASL XOAUTH2" not in lines and lines.count("USER") == 1


def test_stls_then_capa_again_without_stls() -> None:
    m = machine(starttls_available=True, require_tls=True)
    assert "USER" not in capa(m) and "STLS" in capa(m)
    assert sent(m.receive(b"USER u\r\n")).startswith(b"-ERR [AUTH]")
    events = m.receive(b"STLS\r\nUSER injected\r\n")
    assert sent(events) == b"+OK Begin TLS negotiation\r\n" and events[-1] == StartTLS()
    lines = capa(m)
    assert "STLS" not in lines and "USER" in lines and "SASL PLAIN" in lines
    assert sent(m.receive(b"STLS\r\n")).startswith(b"-ERR")


def test_pass_may_hold_spaces() -> None:
    m = machine()
    assert sent(m.receive(b"USER alice@contoso.com\r\n")) == b"+OK\r\n"
    assert logins(m.receive(b"PASS correct horse battery staple\r\n")) == [
        ("alice@contoso.com", "correct horse battery staple")
    ]


def test_pass_without_user_is_refused() -> None:
    events = machine().receive(b"PASS x\r\n")
    assert sent(events).startswith(b"-ERR") and not logins(events)


def test_auth_plain_in_one_line_and_in_two_steps() -> None:
    assert logins(machine().receive(b"AUTH PLAIN " + b64(b"\0u@x\0p w") + b"\r\n")) == [("u@x", "p w")]
    m = machine()
    assert sent(m.receive(b"auth plain\r\n")) == b"+ \r\n"
    assert logins(m.receive(b64(b"shared@x\0u@x\0pw") + b"\r\n")) == [("shared@x", "pw")]


def test_star_cancels_auth_and_empty_plain_is_refused() -> None:
    m = machine()
    m.receive(b"AUTH PLAIN\r\n")
    assert sent(m.receive(b"*\r\n")) == b"-ERR AUTH cancelled\r\n"
    assert sent(m.receive(b"AUTH PLAIN =\r\n")).startswith(b"-ERR [AUTH]")
    assert sent(m.receive(b"AUTH XOAUTH2 abc\r\n")).startswith(b"-ERR")
    assert sent(m.receive(b"AUTH\r\n")) == b"+OK\r\nPLAIN\r\n.\r\n"


def test_ok_splices_with_pipelined_bytes() -> None:
    m = machine()
    m.receive(b"USER u\r\nPASS p\r\nSTAT\r\n")
    assert m.receive(b"LIST\r\n") == []
    events = m.login_done("ok", "")
    assert sent(events) == b"+OK Logged in.\r\n" and events[-1] == Splice(b"STAT\r\nLIST\r\n")


@pytest.mark.parametrize(
    "result, text, reply",
    [
        ("bad_password", "", b"-ERR [AUTH] Authentication failed\r\n"),
        ("signin_required", "sign-in required: run 'mailtoken login work'",
         b"-ERR [AUTH] sign-in required: run 'mailtoken login work'\r\n"),
        ("temporary", "upstream down", b"-ERR [SYS/TEMP] upstream down\r\n"),
    ],
)  # fmt: skip
def test_failed_logins_get_rfc3206_codes_and_the_session_goes_on(result, text, reply) -> None:
    m = machine()
    m.receive(b"USER u\r\nPASS p\r\nCAPA\r\n")
    events = m.login_done(result, text)
    assert sent(events).startswith(reply + b"+OK Capability list follows\r\n")
    assert sent(m.receive(b"PASS p\r\n")).startswith(b"-ERR USER first")


def test_quit_and_unknown_commands() -> None:
    m = machine()
    assert sent(m.receive(b"STAT\r\n")).startswith(b"-ERR")
    assert sent(m.receive(b"APOP u 0123\r\n")).startswith(b"-ERR")
    events = m.receive(b"QUIT\r\n")
    assert sent(events).startswith(b"+OK") and events[-1] == Close()


CLIENT_HELLO = bytes.fromhex("16030100f4010000f00303") + bytes(range(32))


@pytest.mark.parametrize("garbage", [CLIENT_HELLO, b"USER a\x00b\r\n", b"x" * 9000, b"PASS " + b"y" * 9000 + b"\n"])
def test_binary_tls_and_overlong_input_get_err_and_close(garbage: bytes) -> None:
    events = machine().receive(garbage)
    assert sent(events).startswith(b"-ERR") and events[-1] == Close()


def test_too_many_bad_commands_close() -> None:
    events = machine().receive(b"FOO\r\n" * 20)
    assert events[-1] == Close() and sent(events).count(b"-ERR") == 10


SESSION = b"CAPA\r\nUSER u\r\nPASS a b\r\nAUTH PLAIN\r\n" + b64(b"\0v\0c d") + b"\r\nAUTH PLAIN =\r\nQUIT\r\n"


def run_session(chunks: list[bytes]) -> tuple[bytes, list]:
    m = machine()
    out, creds = [], []
    for chunk in chunks:
        events = m.receive(chunk)
        while any(isinstance(e, Login) for e in events):
            creds += logins(events)
            out.append(sent(events))
            events = m.login_done("bad_password", "no")
        out.append(sent(events))
    return b"".join(out), creds


def test_every_split_of_a_session_gives_the_same_replies() -> None:
    whole = run_session([SESSION])
    assert whole[1] == [("u", "a b"), ("v", "c d")] and whole[0].endswith(b"+OK Bye\r\n")
    for i in range(len(SESSION) + 1):
        assert run_session([SESSION[:i], SESSION[i:]]) == whole, i
    assert run_session([SESSION[i : i + 1] for i in range(len(SESSION))]) == whole


ATOMS = st.sampled_from(
    [b"CAPA", b"USER", b"PASS", b"AUTH", b"PLAIN", b"STLS", b"QUIT", b"=", b"*", b" ", b"\r\n", b"\n", b"\r",
     b"\x00", b"\x16\x03\x01", b"\xff", b"AHUAcA==", b"x" * 300]
)  # fmt: skip
RESULTS = st.sampled_from(["ok", "bad_password", "signin_required", "temporary"])


@PURE
@given(
    data=st.lists(st.one_of(ATOMS, st.binary(max_size=40)), max_size=60).map(b"".join),
    cuts=st.lists(st.integers(0, 5000), max_size=8),
    results=st.lists(RESULTS, max_size=5),
    tls=st.booleans(),
)
def test_no_input_raises_grows_or_leaves_the_machine_stuck(data, cuts, results, tls) -> None:
    m = ClientSide(capabilities=EXO_CAPA, tls_active=tls, starttls_available=not tls, require_tls=True)
    events, last = [], 0
    for cut in [*sorted(c % (len(data) + 1) for c in cuts), len(data)]:
        batch = m.receive(data[last:cut])
        last = max(last, cut)
        while True:
            events += batch
            if not any(isinstance(e, Login) for e in batch):
                break
            batch = m.login_done(results.pop() if results else "bad_password", "no")
    for event in events:
        assert isinstance(event, (Send, Login, Splice, Close, StartTLS))
        if isinstance(event, Send):
            assert event.data.endswith(b"\r\n")
    closing = [i for i, e in enumerate(events) if isinstance(e, (Close, Splice))]
    assert not closing or closing[0] == len(events) - 1
    assert len(m.buf) <= 4 * 8192
    m.receive(b"x" * 20000)
    assert m.state in ("closed", "spliced")


# -- upstream -------------------------------------------------------------------------------------------------

USER, TOKEN = "alice@contoso.com", "EwBAAl3BAAUFFpUAo7J3Ve0bjLBW-secret-token"
XOAUTH2 = b64(f"user={USER}\x01auth=Bearer {TOKEN}\x01\x01".encode())


def upstream(starttls: bool = False) -> UpstreamSide:
    return UpstreamSide(user=USER, token=TOKEN, starttls=starttls)


def test_exchange_two_step_auth_over_implicit_tls() -> None:
    u = upstream()
    assert u.receive(b"+OK The Microsoft Exchange POP3 service is ready. [QgBO]\r\n") == [Send(b"CAPA\r\n")]
    assert u.receive(b"+OK\r\nTOP\r\nUIDL\r\nSASL PLAIN XOAUTH2\r\nUSER\r\n.\r\n") == [Send(b"AUTH XOAUTH2\r\n")]
    assert u.capabilities == EXO_CAPA
    assert u.receive(b"+ \r\n") == [Send(XOAUTH2 + b"\r\n")]
    assert u.receive(b"+OK User successfully authenticated.\r\n") == [Authenticated()]


def test_stls_on_110_then_capa() -> None:
    u = upstream(starttls=True)
    assert u.receive(b"+OK ready\r\n") == [Send(b"STLS\r\n")]
    assert u.receive(b"+OK Begin TLS\r\n+OK injected\r\n") == [StartTLS(), Send(b"CAPA\r\n")]
    assert u.receive(b"-ERR unknown command\r\n") == [Send(b"AUTH XOAUTH2\r\n")]  # no CAPA: try anyway


def test_dovecot_error_challenge_gets_an_empty_line() -> None:
    u = upstream()
    u.receive(b"+OK Dovecot ready.\r\n+OK\r\nSASL XOAUTH2\r\n.\r\n+ \r\n")
    assert u.receive(b"+ " + b64(b'{"status":"invalid_token"}') + b"\r\n") == [Send(b"\r\n")]
    [failed] = u.receive(b"-ERR [AUTH] Authentication failed.\r\n")
    assert failed.kind == "auth" and "invalid_token" in failed.text and TOKEN not in failed.text


@pytest.mark.parametrize(
    "replies, kind",
    [
        ([b"-ERR busy\r\n"], "temporary"),
        ([b"+OK\r\n", b"+OK\r\nSASL PLAIN\r\n.\r\n"], "protocol"),
        ([b"+OK\r\n", b"-ERR\r\n", b"-ERR Protocol error. Connection is closed. 10\r\n"], "protocol"),
        ([b"+OK\r\n", b"-ERR\r\n", b"+ \r\n", b"-ERR [SYS/TEMP] try later\r\n"], "temporary"),
        ([b"+OK\r\n", b"-ERR\r\n", b"+ \r\n", b"-ERR [IN-USE] mailbox locked\r\n"], "temporary"),
        ([b"+OK\r\n", b"-ERR\r\n", b"+ \r\n", b"-ERR Authentication failure: unknown user name or bad password.\r\n"],
         "auth"),
    ],
)  # fmt: skip
def test_upstream_refusals_are_classified(replies: list[bytes], kind: str) -> None:
    u = upstream()
    events = [e for r in replies for e in u.receive(r)]
    failed = [e for e in events if isinstance(e, Failed)]
    assert [f.kind for f in failed] == [kind]
    assert u.receive(b"+OK\r\n") == []


def test_probe_learns_capa_and_signs_in_nowhere() -> None:
    u = UpstreamSide(user="", token="", starttls=False, probe_only=True)
    u.receive(b"+OK hi\r\n")
    assert u.receive(b"+OK\r\nTOP\r\nSASL XOAUTH2\r\n.\r\n") == [Send(b"QUIT\r\n"), Authenticated()]
    assert u.capabilities == ["TOP", "SASL XOAUTH2"]


SERVER_ATOMS = st.sampled_from(
    [b"+OK", b"-ERR", b"+ ", b"+ eyJ9", b".", b"..x", b"SASL XOAUTH2", b"[SYS/TEMP]", b"\r\n", b"\n", b"\xff\x00",
     b"x" * 200]
)  # fmt: skip


@PURE
@given(data=st.lists(st.one_of(SERVER_ATOMS, st.binary(max_size=30)), max_size=40).map(b"".join), tls=st.booleans())
def test_no_server_reply_raises_or_leaks_the_token(data: bytes, tls: bool) -> None:
    u = upstream(tls)
    events = []
    for i in range(0, len(data), 5):
        events += u.receive(data[i : i + 5])
    finals = [i for i, e in enumerate(events) if isinstance(e, (Authenticated, Failed))]
    assert len(finals) <= 1 and (not finals or finals[0] == len(events) - 1)
    assert all(TOKEN not in e.text for e in events if isinstance(e, Failed))
    assert TOKEN not in repr(u)
    u.receive(b"x" * 70000)
    assert u.state == "done"
