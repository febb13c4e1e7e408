"""SMTP after local AUTH when the bridge itself takes the message (`upstream = "graph"`). Pure: no I/O.

The client's MAIL FROM, RCPT TO and DATA are answered here; at the end of DATA the machine asks the I/O layer
to submit (Submit: the envelope exactly as given and the message with its dot-stuffing undone), and its reply
to DATA waits for the outcome (`submitted`), so a 250 means Graph took the message. No BDAT/CHUNKING: the
listener does not offer it. A message over `max_size` is read to its end and refused with 552, never kept.
"""

from __future__ import annotations

from dataclasses import dataclass

from .events import Close, Send

MAX_LINE = 8192  # commands
MAX_RECIPIENTS = 500  # Exchange Online's recipient limit per message
MAX_ERRORS = 10
FLUSH_AT = 64 * 1024  # a DATA line this long without its end is taken in part (some clients never fold)
MAIL_PARAMS = ("SIZE", "BODY", "SMTPUTF8", "AUTH")


@dataclass(frozen=True)
class Submit:
    """The message is in: submit it, then call machine.submitted(code, text)."""

    sender: str  # the MAIL FROM path ("" for <>)
    recipients: tuple[str, ...]
    data: bytes

    def __repr__(self) -> str:  # a message body has no place in a log line
        return f"Submit(sender={self.sender!r}, recipients={len(self.recipients)}, bytes={len(self.data)})"


SubmitEvent = Send | Close | Submit


def capabilities(max_size: int) -> list[str]:
    """EHLO keywords of a listener that takes the message itself (no CHUNKING, no DSN)."""
    return [f"SIZE {max_size}", "8BITMIME", "SMTPUTF8", "PIPELINING", "ENHANCEDSTATUSCODES"]


def _reply(code: int, text: str) -> bytes:
    safe = "".join(c if " " <= c <= "~" else "?" for c in text)[:400]
    return f"{code} {safe}\r\n".encode("ascii")


def _path(arg: str, keyword: str) -> tuple[str, list[str]] | None:
    """`FROM:<a@b> PARAM=x` -> ("a@b", ["PARAM=x"]); None when it is not that shape."""
    if arg[: len(keyword) + 1].upper() != keyword + ":":
        return None
    rest = arg[len(keyword) + 1 :].lstrip()
    if not rest.startswith("<"):
        return None
    end = rest.find(">")
    if end < 0:
        return None
    address, params = rest[1:end], rest[end + 1 :].split()
    if "@" in address and address.startswith("@") and ":" in address:  # an RFC 5321 source route: ignored
        address = address.split(":", 1)[1]
    if any(c in address for c in "<> \t") or not all(c.isprintable() for c in address) or len(address) > 320:
        return None
    return address, params


