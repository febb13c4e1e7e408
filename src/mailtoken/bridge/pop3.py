"""POP3 for the bridge: the local client's pre-auth dialogue and the XOAUTH2 sign-in upstream. Pure, no I/O.

ClientSide speaks POP3 to a password-only client in the AUTHORIZATION state (greeting, CAPA, STLS, USER/PASS,
AUTH PLAIN in one line or two steps, QUIT) and then asks the I/O layer to splice. UpstreamSide signs in with
the two-step `AUTH XOAUTH2` -> `+` -> response, the only form Exchange Online accepts (the one-line form gets
`-ERR Protocol error`) and the one that keeps long tokens off the command line (Dovecot: ~1 KiB commands).
"""

from __future__ import annotations

from mailtoken.bridge.events import (
    Authenticated,
    Close,
    Event,
    Failed,
    FailKind,
    Login,
    LoginResult,
    Send,
    Splice,
    StartTLS,
    UpstreamEvent,
)
from mailtoken.bridge.lines import LineUpstream, take_line
from mailtoken.bridge.plain import clean, decode_b64, parse_plain

# What take_line's refusals are answered with, before the connection is closed.
_ERR = {
    "tls": b"-ERR TLS handshake on a plain connection: use STLS or plain POP3\r\n",
    "long": b"-ERR Line too long\r\n",
    "control": b"-ERR Control characters in command\r\n",
}

MAX_ERRORS = 10
DEFAULT_CAPABILITIES: list[str] = []  # until an upstream has been seen
# CAPA lines the bridge answers for itself (it does the authentication and the TLS).
_HIDDEN = ("SASL", "STLS", "USER", "RESP-CODES", "AUTH-RESP-CODE")


def _caps(capabilities: object) -> list[str]:
    if isinstance(capabilities, str):
        lines = capabilities.splitlines()
    elif isinstance(capabilities, (list, tuple)):
        lines = [str(c) for c in capabilities]
    else:
        lines = []
    return [c for c in lines if c.strip() and c.split()[0].upper() not in _HIDDEN]


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
        self.upstream_caps = _caps(capabilities)
        self.tls_active = tls_active
        self.starttls_available = starttls_available
        self.require_tls = require_tls
        self.max_line = max_line
        self.buf = bytearray()
        self.state = "command"  # command | sasl | login | closed | spliced
        self.user: str | None = None
        self.errors = 0

    @property
    def login_allowed(self) -> bool:
        return self.tls_active or not self.require_tls

    def capa_lines(self) -> list[str]:
        lines = [*self.upstream_caps, "RESP-CODES", "AUTH-RESP-CODE"]
        if self.login_allowed:
            lines += ["USER", "SASL PLAIN"]
        if self.starttls_available and not self.tls_active:
            lines.append("STLS")
        return lines

    # -- the interface ---------------------------------------------------------------------------------

    def greeting(self) -> list[Event]:
        return [Send(b"+OK mailtoken bridge ready\r\n")]

    def receive(self, data: bytes) -> list[Event]:
        if self.state in ("closed", "spliced"):
            return []
        self.buf += data
        if self.state == "login":
            if len(self.buf) > 4 * self.max_line:
                return self._fatal(b"-ERR Too much input before the login completed\r\n")
            return []
        events: list[Event] = []
        try:
            self._run(events)
        except Exception:  # a parser bug must not take the connection's task down with a traceback
            events += self._fatal(b"-ERR Internal error\r\n")
        return events

    def login_done(self, result: LoginResult, text: str) -> list[Event]:
        if self.state != "login":
            return []
        if result == "ok":
            self.state = "spliced"
            pending, self.buf = bytes(self.buf), bytearray()
            return [Send(b"+OK Logged in.\r\n"), Splice(pending)]
        code = "SYS/TEMP" if result == "temporary" else "AUTH"
        events: list[Event] = [Send(f"-ERR [{code}] {clean(text)}\r\n".encode())]
        self.state, self.user = "command", None
        try:
            self._run(events)
        except Exception:
            events += self._fatal(b"-ERR Internal error\r\n")
        return events

    # -- input -----------------------------------------------------------------------------------------

    def _fatal(self, line: bytes) -> list[Event]:
        self.state = "closed"
        self.buf = bytearray()
        return [Send(line), Close()]

    def _error(self, line: bytes) -> list[Event]:
        self.errors += 1
        if self.errors >= MAX_ERRORS:
            return self._fatal(line.rstrip(b"\r\n") + b" (too many errors)\r\n")
        return [Send(line)]

    def _run(self, events: list[Event]) -> None:
        while self.state in ("command", "sasl") and self.buf:
            line, why = take_line(self.buf, self.max_line, self.state == "command")
            if line is None:
                if why:
                    events += self._fatal(_ERR[why])
                return
            if self.state == "sasl":
                self.state = "command"
                if line.strip() == b"*":
                    events += self._error(b"-ERR AUTH cancelled\r\n")
                else:
                    events += self._plain(line or b"=")
                continue
            events += self._command(line)

    def _command(self, line: bytes) -> list[Event]:
        word, _, arg = line.partition(b" ")
        command = word.upper()
        if command == b"CAPA":
            text = "".join(f"{c}\r\n" for c in self.capa_lines())
            return [Send(f"+OK Capability list follows\r\n{text}.\r\n".encode())]
        if command == b"QUIT":
            return self._fatal(b"+OK Bye\r\n")
        if command == b"STLS":
            if self.tls_active or not self.starttls_available:
                return self._error(b"-ERR STLS not available\r\n")
            self.tls_active = True
            self.buf = bytearray()  # plaintext sent after STLS must not count as sent under TLS
            return [Send(b"+OK Begin TLS negotiation\r\n"), StartTLS()]
        if command in (b"USER", b"PASS", b"AUTH") and not self.login_allowed:
            return self._error(b"-ERR [AUTH] Use STLS before logging in\r\n")
        if command == b"USER":
            if not arg.strip():
                return self._error(b"-ERR USER needs a name\r\n")
            self.user = arg.strip().decode("utf-8", "replace")
            return [Send(b"+OK\r\n")]
        if command == b"PASS":
            if self.user is None:
                return self._error(b"-ERR USER first\r\n")
            # The password is everything after "PASS ": it may hold spaces (RFC 1939).
            self.state = "login"
            return [Login(self.user, arg.decode("utf-8", "replace"))]
        if command == b"AUTH":
            mech, _, initial = arg.strip().partition(b" ")
            if not mech:
                return [Send(b"+OK\r\nPLAIN\r\n.\r\n")]
            if mech.upper() != b"PLAIN":
                return self._error(b"-ERR Unsupported authentication mechanism\r\n")
            if initial.strip():
                return self._plain(initial)
            self.state = "sasl"
            return [Send(b"+ \r\n")]
        if command == b"APOP":
            return self._error(b"-ERR APOP not supported: use USER/PASS or AUTH PLAIN\r\n")
        return self._error(b"-ERR Command unknown or not valid before login\r\n")

    def _plain(self, response: bytes) -> list[Event]:
        raw = decode_b64(response)
        if raw is None:
            return self._error(b"-ERR Invalid base64 in AUTH\r\n")
        creds = parse_plain(raw)
        if creds is None:
            return self._error(b"-ERR [AUTH] Malformed PLAIN response\r\n")
        self.state = "login"
        return [Login(*creds)]


