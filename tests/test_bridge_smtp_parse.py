"""Issue 13: the SMTP machines of the bridge, pure (bytes in, events out), and a hypothesis fuzz of both."""

from __future__ import annotations

import base64

from hypothesis import given, settings
from hypothesis import strategies as st

from mailtoken.bridge.events import Authenticated, Close, Failed, Login, Send, Splice, StartTLS
from mailtoken.bridge.smtp import ClientSide, UpstreamSide

EXO_CAPS = ["SIZE 157286400", "PIPELINING", "DSN", "ENHANCEDSTATUSCODES", "AUTH LOGIN XOAUTH2", "8BITMIME"]


def b64(data: bytes) -> bytes:
    return base64.b64encode(data)


def sent(events) -> bytes:
    return b"".join(e.data for e in events if isinstance(e, Send))


def logins(events) -> list[tuple[str, str]]:
    return [(e.user, e.password) for e in events if isinstance(e, Login)]


def test_ehlo_offers_the_upstreams_extensions_with_local_auth_instead_of_its_own() -> None:
    m = ClientSide(capabilities=EXO_CAPS)
    assert sent(m.greeting()).startswith(b"220 ")
    reply = sent(m.receive(b"EHLO printer\r\n")).decode()
    assert "250-SIZE 157286400\r\n" in reply and "250-PIPELINING" in reply
    assert "XOAUTH2" not in reply and reply.endswith("250 AUTH PLAIN LOGIN\r\n")


def test_auth_plain_with_an_initial_response() -> None:
    m = ClientSide()
    assert logins(m.receive(b"AUTH PLAIN " + b64(b"\0me@x.org\0s3cret pw") + b"\r\n")) == [("me@x.org", "s3cret pw")]


def test_auth_plain_after_a_334_and_the_authorization_identity_as_mailbox() -> None:
    m = ClientSide()
    assert sent(m.receive(b"auth plain\r\n")) == b"334 \r\n"
    assert logins(m.receive(b64(b"team@x.org\0me@x.org\0pw") + b"\r\n")) == [("team@x.org", "pw")]


def test_auth_login_in_two_steps_and_with_the_user_on_the_command_line() -> None:
    m = ClientSide()
    assert sent(m.receive(b"AUTH LOGIN\r\n")) == b"334 VXNlcm5hbWU6\r\n"
    assert sent(m.receive(b64(b"me@x.org") + b"\r\n")) == b"334 UGFzc3dvcmQ6\r\n"
    assert logins(m.receive(b64(b"pw") + b"\r\n")) == [("me@x.org", "pw")]
    m = ClientSide()
    assert sent(m.receive(b"AUTH LOGIN " + b64(b"me@x.org") + b"\r\n")) == b"334 UGFzc3dvcmQ6\r\n"
    assert logins(m.receive(b64(b"pw") + b"\r\n")) == [("me@x.org", "pw")]


def test_login_results_map_to_smtp_replies_and_ok_splices_what_was_pipelined() -> None:
    replies = {"bad_password": b"535 5.7.8", "signin_required": b"535 5.7.8 sign-in", "temporary": b"454 4.7.0"}
    for result, code in replies.items():
        m = ClientSide()
        m.receive(b"AUTH PLAIN " + b64(b"\0u@x.org\0p") + b"\r\n")
        text = "sign-in required: run 'mailtoken login work'" if result == "signin_required" else ""
        assert sent(m.login_done(result, text)).startswith(code)  # type: ignore[arg-type]
    m = ClientSide()
    m.receive(b"AUTH PLAIN " + b64(b"\0u@x.org\0p") + b"\r\nMAIL FROM:<u@x.org>\r\n")
    events = m.login_done("ok", "")
    assert sent(events).startswith(b"235 ") and events[-1] == Splice(b"MAIL FROM:<u@x.org>\r\n")


def test_mail_before_auth_gets_530_and_quit_closes() -> None:
    m = ClientSide()
    assert sent(m.receive(b"MAIL FROM:<a@b.c>\r\n")).startswith(b"530 ")
    events = m.receive(b"QUIT\r\n")
    assert sent(events).startswith(b"221 ") and isinstance(events[-1], Close)


def test_starttls_listener_hides_auth_until_tls_and_drops_pipelined_plaintext() -> None:
    m = ClientSide(starttls_available=True)
    reply = sent(m.receive(b"EHLO x\r\n"))
    assert b"STARTTLS" in reply and b"AUTH" not in reply
    assert sent(m.receive(b"AUTH PLAIN " + b64(b"\0u\0p") + b"\r\n")).startswith(b"530 ")
    events = m.receive(b"STARTTLS\r\nAUTH PLAIN " + b64(b"\0u\0p") + b"\r\n")
    assert isinstance(events[-1], StartTLS) and not logins(events)
    assert b"AUTH PLAIN LOGIN" in sent(m.receive(b"EHLO x\r\n"))


