"""The bridge's IMAP machines, driven byte by byte: the local pre-auth dialogue and the XOAUTH2 sign-in upstream.

Pure: no sockets. What a real client and a real server say is in tests/test_bridge_imap.py; here every reply
is checked against the RFCs' wording and the quirks the notes record, and hypothesis throws arbitrary bytes,
chunkings, literals and binary at both machines: nothing raises, nothing waits forever, nothing grows unbounded.
"""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailtoken.bridge.events import Authenticated, Close, Failed, Login, Send, Splice, StartTLS
from mailtoken.bridge.imap import ClientSide, UpstreamSide

PURE = settings(max_examples=300, deadline=None, database=None)
DOVECOT_CAPS = "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT LITERAL+ AUTH=XOAUTH2 AUTH=OAUTHBEARER"
EXO_POST = (
    "IMAP4 IMAP4rev1 AUTH=PLAIN AUTH=XOAUTH2 SASL-IR UIDPLUS MOVE ID UNSELECT CLIENTACCESSRULES "
    "CLIENTNETWORKPRESENCELOCATION BACKENDAUTHENTICATE CHILDREN IDLE NAMESPACE LITERAL+"
)


def sent(events) -> bytes:
    return b"".join(e.data for e in events if isinstance(e, Send))


def logins(events) -> list[tuple[str, str]]:
    return [(e.user, e.password) for e in events if isinstance(e, Login)]


def b64(raw: bytes) -> bytes:
    return base64.b64encode(raw)


def machine(**kw) -> ClientSide:
    return ClientSide(capabilities=kw.pop("capabilities", DOVECOT_CAPS), **kw)


# -- capabilities ---------------------------------------------------------------------------------------------


def test_greeting_carries_the_upstream_caps_minus_its_auth_plus_plain() -> None:
    line = sent(machine().greeting()).decode()
    assert line.startswith("* OK [CAPABILITY IMAP4rev1 ") and line.endswith("] mailtoken bridge ready\r\n")
    caps = line.split("[CAPABILITY ", 1)[1].split("]", 1)[0].split()
    assert "AUTH=XOAUTH2" not in caps and "AUTH=OAUTHBEARER" not in caps
    assert {"AUTH=PLAIN", "SASL-IR", "IDLE", "LITERAL+", "ID", "SORT"} <= set(caps)
    assert caps.count("IMAP4rev1") == 1 and caps.count("SASL-IR") == 1


def test_capability_offers_starttls_until_tls_is_on() -> None:
    m = machine(starttls_available=True)
    assert b" STARTTLS" in sent(m.receive(b"a CAPABILITY\r\n"))
    events = m.receive(b"b STARTTLS\r\n")
    assert sent(events) == b"b OK Begin TLS negotiation now\r\n" and isinstance(events[-1], StartTLS)
    again = sent(m.receive(b"c CAPABILITY\r\n"))
    assert b"STARTTLS" not in again and again.endswith(b"c OK CAPABILITY completed\r\n")
    assert sent(m.receive(b"d STARTTLS\r\n")).startswith(b"d BAD")


def test_logindisabled_before_tls_when_tls_is_required() -> None:
    m = machine(starttls_available=True, require_tls=True)
    caps = sent(m.receive(b"a CAPABILITY\r\n"))
    assert b"LOGINDISABLED" in caps and b"AUTH=PLAIN" not in caps
    assert sent(m.receive(b'b LOGIN "u" "p"\r\n')).startswith(b"b NO [PRIVACYREQUIRED]")
    assert sent(m.receive(b"c AUTHENTICATE PLAIN " + b64(b"\0u\0p") + b"\r\n")).startswith(b"c NO [PRIVACYREQUIRED]")
    m.receive(b"d STARTTLS\r\n")
    caps = sent(m.receive(b"e CAPABILITY\r\n"))
    assert b"LOGINDISABLED" not in caps and b"AUTH=PLAIN" in caps
    assert logins(m.receive(b'f LOGIN "u" "p"\r\n')) == [("u", "p")]


