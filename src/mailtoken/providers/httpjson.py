"""HTTP for the standard-library OAuth engine (providers/oauth2.py): one JSON exchange, with the same trust
as the msal engine, and transport failures turned into temporary errors (never one that ends a grant).
"""

from __future__ import annotations

import json
import os
from typing import Any

from .. import deadline
from ..config import Account
from ..errors import MailtokenError, TemporaryFailure

MAX_ANSWER = 1 << 20  # no token answer is near this; a proxy's error page might be


def ssl_context() -> Any:
    import ssl

    # The same trust as the msal engine (requests): REQUESTS_CA_BUNDLE, then CURL_CA_BUNDLE; else OpenSSL's
    # defaults, which honour SSL_CERT_FILE and SSL_CERT_DIR.
    cafile = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    return ssl.create_default_context(cafile=cafile or None)


# --- HTTP ------------------------------------------------------------------------------------------------


def exchange(
    acct: Account,
    url: str,
    timeout: float,
    form: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    hold: bool = False,
) -> tuple[int, dict[str, Any], str | None]:
    """One exchange: (HTTP status, JSON body, Retry-After). Transport failures raise TemporaryFailure.

    With `hold`, the deadline and termination signals wait from the moment an answer is in: it may carry a
    rotated refresh token, which must reach the store (tokens.py releases them).
    """
    import http.client
    import urllib.error
    import urllib.request

    from .. import __version__

    host = urllib.parse.urlsplit(url).netloc
    data = urllib.parse.urlencode(form).encode() if form is not None else None
    request = urllib.request.Request(
        url,
        data=data,
        headers={"Accept": "application/json", "User-Agent": f"mailtoken/{__version__}", **(headers or {})},
    )
    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=ssl_context()))
    try:
        try:
            with opener.open(request, timeout=timeout) as resp:
                status, body, retry = resp.status, resp.read(MAX_ANSWER), resp.headers.get("Retry-After")
        except urllib.error.HTTPError as exc:
            status, body, retry = exc.code, exc.read(MAX_ANSWER), exc.headers.get("Retry-After")
    except MailtokenError:
        raise
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise temporary(_transport(exc, host), acct) from None
    if hold:
        deadline.hold()
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        if status == 429 or status >= 500:
            raise temporary(f"{host} answered HTTP {status}", acct, retry)
        raise temporary(f"{host} answered HTTP {status} with something that is not JSON", acct)
    return status, doc, retry


def _transport(exc: BaseException, host: str) -> str:
    import socket
    import ssl

    reason = getattr(exc, "reason", exc)  # urllib wraps the socket error in URLError
    if isinstance(reason, ssl.SSLCertVerificationError):
        return f"TLS with {host} failed: its certificate is not trusted (a proxy, or REQUESTS_CA_BUNDLE, may be wrong)"
    if isinstance(reason, ssl.SSLError):
        return f"TLS with {host} failed ({type(reason).__name__})"
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return f"{host} did not answer in time"
    if isinstance(reason, socket.gaierror):
        return f"cannot resolve {host} (DNS failure, or offline?)"
    if isinstance(reason, ConnectionRefusedError):
        return f"{host} refused the connection (network down, or a proxy needed?)"
    if isinstance(reason, (ConnectionResetError, ConnectionAbortedError)) or "RemoteDisconnected" in type(exc).__name__:
        return f"{host} closed the connection without answering"
    if "IncompleteRead" in type(exc).__name__:
        return f"the answer from {host} was cut off"
    return f"cannot talk to {host} ({type(reason).__name__})"


def temporary(what: str, acct: Account, retry_after: str | None = None) -> TemporaryFailure:
    wait = retry_seconds(retry_after)
    later = f"try again in {wait} s (the provider asked to wait)" if wait else "try again later"
    error = TemporaryFailure(f"temporary failure: {what}: {later}", account=acct.name)
    error.retry_after = wait
    return error


def retry_seconds(value: str | None) -> int | None:
    if not value or not value.strip().isdigit():
        return None  # the HTTP-date form is rare at token endpoints; "later" is then good enough
    return max(1, min(int(value.strip()), 3600))
