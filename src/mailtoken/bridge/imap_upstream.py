"""IMAP upstream for the bridge: sign in to the real server with AUTHENTICATE XOAUTH2. Pure, no I/O.

Greeting (capabilities in it save a round trip), STARTTLS and CAPABILITY again, SASL-IR when offered and a
`+` continuation otherwise, an empty line after an error challenge (Gmail, Dovecot), and a CAPABILITY after an
OK that carried none: Exchange says OK to a token for another mailbox and refuses the next command with
"User is authenticated but not connected". Throttling and BYEs are temporary failures.
"""

from __future__ import annotations

import re

from mailtoken.bridge.events import Authenticated, FailKind, Send, StartTLS, UpstreamEvent
from mailtoken.bridge.lines import LineUpstream
from mailtoken.bridge.plain import decode_b64

_NOT_CONNECTED = "User is authenticated but not connected"
_CAP_CODE = re.compile(r"\[CAPABILITY ([^\]]*)\]", re.I)
_CODE = re.compile(r"^\[([A-Z-]+)[^\]]*\]\s*", re.I)


def _code_kind(text: str) -> FailKind:
    """auth or temporary, from an IMAP NO/BAD/BYE's response code (RFC 5530) and the servers' wording."""
    m = _CODE.match(text)
    code = m.group(1).upper() if m else ""
    if code in ("UNAVAILABLE", "SERVERBUG", "LIMIT", "INUSE", "OVERQUOTA"):
        return "temporary"
    if "throttled" in text.lower() or "try again" in text.lower():
        return "temporary"
    return "auth"


class UpstreamSide(LineUpstream):
    """Signs in to the real IMAP server with XOAUTH2; `capabilities` is what it offers after login."""

    PROTOCOL = "imap"

    def __init__(self, *, user: str, token: str, starttls: bool, probe_only: bool = False) -> None:
        super().__init__(user=user, token=token, starttls=starttls, probe_only=probe_only)
        # state: greeting | starttls | capability | auth | auth-error | check | done
        self.bye = ""
        self.caps_in_auth = False

    def _send_capability(self) -> list[UpstreamEvent]:
        self.state = "capability"
        return [Send(b"m1 CAPABILITY\r\n")]

    def _line(self, line: str) -> list[UpstreamEvent]:
        tag, _, rest = line.partition(" ")
        status, _, text = rest.partition(" ")
        status = status.upper()
        if self.state == "greeting":
            if tag == "*" and status == "OK":
                caps = _CAP_CODE.match(text)
                if self._starttls:
                    self.state = "starttls"
                    return [Send(b"m0 STARTTLS\r\n")]
                if caps:
                    self.capabilities = caps.group(1).split()
                    return self._authenticate()
                return self._send_capability()
            if tag == "*" and status == "BYE":
                return [self._fail("temporary", f"upstream refused the connection: {text}")]
            if tag == "*" and status == "PREAUTH":
                return [self._fail("protocol", "upstream sent PREAUTH: it would not sign in as the account")]
            return [self._fail("protocol", f"upstream greeting is not IMAP: {line[:80]}")]
        if tag == "*":
            if status == "CAPABILITY":
                self.capabilities = text.split()
                self.caps_in_auth = self.state in ("auth", "auth-error")
            elif status == "BYE":
                self.bye = text  # the tagged reply may still come; if not, the I/O layer sees EOF
                if self.state in ("starttls", "capability") or _code_kind(text) == "temporary":
                    return [self._fail("temporary", f"upstream closed the session: {text}")]
            return []
        if tag == "+":
            return self._continuation(rest)
        if self.state == "starttls" and tag == "m0":
            if status != "OK":
                return [self._fail("protocol", f"upstream refused STARTTLS: {text}")]
            self.buf = bytearray()  # nothing sent before the handshake may count as sent under TLS
            return [StartTLS(), *self._send_capability()]
        if self.state == "capability" and tag == "m1":
            if status != "OK":
                return [self._fail("protocol", f"upstream refused CAPABILITY: {text}")]
            return self._authenticate()
        if self.state in ("auth", "auth-error") and tag == "m2":
            return self._auth_reply(status, text)
        if self.state == "check" and tag == "m3":
            return self._check_reply(status, text)
        return [self._fail("protocol", f"unexpected reply from upstream: {line[:80]}")]

    def _authenticate(self) -> list[UpstreamEvent]:
        if self.probe_only:
            self.state = "done"
            return [Send(b"m9 LOGOUT\r\n"), Authenticated()]
        upper = [c.upper() for c in self.capabilities]
        if upper and "AUTH=XOAUTH2" not in upper:
            return [self._fail("protocol", "upstream does not offer AUTH=XOAUTH2")]
        self.state = "auth"
        if "SASL-IR" in upper:
            self.sent_response = True
            return [Send(b"m2 AUTHENTICATE XOAUTH2 " + self._xoauth2 + b"\r\n")]
        self.sent_response = False
        return [Send(b"m2 AUTHENTICATE XOAUTH2\r\n")]

    def _continuation(self, text: str) -> list[UpstreamEvent]:
        if self.state != "auth":
            if self.state == "auth-error":  # a second challenge: refuse the exchange
                return [Send(b"*\r\n")]
            return [self._fail("protocol", "unexpected continuation from upstream")]
        if not self.sent_response:
            self.sent_response = True
            return [Send(self._xoauth2 + b"\r\n")]
        # Gmail and Dovecot answer a refused token with a JSON challenge and wait for an empty response.
        raw = decode_b64(text.encode()) or b""
        self.error = raw.decode("utf-8", "replace")
        self.state = "auth-error"
        return [Send(b"\r\n")]

    def _auth_reply(self, status: str, text: str) -> list[UpstreamEvent]:
        if status == "OK":
            caps = _CAP_CODE.match(text)
            if caps:
                self.capabilities = caps.group(1).split()
                return self._done()
            if self.caps_in_auth:  # Gmail: the post-login capabilities came untagged, before the OK
                return self._done()
            # Exchange says OK and refuses the next command when the token is for another mailbox or IMAP
            # is off for it; ask for the post-login capabilities, which also proves the session works.
            self.state = "check"
            return [Send(b"m3 CAPABILITY\r\n")]
        detail = f" ({self.error})" if self.error else ""
        return [self._fail(_code_kind(text), f"upstream refused XOAUTH2: {text}{detail}")]

    def _check_reply(self, status: str, text: str) -> list[UpstreamEvent]:
        if status == "OK":
            return self._done()
        if _NOT_CONNECTED.lower() in text.lower():
            return [
                self._fail(
                    "auth",
                    f"upstream accepted the token but says '{_NOT_CONNECTED}': the token is for another mailbox "
                    "or IMAP is off for it (run 'mailtoken test ACCOUNT')",
                )
            ]
        return [self._fail(_code_kind(text), f"upstream refused the session after login: {text}")]

    def _done(self) -> list[UpstreamEvent]:
        self.state = "done"
        pending, self.buf = bytes(self.buf), bytearray()
        return [Authenticated(pending)]