def test_post_login_ok_carries_the_upstream_post_login_caps() -> None:
    m = machine(capabilities=EXO_POST.split())
    m.receive(b"a1 LOGIN me@contoso.com pw\r\n")
    events = m.login_done("ok", "")
    line = sent(events).decode()
    assert line.startswith("a1 OK [CAPABILITY IMAP4rev1 ") and "MOVE" in line and "AUTH=" not in line
    assert isinstance(events[-1], Splice)


# -- LOGIN ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command, expected",
    [
        (b"a LOGIN alice@contoso.com s3cret\r\n", ("alice@contoso.com", "s3cret")),
        (b'a LOGIN "alice@contoso.com" "with space"\r\n', ("alice@contoso.com", "with space")),
        (b'a login "u" "quote\\" and \\\\ backslash"\r\n', ("u", 'quote" and \\ backslash')),
        (b'a LOGIN "u" ""\r\n', ("u", "")),
        (b'a LOGIN u {5+}\r\np"w\\d\r\n', ("u", 'p"w\\d')),
        (b'a LOGIN {1+}\r\nu "x"\n', ("u", "x")),  # bare LF, as some clients send
        ("a LOGIN jürgen@example.de pässwörd\r\n".encode(), ("jürgen@example.de", "pässwörd")),
    ],
)
def test_login_takes_atoms_quoted_strings_and_literals(command: bytes, expected: tuple[str, str]) -> None:
    m = machine()
    events = m.receive(command)
    assert logins(events) == [expected] and sent(events) == b""


def test_synchronizing_literal_gets_a_continuation_before_its_bytes() -> None:
    m = machine()
    assert sent(m.receive(b"a1 LOGIN {17}\r\n")) == b"+ Ready for literal data\r\n"
    assert m.receive(b"alice@contoso.com") == []
    assert sent(m.receive(b" {10}\r\n")) == b"+ Ready for literal data\r\n"
    events = m.receive(b"pass\r\nword\r\n")
    assert logins(events) == [("alice@contoso.com", "pass\r\nword")]


def test_nonsync_literal_gets_no_continuation() -> None:
    events = machine().receive(b"a1 LOGIN {3+}\r\nbob {2+}\r\npw\r\n")
    assert sent(events) == b"" and logins(events) == [("bob", "pw")]


def test_literal_too_big_is_refused_and_the_session_goes_on() -> None:
    m = machine()
    assert sent(m.receive(b"a1 LOGIN {99999}\r\n")).startswith(b"a1 BAD Literal too big")
    assert logins(m.receive(b"a2 LOGIN u p\r\n")) == [("u", "p")]


def test_nonsync_literal_too_big_closes() -> None:
    events = machine().receive(b"a1 LOGIN {99999+}\r\n")
    assert isinstance(events[-1], Close)


@pytest.mark.parametrize("command", [b"a LOGIN\r\n", b"a LOGIN onlyuser\r\n", b"a LOGIN a b c\r\n", b'a LOGIN "u\r\n'])
def test_malformed_login_gets_bad_and_no_login(command: bytes) -> None:
    m = machine()
    events = m.receive(command)
    assert sent(events).startswith(b"a BAD") and not logins(events)
    assert b"* OK" not in sent(events) and not any(isinstance(e, Close) for e in events)


# -- AUTHENTICATE PLAIN ---------------------------------------------------------------------------------------


def test_authenticate_plain_with_an_initial_response() -> None:
    events = machine().receive(b"a AUTHENTICATE PLAIN " + b64(b"\0alice@contoso.com\0pw") + b"\r\n")
    assert logins(events) == [("alice@contoso.com", "pw")]


def test_authenticate_plain_without_sasl_ir_asks_with_a_continuation() -> None:
    m = machine()
    assert sent(m.receive(b"a authenticate plain\r\n")) == b"+ \r\n"
    assert logins(m.receive(b64(b"\0alice\0pw") + b"\r\n")) == [("alice", "pw")]


def test_authzid_names_the_mailbox_to_act_as() -> None:
    events = machine().receive(b"a AUTHENTICATE PLAIN " + b64(b"shared@contoso.com\0alice\0pw") + b"\r\n")
    assert logins(events) == [("shared@contoso.com", "pw")]


