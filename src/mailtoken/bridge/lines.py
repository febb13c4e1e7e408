"""What the IMAP and POP3 machines share: the client side's command-line reader (`take_line`), and the upstream
dialogues' XOAUTH2 string and reply-line reader (`LineUpstream`). (SMTP's replies are multi-line with codes:
smtp.py reads its own.)"""

from __future__ import annotations

import base64

from .events import Failed, FailKind, UpstreamEvent
from .plain import clean

# A server's CAPABILITY (or CAPA) line can be long, but never unbounded.
UPSTREAM_MAX_LINE = 64 * 1024


def take_line(buf: bytearray, max_line: int, tls_possible: bool) -> tuple[bytes | None, str]:
    """The next command line (CR LF or LF) taken off `buf`: (line, ""), or (None, "") while it is incomplete,
    or (None, why) when the input can be no command: "tls" (a TLS ClientHello, where `tls_possible`), "long"
    (over `max_line`), "control" (control characters but tab). Each machine words its own reply to `why`."""
    if tls_possible and buf[:1] == b"\x16":
        return None, "tls"
    end = buf.find(b"\n")
    if end < 0:
        return None, "long" if len(buf) > max_line else ""
    line = bytes(buf[:end]).removesuffix(b"\r")
    del buf[: end + 1]
    if len(line) > max_line:
        return None, "long"
    if any(c < 0x20 or c == 0x7F for c in line if c != 0x09):
        return None, "control"
    return line, ""


class LineUpstream:
    """receive() splits the server's bytes into lines, bounds them, and turns anything it cannot read into a
    protocol Failed; a subclass answers each line in `_line()` and names its protocol in `PROTOCOL`."""

    PROTOCOL = "?"

    def __init__(self, *, user: str, token: str, starttls: bool, probe_only: bool = False) -> None:
        self._xoauth2 = base64.b64encode(f"user={user}\x01auth=Bearer {token}\x01\x01".encode())
        self._starttls = starttls
        self.probe_only = probe_only  # stop once the (post-TLS) capabilities are known: sign in nowhere
        self.capabilities: list[str] = []
        self.buf = bytearray()
        self.state = "greeting"
        self.error = ""

    def __repr__(self) -> str:  # the token must stay out of tracebacks
        return f"<{self.PROTOCOL}.UpstreamSide state={self.state}>"

    def receive(self, data: bytes) -> list[UpstreamEvent]:
        if self.state == "done":
            return []
        self.buf += data
        events: list[UpstreamEvent] = []
        try:
            while self.state != "done":
                end = self.buf.find(b"\n")
                if end < 0:
                    if len(self.buf) > UPSTREAM_MAX_LINE:
                        events.append(self._fail("protocol", "upstream sent an overlong line"))
                    break
                line = bytes(self.buf[:end]).removesuffix(b"\r").decode("utf-8", "replace")
                del self.buf[: end + 1]
                events += self._line(line)
        except Exception:
            events.append(self._fail("protocol", "upstream sent a reply the bridge cannot read"))
        return events

    def _fail(self, kind: FailKind, text: str) -> Failed:
        self.state = "done"
        self.buf = bytearray()
        return Failed(kind, clean(text))

    def _line(self, line: str) -> list[UpstreamEvent]:
        raise NotImplementedError