def test_a_tls_hello_on_a_plain_port_and_an_overlong_line_close_the_connection() -> None:
    events = ClientSide().receive(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
    assert isinstance(events[-1], Close) and sent(events).startswith(b"500 ")
    events = ClientSide().receive(b"A" * 9000)
    assert isinstance(events[-1], Close) and b"too long" in sent(events)


def test_upstream_dialogue_like_exchange_starttls_then_two_step_xoauth2() -> None:
    up = UpstreamSide(user="me@x.org", token="TOKEN", starttls=True)
    assert sent(up.receive(b"220 exo ready\r\n")) == b"EHLO localhost\r\n"
    assert sent(up.receive(b"250-exo Hello\r\n250-SIZE 1\r\n250 STARTTLS\r\n")) == b"STARTTLS\r\n"
    events = up.receive(b"220 2.0.0 SMTP server ready\r\n")
    assert isinstance(events[0], StartTLS) and sent(events) == b"EHLO localhost\r\n"
    assert sent(up.receive(b"250-exo Hello\r\n250-AUTH LOGIN XOAUTH2\r\n250 8BITMIME\r\n")) == b"AUTH XOAUTH2\r\n"
    assert up.capabilities == ["AUTH LOGIN XOAUTH2", "8BITMIME"]
    token_line = sent(up.receive(b"334 \r\n"))
    assert base64.b64decode(token_line) == b"user=me@x.org\x01auth=Bearer TOKEN\x01\x01"
    assert up.receive(b"235 2.7.0 Authentication successful\r\n") == [Authenticated(b"")]
    assert "TOKEN" not in repr(up)


def test_upstream_error_challenge_is_answered_and_failures_are_classified() -> None:
    def through_auth(*replies: bytes):
        up = UpstreamSide(user="u", token="t", starttls=False)
        up.receive(b"220 x\r\n")
        up.receive(b"250-x\r\n250 AUTH XOAUTH2\r\n")
        events = []
        for reply in replies:
            events = up.receive(reply)
        return events

    events = through_auth(b"334 \r\n", b"334 eyJzdGF0dXMiOiI0MDEifQ==\r\n")
    assert sent(events) == b"\r\n"
    assert through_auth(b"334 \r\n", b"334 e30=\r\n", b"535 5.7.8 no\r\n") == [
        Failed("auth", "upstream refused the token: 535 5.7.8 no")
    ]
    assert through_auth(b"454 4.7.0 later\r\n")[0].kind == "temporary"  # type: ignore[union-attr]
    up = UpstreamSide(user="u", token="t", starttls=True)
    up.receive(b"220 x\r\n")
    assert up.receive(b"250 x\r\n")[0].kind == "protocol"  # type: ignore[union-attr]  # no STARTTLS offered


chunks = st.lists(st.binary(max_size=300), max_size=30)
lines = st.lists(
    st.one_of(
        st.sampled_from([b"EHLO x", b"AUTH PLAIN", b"AUTH LOGIN", b"STARTTLS", b"MAIL FROM:<a@b>", b"*", b"="]),
        st.binary(max_size=100).map(lambda b: b"AUTH PLAIN " + base64.b64encode(b)),
        st.binary(max_size=100),
    ).map(lambda b: b + b"\r\n"),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(chunks, st.booleans(), st.booleans())
def test_client_machine_never_raises_and_stays_bounded(data: list[bytes], starttls: bool, tls: bool) -> None:
    m = ClientSide(capabilities=EXO_CAPS, starttls_available=starttls, tls_active=tls)
    m.greeting()
    for chunk in data:
        for event in m.receive(chunk):
            assert isinstance(event, (Send, StartTLS, Login, Splice, Close))
            if isinstance(event, Login):
                m.login_done("bad_password", "")
        assert len(m.buf) <= 8192 + 300


@settings(max_examples=300, deadline=None)
@given(lines, st.sampled_from(["ok", "bad_password", "signin_required", "temporary"]))
def test_client_machine_commands_never_raise(commands: list[bytes], result: str) -> None:
    m = ClientSide()
    for line in commands:
        for event in m.receive(line):
            if isinstance(event, Login):
                m.login_done(result, "text")  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(chunks, st.booleans())
def test_upstream_machine_never_raises_on_any_reply(data: list[bytes], starttls: bool) -> None:
    up = UpstreamSide(user="u", token="t", starttls=starttls)
    for chunk in [b"220 x\r\n", *data]:
        for event in up.receive(chunk):
            assert isinstance(event, (Send, StartTLS, Authenticated, Failed))


def test_every_spelling_of_the_upstreams_auth_is_hidden() -> None:
    m = ClientSide(capabilities=["AUTH=LOGIN XOAUTH2", "auth xoauth2", "STARTTLS", "SIZE 10"])
    reply = sent(m.receive(b"EHLO x\r\n")).decode()
    assert "XOAUTH2" not in reply and "STARTTLS" not in reply and "250-SIZE 10" in reply
