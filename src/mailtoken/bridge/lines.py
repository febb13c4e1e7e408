"""What the IMAP and POP3 upstream dialogues share: both sign in with one XOAUTH2 string and read the server
one reply line at a time. (SMTP's replies are multi-line with codes: smtp.py reads its own.)"""

from __future__ import annotations

import base64

from .events import Failed, FailKind, UpstreamEvent
from .plain import clean

# A server's CAPABILITY (or CAPA) line can be long, but never unbounded.
UPSTREAM_MAX_LINE = 64 * 1024


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