# -- upstream ---------------------------------------------------------------------------------------------


def _kind(text: str) -> FailKind:
    """auth, temporary or protocol, from a -ERR's response code (RFC 2449, RFC 3206) and the servers' wording."""
    upper = text.upper()
    if upper.startswith(("[SYS/TEMP]", "[IN-USE]", "[LOGIN-DELAY]")):
        return "temporary"
    if upper.startswith("[AUTH]") or upper.startswith("[SYS/PERM]"):
        return "auth"
    if "PROTOCOL ERROR" in upper:
        return "protocol"
    return "auth"


class UpstreamSide(LineUpstream):
    """Signs in to the real POP3 server with XOAUTH2; `capabilities` is its CAPA (after TLS) as lines."""

    # state: greeting | stls | capa | capa-list | auth | response | error | done
    PROTOCOL = "pop3"

    def _line(self, line: str) -> list[UpstreamEvent]:
        if self.state == "capa-list":
            if line == ".":
                return self._auth()
            self.capabilities.append(line[1:] if line.startswith("..") else line)
            return []
        ok, err = line.startswith("+OK"), line.startswith("-ERR")
        text = line[4:].strip() if err else line[3:].strip()
        if self.state == "greeting":
            if not ok:
                return [self._fail("temporary", f"upstream refused the connection: {line[:200]}")]
            if self._starttls:
                self.state = "stls"
                return [Send(b"STLS\r\n")]
            self.state = "capa"
            return [Send(b"CAPA\r\n")]
        if self.state == "stls":
            if not ok:
                return [self._fail("protocol", f"upstream refused STLS: {text}")]
            self.buf = bytearray()  # nothing sent before the handshake may count as sent under TLS
            self.state = "capa"
            return [StartTLS(), Send(b"CAPA\r\n")]
        if self.state == "capa":
            if ok:
                self.state = "capa-list"
                return []
            return self._auth()  # a server without CAPA may still know AUTH
        if self.state == "auth":
            if line.startswith("+") and not ok:
                self.state = "response"
                return [Send(self._xoauth2 + b"\r\n")]
            return [self._refused(text if err else line)]
        if self.state in ("response", "error"):
            if ok:
                self.state = "done"
                pending, self.buf = bytes(self.buf), bytearray()
                return [Authenticated(pending)]
            if line.startswith("+") and self.state == "response":
                # Dovecot and Gmail answer a refused token with a JSON challenge and wait for an empty line.
                self.error = (decode_b64(line[1:].strip().encode()) or b"").decode("utf-8", "replace")
                self.state = "error"
                return [Send(b"\r\n")]
            if line.startswith("+"):
                return [Send(b"*\r\n")]
            return [self._refused(text)]
        return [self._fail("protocol", f"unexpected reply from upstream: {line[:80]}")]

    def _auth(self) -> list[UpstreamEvent]:
        if self.probe_only:
            self.state = "done"
            return [Send(b"QUIT\r\n"), Authenticated()]
        sasl = [c.split()[1:] for c in self.capabilities if c.split()[:1] == ["SASL"]]
        if sasl and "XOAUTH2" not in (m.upper() for m in sasl[0]):
            return [self._fail("protocol", "upstream does not offer SASL XOAUTH2")]
        self.state = "auth"
        return [Send(b"AUTH XOAUTH2\r\n")]

    def _refused(self, text: str) -> Failed:
        detail = f" ({self.error})" if self.error else ""
        return self._fail(_kind(text), f"upstream refused XOAUTH2: {text}{detail}")
