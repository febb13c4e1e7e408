"""One exchange with Microsoft Graph over HTTPS (http.client: no requests, no msal), and what its answers mean.

Graph's error bodies are `{"error": {"code": "...", "message": "..."}}`; the code decides the exit status:
- 202/201/200: done.  401: the token (one refresh, one retry: sendmail.py).  429, 5xx: retry after Retry-After
  while the deadline allows, else 75.
- 403 ErrorSendAsDenied, 404 and the mailbox codes below: the mailbox is refused, 67.
- 403 otherwise (no Mail.Send consent or application permission): 77, with the fix.
- 413, ErrorMessageSizeExceeded, other 400s: the message, 65.
"""

from __future__ import annotations

import http.client
import json
import urllib.parse
from dataclasses import dataclass

from ..errors import ConfigError, SignInRequired, TemporaryFailure
from .message import BadMessage, RefusedMailbox

# One HTTP exchange never waits longer than this, nor past the command's deadline.
NET_TIMEOUT = 60.0
MAX_ANSWER = 1 << 20
_MAILBOX_CODES = frozenset(
    {
        "ErrorSendAsDenied",
        "MailboxNotEnabledForRESTAPI",
        "MailboxNotSupportedForRESTAPI",
        "ErrorInvalidUser",
        "ErrorNonExistentMailbox",
        "ResourceNotFound",
        "ErrorInvalidRecipients",
        "ErrorRecipientNotFound",
    }
)


@dataclass
class Answer:
    status: int
    headers: dict[str, str]  # names lower-cased
    body: bytes

    def error(self) -> tuple[str, str]:
        """Graph's error code and message, or ("", "") when the body is not Graph's error JSON."""
        try:
            doc = json.loads(self.body)
        except ValueError:
            return "", ""
        err = doc.get("error") if isinstance(doc, dict) else None
        if not isinstance(err, dict):
            return "", ""
        return str(err.get("code") or ""), str(err.get("message") or "")[:300]

    def json(self) -> dict:
        try:
            doc = json.loads(self.body)
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            raise TemporaryFailure(
                f"temporary failure: Graph answered HTTP {self.status} with no JSON: try again later"
            )
        return doc


class Unauthorized(Exception):
    """HTTP 401: the token was refused (expired, revoked, wrong audience)."""

    def __init__(self, answer: Answer) -> None:
        super().__init__("401")
        self.answer = answer


class Retry(Exception):
    """HTTP 429 or 5xx: try again, after `seconds` if Graph said how long."""

    def __init__(self, status: int, seconds: float | None, text: str) -> None:
        super().__init__(str(status))
        self.status, self.seconds, self.text = status, seconds, text


class NotSent(Exception):
    """The connection failed before the request was on its way: retrying cannot send the message twice."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


def _ssl_context():
    from ..providers.httpjson import ssl_context

    return ssl_context()


class Connection:
    """Keep-alive HTTPS to one Graph (or upload) host; `timeout()` gives each exchange's socket timeout."""

    def __init__(self, url: str, timeout) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "https" or not parts.hostname:
            raise ConfigError(f"graph_url must be an https URL, not '{url}'")
        self.host, self.port, self.timeout = parts.hostname, parts.port or 443, timeout
        self._conn: http.client.HTTPSConnection | None = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def request(self, method: str, url: str, body: bytes | None, headers: dict[str, str]) -> Answer:
        parts = urllib.parse.urlsplit(url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        if self._conn is None:
            self._conn = http.client.HTTPSConnection(
                self.host, self.port, timeout=self.timeout(), context=_ssl_context()
            )
            try:
                self._conn.connect()
            except OSError as exc:
                self.close()
                raise NotSent(f"cannot connect to {self.host} ({_why(exc)})") from None
        else:
            self._conn.timeout = self.timeout()
            if self._conn.sock is not None:
                self._conn.sock.settimeout(self._conn.timeout)
        try:
            self._conn.request(method, target, body=body, headers=headers)
            response = self._conn.getresponse()
            data = response.read(MAX_ANSWER)
            if response.will_close:
                self.close()
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise TemporaryFailure(
                f"temporary failure: no answer from {self.host} ({_why(exc)}); Graph did not confirm the message: "
                "try again later"
            ) from None
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, data)


def _why(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    return type(exc).__name__ if not getattr(exc, "strerror", None) else str(exc.strerror)


def retry_after(answer: Answer) -> float | None:
    value = answer.headers.get("retry-after", "").strip()
    if value.isdigit():
        return float(value)
    if value:
        import email.utils
        import time

        try:
            return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None
    return None


def check(answer: Answer, account: str, mailbox: str, consent_hint: str) -> Answer:
    """`answer` if it is a success; else raise what it means for the message (see the module's text)."""
    status = answer.status
    if 200 <= status < 300:
        return answer
    code, text = answer.error()
    said = f"Graph answered HTTP {status}" + (f" {code}" if code else "") + (f": {text}" if text else "")
    if status == 401:
        raise Unauthorized(answer)
    if status == 429 or status >= 500:
        raise Retry(status, retry_after(answer), said)
    if code in _MAILBOX_CODES or status == 404:
        advice = (
            f"the account may not send as {mailbox}: an Exchange admin grants Send As (or Send on Behalf) and "
            "Full Access, and the address goes in the account's shared list"
            if code == "ErrorSendAsDenied"
            else f"the mailbox {mailbox} cannot send through Graph (unlicensed, on-premises or unknown)"
            if code != "ErrorInvalidRecipients" and code != "ErrorRecipientNotFound"
            else "a recipient was refused"
        )
        raise RefusedMailbox(f"{said}: {advice}", account=account)
    if status == 403:
        raise SignInRequired(f"{said}: {consent_hint}", account=account)
    if status == 413 or code == "ErrorMessageSizeExceeded":
        raise BadMessage(f"{said}: the message is too large for Graph", account=account)
    raise BadMessage(f"{said}: the message was not accepted", account=account)