def test_empty_initial_response_is_refused() -> None:
    m = machine()
    assert sent(m.receive(b"a AUTHENTICATE PLAIN =\r\n")).startswith(b"a NO [AUTHENTICATIONFAILED]")
    assert logins(m.receive(b"b LOGIN u p\r\n")) == [("u", "p")]


def test_star_cancels_authenticate() -> None:
    m = machine()
    m.receive(b"a AUTHENTICATE PLAIN\r\n")
    assert sent(m.receive(b"*\r\n")) == b"a BAD AUTHENTICATE cancelled\r\n"
    assert sent(m.receive(b"b NOOP\r\n")) == b"b OK NOOP completed\r\n"


@pytest.mark.parametrize("response", [b"!!notbase64", b64(b"no-nuls"), b64(b"\0\0pw"), b64(b"\0u\0")])
def test_bad_plain_responses_get_refused(response: bytes) -> None:
    events = machine().receive(b"a AUTHENTICATE PLAIN " + response + b"\r\n")
    assert sent(events).startswith((b"a BAD", b"a NO")) and not logins(events)


def test_other_mechanisms_are_refused() -> None:
    assert sent(machine().receive(b"a AUTHENTICATE XOAUTH2 abc\r\n")).startswith(b"a NO [CANNOT]")


# -- after the login ------------------------------------------------------------------------------------------


def test_ok_answers_the_clients_tag_and_hands_over_pipelined_bytes() -> None:
    m = machine()
    assert logins(m.receive(b"x9 LOGIN u p\r\nx10 SELECT INBOX\r\n")) == [("u", "p")]
    assert m.receive(b"x11 IDLE\r\n") == []
    events = m.login_done("ok", "")
    assert sent(events).startswith(b"x9 OK ")
    assert events[-1] == Splice(b"x10 SELECT INBOX\r\nx11 IDLE\r\n")
    assert m.receive(b"more") == []


@pytest.mark.parametrize(
    "result, text, reply",
    [
        ("bad_password", "Authentication failed", b"t NO [AUTHENTICATIONFAILED] Authentication failed\r\n"),
        (
            "signin_required",
            "sign-in required: run 'mailtoken login work'",
            b"t NO [AUTHENTICATIONFAILED] sign-in required: run 'mailtoken login work'\r\n",
        ),
        ("temporary", "upstream unreachable\r\n* BYE", b"t NO [UNAVAILABLE] upstream unreachable  * BYE\r\n"),
    ],
)
def test_failed_logins_get_the_protocols_reply_and_the_session_goes_on(result, text, reply) -> None:
    m = machine()
    m.receive(b't LOGIN "u" "p"\r\nn NOOP\r\n')
    events = m.login_done(result, text)
    assert sent(events) == reply + b"n OK NOOP completed\r\n"
    assert logins(m.receive(b"t2 LOGIN u p2\r\n")) == [("u", "p2")]


def test_starttls_drops_plaintext_pipelined_after_it() -> None:
    m = machine(starttls_available=True)
    events = m.receive(b"a STARTTLS\r\nb LOGIN injected pw\r\n")
    assert not logins(events) and isinstance(events[-1], StartTLS)
    assert m.receive(b"") == []


def test_id_noop_logout() -> None:
    m = machine()
    assert sent(m.receive(b'a ID ("name" "fetchmail" "version" "6.4")\r\n')).endswith(b"a OK ID completed\r\n")
    assert sent(m.receive(b"b ID NIL\r\nc NOOP\r\n")).endswith(b"c OK NOOP completed\r\n")
    events = m.receive(b"d LOGOUT\r\n")
    assert sent(events) == b"* BYE Logging out\r\nd OK LOGOUT completed\r\n" and events[-1] == Close()


def test_commands_of_the_authenticated_state_get_bad() -> None:
    assert sent(machine().receive(b"a SELECT INBOX\r\n")).startswith(b"a BAD")


# -- garbage --------------------------------------------------------------------------------------------------

CLIENT_HELLO = bytes.fromhex("16030100f4010000f00303") + bytes(range(32)) + b"\x00\x02\x13\x01\x01\x00"


