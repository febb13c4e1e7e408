"""IMAP for the bridge: the local client's pre-auth dialogue and the XOAUTH2 sign-in upstream. Pure, no I/O.

ClientSide speaks IMAP4rev1 to a password-only client until it has logged in (greeting, CAPABILITY, ID, NOOP,
LOGOUT, STARTTLS, LOGIN with quoted strings or literals, AUTHENTICATE PLAIN with or without SASL-IR) and then
asks the I/O layer to splice. UpstreamSide (imap_upstream.py) signs in to the real server with XOAUTH2.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from mailtoken.bridge.events import Close, Event, Login, LoginResult, Send, Splice, StartTLS
from mailtoken.bridge.imap_upstream import UpstreamSide
from mailtoken.bridge.lines import take_line
from mailtoken.bridge.plain import clean as _clean
from mailtoken.bridge.plain import decode_b64, parse_plain

__all__ = ["DEFAULT_CAPABILITIES", "ClientSide", "UpstreamSide"]

MAX_LITERAL = 8192  # a user name or a password; LITERAL- allows 4096 (RFC 7888)
MAX_ERRORS = 10  # bad commands before the bridge gives up on a client
# Until an upstream has been seen (probe or first login): IMAP4rev1, SASL-IR and AUTH=PLAIN only, so that no
# client counts on an extension the upstream may lack.
DEFAULT_CAPABILITIES: list[str] = []
# Capabilities the bridge must not pass on: it does the authentication and the TLS itself.
_HIDDEN = ("AUTH=", "STARTTLS", "LOGINDISABLED", "SASL-IR", "IMAP4REV1")
_LITERAL_AT_END = re.compile(rb"\{(\d{1,10})(\+?)\}$")
_TAG_BAD = frozenset(b'(){ %*"\\+')
# What take_line's refusals are answered with, before the connection is closed.
_BAD = {
    "tls": b"* BAD TLS handshake on a plain connection: use STARTTLS or plain IMAP\r\n",
    "long": b"* BAD Line too long\r\n",
    "control": b"* BAD Control characters in command\r\n",
}


def _filter_caps(caps: Iterable[str]) -> list[str]:
    out: list[str] = []
    for cap in caps:
        if not cap or cap.upper().startswith(_HIDDEN) or cap.upper() in (c.upper() for c in out):
            continue
        out.append(cap)
    return out


def _as_caps(capabilities: object) -> list[str]:
    if isinstance(capabilities, str):
        return capabilities.split()
    if isinstance(capabilities, Iterable):
        return [str(c) for c in capabilities]
    return []


class _Syntax(Exception):
    pass


def _tokens(segments: list[tuple[str, bytes]]) -> list[bytes]:
    """Split a command (text segments and literal values) into atoms, quoted strings and literals.

    A literal's value comes as its own token; parenthesised lists are returned as their raw atoms (ID's
    argument is the only list the bridge sees, and it does not read it)."""
    out: list[bytes] = []
    for kind, data in segments:
        if kind == "lit":
            out.append(data)
            continue
        i, n = 0, len(data)
        while i < n:
            ch = data[i]
            if ch == 0x20:
                i += 1
            elif ch == 0x22:  # quoted string
                i += 1
                value = bytearray()
                while True:
                    if i >= n:
                        raise _Syntax("unterminated quoted string")
                    c = data[i]
                    if c == 0x5C:
                        if i + 1 >= n or data[i + 1] not in (0x22, 0x5C):
                            raise _Syntax("bad escape in quoted string")
                        value.append(data[i + 1])
                        i += 2
                    elif c == 0x22:
                        i += 1
                        break
                    else:
                        value.append(c)
                        i += 1
                out.append(bytes(value))
            else:
                j = i
                while j < n and data[j] not in (0x20, 0x22):
                    j += 1
                out.append(data[i:j])
                i = j
    return out


class ClientSide:
    """The local client's side, from the greeting until its login is accepted."""

    def __init__(
        self,
        *,
        capabilities: object = (),
        tls_active: bool = False,
        starttls_available: bool = False,
        max_line: int = 8192,
        require_tls: bool = False,
    ) -> None:
        self.upstream_caps = _filter_caps(_as_caps(capabilities))
        self.tls_active = tls_active
        self.starttls_available = starttls_available
        self.require_tls = require_tls  # LOGINDISABLED until STARTTLS
        self.max_line = max_line
        self.buf = bytearray()
        self.state = "command"  # command | literal | sasl | login | closed | spliced
        self.segments: list[tuple[str, bytes]] = []
        self.size = 0  # bytes of the command so far, literals included
        self.literal_left = 0
        self.literal = bytearray()
        self.tag = b""
        self.errors = 0

    # -- capabilities ----------------------------------------------------------------------------------

    @property
    def login_allowed(self) -> bool:
        return self.tls_active or not self.require_tls

    def capability_line(self) -> str:
        caps = ["IMAP4rev1", *self.upstream_caps]
        if self.starttls_available and not self.tls_active:
            caps.append("STARTTLS")
        if self.login_allowed:
            caps += ["SASL-IR", "AUTH=PLAIN"]
        else:
            caps.append("LOGINDISABLED")
        return " ".join(caps)

    def post_login_capability_line(self) -> str:
        return " ".join(["IMAP4rev1", *self.upstream_caps])

    # -- the interface ---------------------------------------------------------------------------------

    def greeting(self) -> list[Event]:
        return [Send(f"* OK [CAPABILITY {self.capability_line()}] mailtoken bridge ready\r\n".encode())]

    def receive(self, data: bytes) -> list[Event]:
        if self.state in ("closed", "spliced"):
            return []
        self.buf += data
        if self.state == "login":
            return self._bounded_wait()
        events: list[Event] = []
        try:
            self._run(events)
        except Exception:  # a parser bug must not take the connection's task down with a traceback
            events += self._fatal(b"* BAD Internal error\r\n")
        return events

    def login_done(self, result: LoginResult, text: str) -> list[Event]:
        if self.state != "login":
            return []
        tag, text = self.tag, _clean(text)
        if result == "ok":
            self.state = "spliced"
            line = f"{tag.decode()} OK [CAPABILITY {self.post_login_capability_line()}] Logged in\r\n"
            pending, self.buf = bytes(self.buf), bytearray()
            return [Send(line.encode()), Splice(pending)]
        code = "UNAVAILABLE" if result == "temporary" else "AUTHENTICATIONFAILED"
        events: list[Event] = [Send(tag + f" NO [{code}] {text}\r\n".encode())]
        self.state = "command"
        self._reset()
        try:
            self._run(events)
        except Exception:
            events += self._fatal(b"* BAD Internal error\r\n")
        return events

    # -- input -----------------------------------------------------------------------------------------

    def _bounded_wait(self) -> list[Event]:
        # Waiting for the upstream login: a client may pipeline a little, never unboundedly.
        if len(self.buf) > 4 * self.max_line:
            return self._fatal(b"* BYE Too much input before the login completed\r\n")
        return []

    def _reset(self) -> None:
        self.segments, self.size, self.literal_left, self.literal = [], 0, 0, bytearray()

    def _fatal(self, line: bytes) -> list[Event]:
        self.state = "closed"
        self.buf = bytearray()
        return [Send(line), Close()]

    def _run(self, events: list[Event]) -> None:
        while self.state in ("command", "literal", "sasl") and self.buf:
            if self.state == "literal":
                take = min(self.literal_left, len(self.buf))
                self.literal += self.buf[:take]
                del self.buf[:take]
                self.literal_left -= take
                if self.literal_left == 0:
                    self.segments.append(("lit", bytes(self.literal)))
                    self.literal = bytearray()
                    self.state = "command"
                continue
            line, why = take_line(self.buf, self.max_line, not self.segments and self.state == "command")
            if line is None:
                if why:
                    events += self._fatal(_BAD[why])
                return
            if self.state == "sasl":
                events += self._sasl_response(line)
                continue
            self._command_line(line, events)

    def _command_line(self, line: bytes, events: list[Event]) -> None:
        m = _LITERAL_AT_END.search(line)
        if m:
            n, nonsync = int(m.group(1)), bool(m.group(2))
            head = line[: m.start()]
            if n > MAX_LITERAL:
                tag = self._tag_of(head if self.segments == [] else self.segments[0][1])
                self._reset()
                if nonsync:  # its bytes are on their way and cannot be skipped safely
                    events += self._fatal(tag + b" BAD Literal too big\r\n")
                else:
                    events += self._error(tag + b" BAD Literal too big\r\n")
                return
            self.segments.append(("text", head))
            self.size += len(line) + n
            if self.size > 4 * self.max_line:
                events += self._fatal(b"* BAD Command too long\r\n")
                return
            if not nonsync:
                events.append(Send(b"+ Ready for literal data\r\n"))
            self.literal_left = n
            self.state = "literal"
            if n == 0:
                self.segments.append(("lit", b""))
                self.state = "command"
            return
        self.segments.append(("text", line))
        segments = self.segments
        self._reset()
        events += self._dispatch(segments)

    def _tag_of(self, head: bytes) -> bytes:
        tag = head.split(b" ", 1)[0]
        return tag if tag and not any(c in _TAG_BAD for c in tag) and tag.isascii() else b"*"

    def _error(self, line: bytes) -> list[Event]:
        self.errors += 1
        if self.errors >= MAX_ERRORS:
            return self._fatal(line.rstrip(b"\r\n") + b"\r\n* BYE Too many errors\r\n")
        return [Send(line)]

    # -- commands --------------------------------------------------------------------------------------

    def _dispatch(self, segments: list[tuple[str, bytes]]) -> list[Event]:
        first = segments[0][1] if segments and segments[0][0] == "text" else b""
        if not first.strip() and len(segments) == 1:
            return self._error(b"* BAD Empty command line\r\n")
        tag = self._tag_of(first)
        if tag == b"*":
            return self._error(b"* BAD Invalid tag\r\n")
        try:
            tokens = _tokens(segments)
        except _Syntax as exc:
            return self._error(tag + f" BAD {exc}\r\n".encode())
        if len(tokens) < 2 or not tokens[1]:
            return self._error(tag + b" BAD Missing command\r\n")
        command = tokens[1].upper()
        args = tokens[2:]
        handler = _COMMANDS.get(command)
        if handler is None:
            return self._error(tag + b" BAD Command unknown or not valid before login\r\n")
        return handler(self, tag, args)

    def _capability(self, tag: bytes, args: list[bytes]) -> list[Event]:
        return [Send(f"* CAPABILITY {self.capability_line()}\r\n".encode() + tag + b" OK CAPABILITY completed\r\n")]

    def _noop(self, tag: bytes, args: list[bytes]) -> list[Event]:
        return [Send(tag + b" OK NOOP completed\r\n")]

    def _id(self, tag: bytes, args: list[bytes]) -> list[Event]:
        return [Send(b'* ID ("name" "mailtoken")\r\n' + tag + b" OK ID completed\r\n")]

    def _logout(self, tag: bytes, args: list[bytes]) -> list[Event]:
        return self._fatal(b"* BYE Logging out\r\n" + tag + b" OK LOGOUT completed\r\n")

    def _starttls(self, tag: bytes, args: list[bytes]) -> list[Event]:
        if self.tls_active or not self.starttls_available:
            return self._error(tag + b" BAD STARTTLS not available\r\n")
        self.tls_active = True
        # Whatever the client sent after STARTTLS in plaintext must not count as sent under TLS.
        self.buf = bytearray()
        return [Send(tag + b" OK Begin TLS negotiation now\r\n"), StartTLS()]

    def _login(self, tag: bytes, args: list[bytes]) -> list[Event]:
        if not self.login_allowed:
            return self._error(tag + b" NO [PRIVACYREQUIRED] Use STARTTLS before LOGIN\r\n")
        if len(args) != 2 or not args[0]:
            return self._error(tag + b" BAD LOGIN needs a user name and a password\r\n")
        user, password = (a.decode("utf-8", "replace") for a in args)
        return self._login_event(tag, user, password)

    def _login_event(self, tag: bytes, user: str, password: str) -> list[Event]:
        self.tag = tag
        self.state = "login"
        return [Login(user, password)]

    def _authenticate(self, tag: bytes, args: list[bytes]) -> list[Event]:
        if not args or not args[0] or len(args) > 2:
            return self._error(tag + b" BAD AUTHENTICATE needs a mechanism\r\n")
        if args[0].upper() != b"PLAIN":
            return self._error(tag + b" NO [CANNOT] Unsupported authentication mechanism\r\n")
        if not self.login_allowed:
            return self._error(tag + b" NO [PRIVACYREQUIRED] Use STARTTLS before AUTHENTICATE\r\n")
        if len(args) == 2:
            return self._plain(tag, args[1])
        self.tag = tag
        self.state = "sasl"
        return [Send(b"+ \r\n")]

    def _sasl_response(self, line: bytes) -> list[Event]:
        self.state = "command"
        if line.strip() == b"*":
            return self._error(self.tag + b" BAD AUTHENTICATE cancelled\r\n")
        return self._plain(self.tag, line or b"=")

    def _plain(self, tag: bytes, response: bytes) -> list[Event]:
        raw = decode_b64(response)
        if raw is None:
            return self._error(tag + b" BAD Invalid base64 in AUTHENTICATE\r\n")
        creds = parse_plain(raw)
        if creds is None:
            return self._error(tag + b" NO [AUTHENTICATIONFAILED] Malformed PLAIN response\r\n")
        return self._login_event(tag, *creds)


_COMMANDS = {
    b"CAPABILITY": ClientSide._capability,
    b"NOOP": ClientSide._noop,
    b"ID": ClientSide._id,
    b"LOGOUT": ClientSide._logout,
    b"STARTTLS": ClientSide._starttls,
    b"LOGIN": ClientSide._login,
    b"AUTHENTICATE": ClientSide._authenticate,
}
