"""One exchange with Microsoft Graph over HTTPS (ssl sockets: no requests, no msal), and what its answers mean.

Graph's error bodies are `{"error": {"code": "...", "message": "..."}}`; the code decides the exit status:
- 202/201/200: done.  401: the token (one refresh, one retry: sendmail.py).  429, 5xx: retry after Retry-After
  while the deadline allows, else 75.
- 403 ErrorSendAsDenied, 404 and the mailbox codes below: the mailbox is refused, 67.
- 403 otherwise (no Mail.Send consent or application permission): 77, with the fix.
- 413, ErrorMessageSizeExceeded, other 400s: the message, 65.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any, NoReturn, cast

from ..errors import ConfigError, SignInRequired, TemporaryFailure
from .message import BadMessage, RefusedMailbox

if TYPE_CHECKING:
    import ssl

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


class Answer:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers  # names lower-cased
        self.body = body

    def error(self) -> tuple[str, str]:
        """Graph's error code and message, or ("", "") when the body is not Graph's error JSON."""
        import json

        try:
            doc = json.loads(self.body)
        except ValueError:
            return "", ""
        err = doc.get("error") if isinstance(doc, dict) else None
        if not isinstance(err, dict):
            return "", ""
        return str(err.get("code") or ""), str(err.get("message") or "")[:300]

    def json(self) -> dict[str, Any]:
        import json

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


def _ssl_context(whole_store: bool = False) -> ssl.SSLContext:
    """Which certificates a cached send trusts (providers/http.py, which a cached send does not import, has the
    same sources): a bundle named by REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE or SSL_CERT_FILE, as requests and
    OpenSSL read them; else the operating system's store.

    Loading the whole system bundle costs more than the rest of a cached send (~25 ms here, far more under
    load), so without a named bundle the first try looks certificates up one by one in the hashed folder
    (SSL_CERT_DIR, else OpenSSL's), and only a verification failure loads the whole store (`whole_store`),
    for systems whose folder has no hash links."""
    import os
    import ssl

    named = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or os.environ.get("SSL_CERT_FILE")
    if named or whole_store:
        return ssl.create_default_context(cafile=named or None)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the certificate and the host name
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    defaults = ssl.get_default_verify_paths()
    folder = os.environ.get("SSL_CERT_DIR") or defaults.capath or defaults.openssl_capath
    if folder and os.path.isdir(folder):
        ctx.load_verify_locations(capath=folder)
    else:
        ctx.load_default_certs()
    return ctx


class Connection:
    """Keep-alive HTTP/1.1 over TLS to one Graph (or upload) host; `timeout()` gives each exchange's timeout.

    A few lines over ssl instead of http.client, which imports the email package (~15 ms a cached send need
    not pay); it speaks what Graph answers: Content-Length or chunked bodies, keep-alive or close.
    """

    def __init__(self, url: str, timeout: Callable[[], float]) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "https" or not parts.hostname:
            raise ConfigError(f"graph_url must be an https URL, not '{url}'")
        self.host, self.port, self.timeout = parts.hostname, parts.port or 443, timeout
        self._host_header = parts.netloc.rpartition("@")[2]
        self._sock: ssl.SSLSocket | None = None
        self._file: IO[bytes] | None = None

    def close(self) -> None:
        import contextlib

        for item in (self._file, self._sock):
            if item is not None:
                with contextlib.suppress(OSError):
                    item.close()
        self._sock = self._file = None

    def _open(self) -> None:
        import ssl

        # An ASCII host as bytes: a str makes getaddrinfo and ssl load the idna codec (~15 ms per send).
        host = self.host.encode("ascii") if self.host.isascii() else self.host
        try:
            sock = self._connect(cast(str, host), whole_store=False)
        except ssl.SSLCertVerificationError:
            try:  # the hashed folder may lack what the whole store has: once more, with all of it
                sock = self._connect(cast(str, host), whole_store=True)
            except OSError as exc:
                self._failed(exc)
        except OSError as exc:
            self._failed(exc)
        self._sock, self._file = sock, sock.makefile("rb")

    def _connect(self, host: str, whole_store: bool) -> ssl.SSLSocket:
        import socket

        raw = socket.create_connection((host, self.port), timeout=self.timeout())
        try:
            return _ssl_context(whole_store).wrap_socket(raw, server_hostname=host)
        except BaseException:
            raw.close()
            raise

    def _failed(self, exc: OSError) -> NoReturn:
        import ssl

        self.close()
        if isinstance(exc, ssl.SSLError):  # no retry can fix a certificate: say so at once
            raise TemporaryFailure(
                f"temporary failure: TLS with {self.host} failed ({getattr(exc, 'reason', None) or _why(exc)}; a "
                "proxy, or REQUESTS_CA_BUNDLE, may be wrong): the message was not sent"
            ) from None
        raise NotSent(f"cannot connect to {self.host} ({_why(exc)})") from None

    def request(self, method: str, url: str, body: bytes | None, headers: dict[str, str]) -> Answer:
        parts = urllib.parse.urlsplit(url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        reused = self._sock is not None
        if self._sock is None:
            self._open()
        assert self._sock is not None and self._file is not None
        self._sock.settimeout(self.timeout())
        lines = [f"{method} {target} HTTP/1.1", f"Host: {self._host_header}", "Accept: application/json"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        lines.append(f"Content-Length: {len(body or b'')}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        try:
            self._sock.sendall(head + body if body and len(body) < 65536 else head)
            if body and len(body) >= 65536:
                self._sock.sendall(body)
            answer, keep = self._read(method)
        except _Closed:
            self.close()
            if reused:  # the server closed an idle keep-alive connection before reading this request
                return self.request(method, url, body, headers)
            raise TemporaryFailure(
                f"temporary failure: {self.host} closed the connection without answering: try again later"
            ) from None
        except (OSError, ValueError) as exc:
            self.close()
            raise TemporaryFailure(
                f"temporary failure: no answer from {self.host} ({_why(exc)}); Graph did not confirm the message: "
                "try again later"
            ) from None
        if not keep:
            self.close()
        return answer

    def _read(self, method: str) -> tuple[Answer, bool]:
        fp = self._file
        assert fp is not None
        status_line = fp.readline(65537)
        if not status_line:
            raise _Closed()
        version, _, rest = status_line.decode("latin-1").partition(" ")
        if not version.startswith("HTTP/1.") or not rest[:3].isdigit():
            raise ValueError("not an HTTP answer")
        status = int(rest[:3])
        headers: dict[str, str] = {}
        while True:
            line = fp.readline(65537)
            if not line:
                raise ValueError("answer cut off")
            if line in (b"\r\n", b"\n"):
                break
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        keep = headers.get("connection", "").lower() != "close" and version == "HTTP/1.1"
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            return Answer(status, headers, b""), keep
        if "chunked" in headers.get("transfer-encoding", "").lower():
            data = bytearray()
            while True:
                size = int(fp.readline(1024).split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while fp.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                data += _exactly(fp, size)
                fp.readline(3)
                if len(data) > MAX_ANSWER:
                    raise ValueError("answer too long")
            return Answer(status, headers, bytes(data)), keep
        if "content-length" in headers:
            length = int(headers["content-length"])
            if length > MAX_ANSWER:
                raise ValueError("answer too long")
            return Answer(status, headers, _exactly(fp, length)), keep
        return Answer(status, headers, fp.read(MAX_ANSWER)), False


class _Closed(Exception):
    pass


def _exactly(fp: IO[bytes], n: int) -> bytes:
    data = bytes(fp.read(n))
    if len(data) != n:
        raise ValueError("answer cut off")
    return data


def _why(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    strerror = getattr(exc, "strerror", None)
    return str(strerror) if strerror else type(exc).__name__


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