@pytest.mark.parametrize(
    "garbage",
    [CLIENT_HELLO, b"a LOGIN u p\x00\r\n", b"x" * 9000, b"a LOGIN " + b"x" * 9000 + b"\r\n"],
)
def test_binary_tls_and_overlong_input_get_bad_and_close(garbage: bytes) -> None:
    events = machine().receive(garbage)
    assert sent(events).startswith(b"* BAD") and events[-1] == Close()


def test_eight_bit_tag_gets_bad() -> None:
    assert sent(machine().receive(b"\x80\x81\xfe NOOP\r\n")) == b"* BAD Invalid tag\r\n"


def test_too_many_bad_commands_close() -> None:
    events = machine().receive(b"a FOO\r\n" * 20)
    assert events[-1] == Close() and sent(events).count(b"a BAD") == 10


def test_unterminated_literal_waits_but_stays_bounded() -> None:
    m = machine()
    m.receive(b"a LOGIN {8000+}\r\n")
    assert m.receive(b"x" * 7999) == []
    events = m.receive(b"x" + b"y" * 9000)  # the literal ends; what follows is a line too long
    assert events[-1] == Close()


def test_input_while_the_upstream_login_runs_is_bounded() -> None:
    m = machine()
    m.receive(b"a LOGIN u p\r\n")
    assert m.receive(b"b NOOP\r\n" * 100) == []
    events = m.receive(b"z" * 40000)
    assert events[-1] == Close()


# -- chunking and fuzz ----------------------------------------------------------------------------------------

SESSION = (
    b"a1 CAPABILITY\r\na2 ID NIL\r\na3 LOGIN {5}\r\nalice {3+}\r\nb c\r\n"
    b"b1 AUTHENTICATE PLAIN\r\n" + b64(b"\0bob\0x y") + b"\r\nb2 AUTHENTICATE PLAIN =\r\nb3 NOOP\r\nb4 LOGOUT\r\n"
)


def run_session(chunks: list[bytes]) -> tuple[bytes, list[tuple[str, str]]]:
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
    assert whole[1] == [("alice", "b c"), ("bob", "x y")]
    assert whole[0].count(b"+ Ready for literal data\r\n") == 1 and whole[0].endswith(b"b4 OK LOGOUT completed\r\n")
    for i in range(len(SESSION) + 1):
        assert run_session([SESSION[:i], SESSION[i:]]) == whole, i
    assert run_session([SESSION[i : i + 1] for i in range(len(SESSION))]) == whole


ATOMS = st.sampled_from(
    [b"a1", b"*", b"+", b"LOGIN", b"login", b"AUTHENTICATE", b"PLAIN", b"STARTTLS", b"CAPABILITY", b"NOOP", b"ID",
     b"LOGOUT", b"NIL", b"=", b'"q\\"x"', b'"', b"{3}", b"{2+}", b"{0}", b"{99999}", b"{8193+}", b"(", b")",
     b"\r\n", b"\n", b"\r", b" ", b"\x00", b"\x16\x03\x01", b"\xff", b"AGFsaWNlAHB3", b"x" * 300]
)  # fmt: skip
INPUT = st.lists(st.one_of(ATOMS, st.binary(max_size=40)), max_size=60).map(b"".join)
RESULTS = st.sampled_from(["ok", "bad_password", "signin_required", "temporary"])


def drive(m, data: bytes, cuts: list[int], results) -> list:
    """Feed DATA in chunks at CUTS, answering each Login; return every event."""
    events, last = [], 0
    for cut in [*sorted(c % (len(data) + 1) for c in cuts), len(data)]:
        batch = m.receive(data[last:cut])
        last = max(last, cut)
        while True:
            events += batch
            if not any(isinstance(e, Login) for e in batch):
                break
            batch = m.login_done(results.pop() if results else "bad_password", "no")
    return events


