"""SMTP for the bridge: the local client's pre-auth dialogue and the upstream XOAUTH2 sign-in. Pure: no I/O.

ClientSide answers EHLO with what the upstream offers (minus its AUTH and STARTTLS) plus `AUTH PLAIN LOGIN`,
takes PLAIN and LOGIN (with or without an initial response, `AUTH LOGIN <b64user>` too), and refuses mail
before authentication (530). After a good login it splices: MAIL, RCPT and DATA then go to the upstream
untouched, so a 250 the client sees is the upstream's own.

UpstreamSide: greeting, EHLO, STARTTLS, EHLO again, `AUTH XOAUTH2` then the string on its own line (Exchange
offers `AUTH LOGIN XOAUTH2` only after STARTTLS; the two-step form also keeps long tokens off the command
line, which servers cap near 512 octets), and the error challenge (`334 <b64 JSON>`) answered with an empty line.
"""

from __future__ import annotations

import base64
import binascii

from .events import (
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

MAX_LINE = 8192
MAX_ERRORS = 10
MAX_AUTH_FAILURES = 3
LOCAL_AUTH = "AUTH PLAIN LOGIN"
DROP_CAPS = ("AUTH", "STARTTLS", "X-EXPS")  # the bridge does these itself (X-EXPS: old AUTH advertisement)


def _dropped(cap: str) -> bool:
    word = cap.split(" ", 1)[0].upper()
    return word.startswith("AUTH") or word in DROP_CAPS  # AUTH=LOGIN is the pre-RFC 4954 spelling


def _b64decode(text: bytes) -> bytes | None:
    if text == b"=":
        return b""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


def _utf8(data: bytes) -> str | None:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _line(code: str, text: str) -> bytes:
    safe = "".join(c if " " <= c <= "~" else "?" for c in text)[:400]
    return f"{code} {safe}\r\n".encode("ascii")


class ClientSide:
    """The local client's side, until it has logged in."""

    def __init__(
        self,
        *,
        capabilities: list[str] | None = None,
        tls_active: bool = False,
        starttls_available: bool = False,
        max_line: int = MAX_LINE,
        hostname: str = "mailtoken",
    ) -> None:
        self.caps = [c for c in (capabilities or []) if not _dropped(c) and c.isprintable() and len(c) < 500]
        self.tls_active = tls_active
        self.starttls_available = starttls_available
        self.max_line = max_line
        self.hostname = hostname
        self.buf = b""
        self.state = "command"  # command | plain | login_user | login_pass | waiting | done
        self.user = ""
        self.errors = 0
        self.auth_failures = 0

    # -- interface -----------------------------------------------------------------------------------------

    def greeting(self) -> list[Event]:
        return [Send(_line("220", f"{self.hostname} ESMTP mailtoken bridge ready"))]

    def receive(self, data: bytes) -> list[Event]:
        if self.state == "done":
            return []
        self.buf += data
        return self._run()

    def login_done(self, result: LoginResult, text: str) -> list[Event]:
        if self.state != "waiting":
            return []
        if result == "ok":
            self.state = "done"
            pending, self.buf = self.buf, b""
            return [Send(b"235 2.7.0 Authentication successful\r\n"), Splice(pending)]
        self.state = "command"
        if result == "temporary":
            out: list[Event] = [Send(_line("454", f"4.7.0 {text or 'Temporary authentication failure'}"))]
        else:
            self.auth_failures += 1
            out = [Send(_line("535", f"5.7.8 {text or 'Authentication credentials invalid'}"))]
            if self.auth_failures >= MAX_AUTH_FAILURES:
                return [*out, Send(b"421 4.7.0 Too many failed logins, closing\r\n"), Close()]
        return out + self._run()

    # -- internals -----------------------------------------------------------------------------------------

    def _run(self) -> list[Event]:
        out: list[Event] = []
        while self.state not in ("waiting", "done"):
            if self.buf[:1] == b"\x16" and self.state == "command":
                # A TLS ClientHello on a plain port: the client expects implicit TLS.
                return [*out, Send(b"500 5.5.1 TLS handshake on a plaintext port (use local_tls)\r\n"), Close()]
            end = self.buf.find(b"\n")
            if end < 0:
                if len(self.buf) > self.max_line:
                    return [*out, Send(b"500 5.5.2 Line too long\r\n"), Close()]
                break
            if end > self.max_line:
                return [*out, Send(b"500 5.5.2 Line too long\r\n"), Close()]
            line, self.buf = self.buf[:end].rstrip(b"\r"), self.buf[end + 1 :]
            events = self._line(line)
            out.extend(events)
            if any(isinstance(e, (Close, StartTLS)) for e in events):
                break
        return out

    def _error(self, reply: bytes) -> list[Event]:
        self.errors += 1
        if self.errors >= MAX_ERRORS:
            return [Send(reply), Send(b"421 4.7.0 Too many errors, closing\r\n"), Close()]
        return [Send(reply)]

    def _line(self, line: bytes) -> list[Event]:
        if self.state == "plain":
            self.state = "command"
            if line == b"*":
                return [Send(b"501 5.7.0 Authentication cancelled\r\n")]
            return self._plain(line)
        if self.state == "login_user":
            if line == b"*":
                self.state = "command"
                return [Send(b"501 5.7.0 Authentication cancelled\r\n")]
            user = _b64decode(line)
            text = _utf8(user) if user is not None else None
            if text is None or not text or "\0" in text:
                self.state = "command"
                return self._error(b"501 5.5.2 Invalid base64 user name\r\n")
            self.user, self.state = text, "login_pass"
            return [Send(b"334 UGFzc3dvcmQ6\r\n")]
        if self.state == "login_pass":
            self.state = "command"
            if line == b"*":
                return [Send(b"501 5.7.0 Authentication cancelled\r\n")]
            password = _b64decode(line)
            text = _utf8(password) if password is not None else None
            if text is None:
                return self._error(b"501 5.5.2 Invalid base64 password\r\n")
            return self._login(self.user, text)
        return self._command(line)

    def _command(self, line: bytes) -> list[Event]:
        try:
            text = line.decode("ascii")
        except UnicodeDecodeError:
            return self._error(b"500 5.5.2 Command not ASCII\r\n")
        verb, _, arg = text.strip().partition(" ")
        verb, arg = verb.upper(), arg.strip()
        if verb == "EHLO":
            if not arg:
                return self._error(b"501 5.5.4 EHLO needs a domain or address\r\n")
            caps = list(self.caps)
            if self.starttls_available and not self.tls_active:
                caps.append("STARTTLS")
            else:
                caps.append(LOCAL_AUTH)
            lines = [f"{self.hostname} greets {arg[:64]}", *caps]
            return [Send("".join(f"250-{x}\r\n" for x in lines[:-1]).encode() + _line("250", lines[-1]))]
        if verb == "HELO":
            return [Send(_line("250", self.hostname))] if arg else self._error(b"501 5.5.4 HELO needs a domain\r\n")
        if verb == "STARTTLS":
            if arg:
                return self._error(b"501 5.5.4 STARTTLS takes no argument\r\n")
            if self.tls_active:
                return self._error(b"503 5.5.1 TLS already active\r\n")
            if not self.starttls_available:
                return self._error(b"454 4.7.0 TLS not available\r\n")
            # Anything pipelined after STARTTLS was sent in clear: drop it (CVE-2011-0411).
            self.buf = b""
            self.tls_active = True
            return [Send(b"220 2.0.0 Ready to start TLS\r\n"), StartTLS()]
        if verb == "AUTH":
            return self._auth(arg)
        if verb in ("MAIL", "RCPT", "DATA", "BDAT", "ETRN", "BURL"):
            return self._error(b"530 5.7.0 Authentication required\r\n")
        if verb in ("RSET", "NOOP"):
            return [Send(b"250 2.0.0 OK\r\n")]
        if verb == "QUIT":
            return [Send(b"221 2.0.0 Bye\r\n"), Close()]
        if verb == "VRFY":
            return [Send(b"252 2.5.0 Cannot VRFY user\r\n")]
        if verb == "HELP":
            return [Send(b"214 2.0.0 mailtoken bridge: EHLO, AUTH, then your mail goes to the real server\r\n")]
        return self._error(b"500 5.5.1 Unrecognized command\r\n")

    def _auth(self, arg: str) -> list[Event]:
        if self.starttls_available and not self.tls_active:
            return self._error(b"530 5.7.0 Must issue a STARTTLS command first\r\n")
        mech, _, initial = arg.partition(" ")
        mech, initial = mech.upper(), initial.strip()
        if mech == "PLAIN":
            if not initial:
                self.state = "plain"
                return [Send(b"334 \r\n")]
            return self._plain(initial.encode())
        if mech == "LOGIN":
            if not initial:
                self.state = "login_user"
                return [Send(b"334 VXNlcm5hbWU6\r\n")]
            self.state = "login_user"
            return self._line(initial.encode())
        if not mech:
            return self._error(b"501 5.5.4 AUTH needs a mechanism\r\n")
        return self._error(b"504 5.5.4 Unrecognized authentication type (use PLAIN or LOGIN)\r\n")

    def _plain(self, response: bytes) -> list[Event]:
        raw = _b64decode(response)
        text = _utf8(raw) if raw is not None else None
        if text is None:
            return self._error(b"501 5.5.2 Invalid base64\r\n")
        parts = text.split("\0")
        if len(parts) != 3 or not parts[1]:
            return self._error(b"501 5.5.2 Invalid PLAIN response\r\n")
        authzid, user, password = parts
        # An authorization identity names the mailbox to act as (a shared one); the password is checked
        # against the account that mailbox belongs to, as for the login name itself.
        return self._login(authzid or user, password)

    def _login(self, user: str, password: str) -> list[Event]:
        self.state = "waiting"
        return [Login(user=user, password=password)]


# --- upstream ------------------------------------------------------------------------------------------------


def parse_ehlo(lines: list[str]) -> list[str]:
    """The keywords of an EHLO reply (its first line is the server's greeting to us)."""
    return [line[4:].strip() for line in lines[1:]]


def auth_mechanisms(caps: list[str]) -> set[str]:
    mechs: set[str] = set()
    for cap in caps:
        word, _, rest = cap.partition(" ")
        if word.upper() in ("AUTH", "AUTH="):
            mechs.update(m.upper() for m in rest.split())
    return mechs


def xoauth2(user: str, token: str) -> bytes:
    return base64.b64encode(f"user={user}\x01auth=Bearer {token}\x01\x01".encode())


class UpstreamSide:
    """Signs in to the real SMTP server with XOAUTH2."""

    def __init__(
        self, *, user: str, token: str, starttls: bool, hostname: str = "localhost", probe_only: bool = False
    ) -> None:
        self.user = user
        self._token = token
        self.starttls = starttls
        self.hostname = hostname
        self.probe_only = probe_only  # stop after the (post-TLS) EHLO: learn the capabilities, sign in nowhere
        self.capabilities: list[str] = []
        self.tls = not starttls  # implicit TLS is already up when the greeting arrives
        self.buf = b""
        self.reply: list[str] = []
        self.state = "greeting"  # greeting | ehlo | starttls | ehlo2 | auth | token | error_ack | done

    def __repr__(self) -> str:  # keep the token out of any log or traceback
        return f"UpstreamSide(user={self.user!r}, state={self.state!r})"

    def receive(self, data: bytes) -> list[UpstreamEvent]:
        if self.state == "done":
            return []
        self.buf += data
        out: list[UpstreamEvent] = []
        while self.state != "done":
            end = self.buf.find(b"\n")
            if end < 0:
                if len(self.buf) > MAX_LINE * 8:
                    return self._fail(out, "protocol", "upstream sent an overlong line")
                break
            raw, self.buf = self.buf[:end].rstrip(b"\r"), self.buf[end + 1 :]
            line = raw.decode("utf-8", "replace")
            if len(line) < 3 or not line[:3].isdigit() or (len(line) > 3 and line[3] not in " -"):
                return self._fail(out, "protocol", f"upstream sent no SMTP reply: {_safe(line)}")
            self.reply.append(line)
            if len(self.reply) > 200:
                return self._fail(out, "protocol", "upstream sent an endless reply")
            if len(line) > 3 and line[3] == "-":
                continue
            reply, self.reply = self.reply, []
            out.extend(self._reply(int(line[:3]), reply))
        return out

    def _fail(self, out: list[UpstreamEvent], kind: FailKind, text: str) -> list[UpstreamEvent]:
        self.state = "done"
        return [*out, Failed(kind, text)]

    def _ehlo(self) -> Send:
        return Send(f"EHLO {self.hostname}\r\n".encode())

    def _reply(self, code: int, lines: list[str]) -> list[UpstreamEvent]:
        text = _safe(lines[-1])
        kind: FailKind = "temporary" if 400 <= code < 500 else "protocol"
        if self.state == "greeting":
            if code != 220:
                return self._fail([], "temporary", f"upstream refused the connection: {text}")
            self.state = "ehlo"
            return [self._ehlo()]
        if self.state in ("ehlo", "ehlo2"):
            if code != 250:
                return self._fail([], kind, f"upstream refused EHLO: {text}")
            caps = parse_ehlo(lines)
            if not self.tls:
                if not any(c.upper() == "STARTTLS" for c in caps):
                    return self._fail([], "protocol", "upstream does not offer STARTTLS (tokens never go in clear)")
                self.state = "starttls"
                return [Send(b"STARTTLS\r\n")]
            self.capabilities = caps
            if self.probe_only:
                self.state = "done"
                return [Send(b"QUIT\r\n"), Authenticated()]
            offered = auth_mechanisms(caps)
            if "XOAUTH2" not in offered:
                shown = " ".join(sorted(offered)) or "none"
                return self._fail([], "protocol", f"upstream does not offer AUTH XOAUTH2 (offers: {shown})")
            self.state = "auth"
            return [Send(b"AUTH XOAUTH2\r\n")]
        if self.state == "starttls":
            if code != 220:
                return self._fail([], kind, f"upstream refused STARTTLS: {text}")
            self.tls = True
            self.state = "ehlo2"
            self.buf = b""  # nothing the server sent in clear may count after the handshake
            return [StartTLS(), self._ehlo()]
        if self.state == "auth":
            if code == 334:
                self.state = "token"
                return [Send(xoauth2(self.user, self._token) + b"\r\n")]
            return self._auth_result(code, text)
        if self.state == "token":
            if code == 334:  # the error challenge (JSON status): an empty line ends the exchange
                self.state = "error_ack"
                return [Send(b"\r\n")]
            return self._auth_result(code, text)
        if self.state == "error_ack":
            return self._auth_result(code, text)
        return self._fail([], "protocol", f"unexpected reply: {text}")

    def _auth_result(self, code: int, text: str) -> list[UpstreamEvent]:
        if code == 235:
            self.state = "done"
            pending, self.buf = self.buf, b""
            return [Authenticated(pending)]
        if 400 <= code < 500:
            return self._fail([], "temporary", f"upstream: {text}")
        return self._fail([], "auth", f"upstream refused the token: {text}")


def _safe(line: str) -> str:
    return "".join(c if " " <= c <= "~" else "?" for c in line)[:300]


DEFAULT_CAPABILITIES: list[str] = []