class SubmitSide:
    """The authenticated client's transactions, until QUIT."""

    def __init__(self, *, max_size: int, hostname: str = "mailtoken", caps: list[str] | None = None) -> None:
        self.max_size = max_size
        self.hostname = hostname
        self.caps = caps if caps is not None else capabilities(max_size)
        self.buf = b""
        self.state = "command"  # command | data | waiting | closed
        self.sender: str | None = None
        self.recipients: list[str] = []
        self.data = bytearray()
        self.too_big = False
        self.line_start = True
        self.errors = 0

    def receive(self, data: bytes) -> list[SubmitEvent]:
        if self.state == "closed":
            return []
        self.buf += data
        return self._run()

    def submitted(self, code: int, text: str) -> list[SubmitEvent]:
        """The outcome of the last Submit: the client's reply to its DATA, then any pipelined commands."""
        if self.state != "waiting":
            return []
        self.state = "command"
        return [Send(_reply(code, text)), *self._run()]

    # -- internals -----------------------------------------------------------------------------------------

    def _reset(self) -> None:
        self.sender, self.recipients = None, []
        self.data, self.too_big, self.line_start = bytearray(), False, True

    def _run(self) -> list[SubmitEvent]:
        out: list[SubmitEvent] = []
        while self.state in ("command", "data"):
            if self.state == "data":
                event = self._data()
                if event is None:
                    break
                out.append(event)
                continue
            end = self.buf.find(b"\n")
            if end < 0 or end > MAX_LINE:
                if end > MAX_LINE or len(self.buf) > MAX_LINE:
                    self.state = "closed"
                    out += [Send(b"500 5.5.2 Line too long\r\n"), Close()]
                break
            line, self.buf = self.buf[:end].rstrip(b"\r"), self.buf[end + 1 :]
            events = self._command(line)
            out += events
            if any(isinstance(e, Close) for e in events):
                self.state = "closed"
                break
        return out

    def _data(self) -> SubmitEvent | None:
        """Take DATA lines from the buffer; the Submit (or 552) once the lone dot has come."""
        while True:
            end = self.buf.find(b"\n")
            if end < 0:
                if len(self.buf) <= FLUSH_AT:
                    return None
                # A very long line: take all but its last byte (a CR whose LF is still on its way).
                part, self.buf = self.buf[:-1], self.buf[-1:]
                if self.line_start and part.startswith(b"."):
                    part = part[1:]
                self._keep(part)
                self.line_start = False
                continue
            line, self.buf = self.buf[: end + 1], self.buf[end + 1 :]
            if self.line_start and line.rstrip(b"\r\n") == b".":
                return self._end()
            if self.line_start and line.startswith(b"."):
                line = line[1:]
            self._keep(line)
            self.line_start = True

    def _keep(self, part: bytes) -> None:
        if self.too_big:
            return
        if len(self.data) + len(part) > self.max_size:
            self.too_big, self.data = True, bytearray()
            return
        self.data += part

    def _end(self) -> SubmitEvent:
        sender, recipients, data, too_big = self.sender or "", tuple(self.recipients), bytes(self.data), self.too_big
        self._reset()
        if too_big:
            self.state = "command"
            return Send(_reply(552, f"5.3.4 Message larger than {self.max_size} bytes: not sent"))
        self.state = "waiting"
        return Submit(sender, recipients, data)

    def _error(self, reply: bytes) -> list[SubmitEvent]:
        self.errors += 1
        if self.errors >= MAX_ERRORS:
            return [Send(reply), Send(b"421 4.7.0 Too many errors, closing\r\n"), Close()]
        return [Send(reply)]

    def _command(self, line: bytes) -> list[SubmitEvent]:
        try:
            text = line.decode("utf-8")  # SMTPUTF8 addresses
        except UnicodeDecodeError:
            return self._error(b"500 5.5.2 Command not UTF-8\r\n")
        verb, _, arg = text.strip().partition(" ")
        verb, arg = verb.upper(), arg.strip()
        if verb == "EHLO" and arg:
            self._reset()
            lines = [f"{self.hostname} greets {arg[:64]}", *self.caps]
            return [Send("".join(f"250-{x}\r\n" for x in lines[:-1]).encode() + _reply(250, lines[-1]))]
        if verb == "HELO" and arg:
            self._reset()
            return [Send(_reply(250, self.hostname))]
        if verb in ("EHLO", "HELO"):
            return self._error(b"501 5.5.4 EHLO/HELO needs a domain or address\r\n")
        if verb == "MAIL":
            return self._mail(arg)
        if verb == "RCPT":
            return self._rcpt(arg)
        if verb == "DATA":
            if arg:
                return self._error(b"501 5.5.4 DATA takes no argument\r\n")
            if self.sender is None:
                return self._error(b"503 5.5.1 MAIL first\r\n")
            if not self.recipients:
                return self._error(b"554 5.5.1 No valid recipients\r\n")
            self.state = "data"
            return [Send(b"354 End data with <CR><LF>.<CR><LF>\r\n")]
        if verb == "RSET":
            self._reset()
            return [Send(b"250 2.0.0 OK\r\n")]
        if verb == "NOOP":
            return [Send(b"250 2.0.0 OK\r\n")]
        if verb == "QUIT":
            return [Send(b"221 2.0.0 Bye\r\n"), Close()]
        if verb == "VRFY":
            return [Send(b"252 2.5.0 Cannot VRFY user\r\n")]
        if verb in ("AUTH", "STARTTLS"):
            return self._error(b"503 5.5.1 Already authenticated\r\n")
        if verb in ("BDAT", "BURL", "ETRN"):
            return self._error(b"502 5.5.1 Not offered here (use DATA)\r\n")
        return self._error(b"500 5.5.1 Unrecognized command\r\n")

    def _mail(self, arg: str) -> list[SubmitEvent]:
        if self.sender is not None:
            return self._error(b"503 5.5.1 Sender already given (RSET first)\r\n")
        parsed = _path(arg, "FROM")
        if parsed is None:
            return self._error(b"501 5.5.2 Syntax: MAIL FROM:<address>\r\n")
        address, params = parsed
        for param in params:
            key, _, value = param.partition("=")
            if key.upper() not in MAIL_PARAMS:
                return self._error(_reply(555, f"5.5.4 Parameter {key[:40]} not supported"))
            if key.upper() == "SIZE":
                if not value.isdigit():
                    return self._error(b"501 5.5.4 SIZE needs a number\r\n")
                if int(value) > self.max_size:
                    return [Send(_reply(552, f"5.3.4 Message larger than {self.max_size} bytes: not sent"))]
        self.sender = address
        return [Send(b"250 2.1.0 OK\r\n")]

    def _rcpt(self, arg: str) -> list[SubmitEvent]:
        if self.sender is None:
            return self._error(b"503 5.5.1 MAIL first\r\n")
        parsed = _path(arg, "TO")
        if parsed is None:
            return self._error(b"501 5.5.2 Syntax: RCPT TO:<address>\r\n")
        address, params = parsed
        if params:
            return self._error(_reply(555, f"5.5.4 Parameter {params[0].partition('=')[0][:40]} not supported"))
        local, at, domain = address.rpartition("@")
        if not at or not local or "." not in domain:
            return [Send(b"553 5.1.3 Not an address Graph can deliver to (user@domain)\r\n")]
        if len(self.recipients) >= MAX_RECIPIENTS:
            return [Send(_reply(452, f"4.5.3 Too many recipients (at most {MAX_RECIPIENTS} per message)"))]
        self.recipients.append(address)
        return [Send(b"250 2.1.5 OK\r\n")]