@PURE
@given(
    data=INPUT,
    cuts=st.lists(st.integers(0, 5000), max_size=8),
    results=st.lists(RESULTS, max_size=5),
    tls=st.booleans(),
)
def test_no_input_raises_grows_or_leaves_the_machine_stuck(data, cuts, results, tls) -> None:
    m = ClientSide(capabilities=DOVECOT_CAPS, tls_active=tls, starttls_available=not tls, require_tls=True)
    events = drive(m, data, cuts, results)
    for event in events:
        assert isinstance(event, (Send, Login, Splice, Close, StartTLS))
        if isinstance(event, Send):
            assert event.data.endswith(b"\r\n") and b"\n" not in event.data.replace(b"\r\n", b"")
    closing = [i for i, e in enumerate(events) if isinstance(e, (Close, Splice))]
    assert not closing or closing[0] == len(events) - 1, "nothing may follow a Close or a Splice"
    assert len(m.buf) <= 4 * 8192 + 9000
    # A flood always ends it: a literal cannot swallow more than 8 KiB, a line no more than 8 KiB.
    tail = drive(m, b"x" * 20000 + b"\r\n", [], [])
    done = m.state in ("closed", "spliced")
    assert done, (m.state, tail)


# -- upstream -------------------------------------------------------------------------------------------------

USER, TOKEN = "alice@contoso.com", "eyJ0eXAiOiJKV1QiLCJub25jZSI6IlRPS0VOIn0.secret-token-value"
XOAUTH2 = b64(f"user={USER}\x01auth=Bearer {TOKEN}\x01\x01".encode())


def upstream(starttls: bool = False) -> UpstreamSide:
    return UpstreamSide(user=USER, token=TOKEN, starttls=starttls)


def test_dovecot_greeting_caps_let_the_login_go_in_one_round_trip() -> None:
    u = upstream()
    assert u.receive(f"* OK [CAPABILITY {DOVECOT_CAPS}] Dovecot ready.\r\n".encode()) == [
        Send(b"m2 AUTHENTICATE XOAUTH2 " + XOAUTH2 + b"\r\n")
    ]
    events = u.receive(b"m2 OK [CAPABILITY IMAP4rev1 IDLE MOVE SPECIAL-USE] Logged in\r\n")
    assert events == [Authenticated(b"")]
    assert u.capabilities == ["IMAP4rev1", "IDLE", "MOVE", "SPECIAL-USE"]


def test_starttls_then_capability_then_xoauth2_without_sasl_ir() -> None:
    u = upstream(starttls=True)
    assert u.receive(b"* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] ready\r\n") == [Send(b"m0 STARTTLS\r\n")]
    # Anything after the OK arrived in plaintext and must not be read as if it came under TLS.
    assert u.receive(b"m0 OK Begin TLS\r\n* CAPABILITY INJECTED\r\n") == [StartTLS(), Send(b"m1 CAPABILITY\r\n")]
    assert u.receive(b"* CAPABILITY IMAP4rev1 AUTH=XOAUTH2 IDLE\r\nm1 OK done\r\n") == [
        Send(b"m2 AUTHENTICATE XOAUTH2\r\n")
    ]
    assert u.receive(b"+ \r\n") == [Send(XOAUTH2 + b"\r\n")]
    assert u.receive(b"m2 OK [CAPABILITY IMAP4rev1 IDLE] Logged in\r\n* 1 EXISTS\r\n") == [
        Authenticated(b"* 1 EXISTS\r\n")
    ]


def test_exchange_ok_is_checked_with_a_capability_round_trip() -> None:
    u = upstream()
    u.receive(b"* OK The Microsoft Exchange IMAP4 service is ready. [QgBO]\r\n")
    u.receive(f"* CAPABILITY {EXO_POST}\r\nm1 OK CAPABILITY completed.\r\n".encode())
    assert u.receive(b"m2 OK AUTHENTICATE completed.\r\n") == [Send(b"m3 CAPABILITY\r\n")]
    assert u.receive(f"* CAPABILITY {EXO_POST}\r\nm3 OK CAPABILITY completed.\r\n".encode()) == [Authenticated()]
    assert "MOVE" in u.capabilities


def test_untagged_capabilities_before_the_ok_need_no_second_round_trip() -> None:
    u = upstream()
    u.receive(b"* OK Gimap ready for requests from 127.0.0.1\r\n")
    u.receive(b"* CAPABILITY IMAP4rev1 UNSELECT IDLE NAMESPACE SASL-IR AUTH=XOAUTH2\r\nm1 OK Thats all she wrote!\r\n")
    events = u.receive(b"* CAPABILITY IMAP4rev1 IDLE QUOTA ID X-GM-EXT-1\r\nm2 OK a@b authenticated (Success)\r\n")
    assert events == [Authenticated()] and "X-GM-EXT-1" in u.capabilities


def test_exchange_authenticated_but_not_connected_is_a_clear_failure() -> None:
    u = upstream()
    u.receive(b"* OK The Microsoft Exchange IMAP4 service is ready.\r\n")
    u.receive(f"* CAPABILITY {EXO_POST}\r\nm1 OK CAPABILITY completed.\r\n".encode())
    u.receive(b"m2 OK AUTHENTICATE completed.\r\n")
    [failed] = u.receive(b"m3 BAD User is authenticated but not connected.\r\n* BYE Connection closed. 14\r\n")
    assert failed.kind == "auth" and "not connected" in failed.text and "mailtoken test" in failed.text


def test_gmail_error_continuation_gets_an_empty_line_then_the_no() -> None:
    u = upstream()
    u.receive(b"* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=XOAUTH2] Gimap ready\r\n")
    challenge = b64(b'{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}')
    assert u.receive(b"+ " + challenge + b"\r\n") == [Send(b"\r\n")]
    [failed] = u.receive(b"m2 NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)\r\n")
    assert failed.kind == "auth" and '"status":"401"' in failed.text


@pytest.mark.parametrize(
    "replies, kind",
    [
        ([b"* BYE Too many connections\r\n"], "temporary"),
        ([b"* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=XOAUTH2] x\r\n", b"m2 NO [UNAVAILABLE] Temporary failure\r\n"],
         "temporary"),
        ([b"* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=XOAUTH2] x\r\n",
          b"m2 BAD Request is throttled. Suggested Backoff Time: 89117 milliseconds\r\n"], "temporary"),
        ([b"* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=XOAUTH2] x\r\n",
          b"* BYE Request is throttled. Suggested Backoff Time: 89117 milliseconds\r\n"], "temporary"),
        ([b"* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=XOAUTH2] x\r\n", b"m2 NO AUTHENTICATE failed.\r\n"], "auth"),
        ([b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] x\r\n"], "protocol"),
        ([b"* PREAUTH welcome\r\n"], "protocol"),
        ([b"220 smtp.example.org ESMTP\r\n"], "protocol"),
    ],
)  # fmt: skip
def test_upstream_refusals_are_classified(replies: list[bytes], kind: str) -> None:
    u = upstream()
    events = [e for r in replies for e in u.receive(r)]
    failed = [e for e in events if isinstance(e, Failed)]
    assert [f.kind for f in failed] == [kind] and TOKEN not in failed[0].text
    assert u.receive(b"m2 OK\r\n") == []


SERVER_ATOMS = st.sampled_from(
    [b"* OK ", b"* BYE ", b"* CAPABILITY ", b"[CAPABILITY ", b"]", b"IMAP4rev1 ", b"AUTH=XOAUTH2 ", b"SASL-IR ",
     b"m0 OK ", b"m1 OK ", b"m2 OK ", b"m3 OK ", b"m2 NO ", b"m3 BAD ", b"+ ", b"+ eyJ9", b"\r\n", b"\n",
     b"User is authenticated but not connected", b"\xff\x00", b"x" * 200]
)  # fmt: skip


@PURE
@given(
    data=st.lists(st.one_of(SERVER_ATOMS, st.binary(max_size=30)), max_size=40).map(b"".join),
    starttls=st.booleans(),
)
def test_no_server_reply_raises_or_leaks_the_token(data: bytes, starttls: bool) -> None:
    u = upstream(starttls)
    events = []
    for i in range(0, len(data), 7):
        events += u.receive(data[i : i + 7])
    finals = [i for i, e in enumerate(events) if isinstance(e, (Authenticated, Failed))]
    assert len(finals) <= 1 and (not finals or finals[0] == len(events) - 1)
    for event in events:
        if isinstance(event, Failed):
            assert TOKEN not in event.text and XOAUTH2.decode() not in event.text
        if isinstance(event, Send):
            assert event.data.endswith(b"\r\n")
    assert TOKEN not in repr(u)
    u.receive(b"x" * 70000)
    assert u.state == "done"
