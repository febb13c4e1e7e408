"""The one HTTP layer: every request mailtoken makes to an identity platform, from either engine.

msal takes it as its `http_client`; the standard-library engine's JSON exchanges (providers/oauth2.py) use
`exchange()`. Whatever the engine, an exchange here:

- trusts the operating system's certificate store (truststore, as pip does), so a CA added to the system, or
  named by SSL_CERT_FILE, is honoured; REQUESTS_CA_BUNDLE, when set, is added to it;
- never sends a request for this machine (127.0.0.1, ::1, localhost) through a proxy: a proxy would see a
  loopback provider's plain-http secrets;
- follows no redirect of a POST (token, device-code requests: the form carries secrets) and only https to
  https on a GET (discovery);
- reads at most MAX_ANSWER bytes of an answer and refuses a deeper or bigger one as temporary;
- notes what the status line and headers said (Retry-After on 429/5xx) and any rotated refresh token in a
  200 answer, before anything else judges the answer (tokens.py saves such a token whatever follows);
- turns every transport failure into the one error classification (providers/errors.py).
"""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

from .. import deadline
from ..errors import MailtokenError
from . import errors
from .base import LOOPBACK_HOSTS

MAX_ANSWER = 1 << 20  # no token answer is near this; a proxy's error page might be


class Answers:
    """What the answers of one session said beyond their bodies (msal keeps the headers to itself)."""

    def __init__(self) -> None:
        self.retry_after: int | None = None
        # The refresh_token of the last 200 answer to a POST, whatever else that answer got wrong.
        self.rotated: str | None = None
        # That answer's JSON object, so an engine can say what was wrong with it when its library refused it.
        self.answer: dict[str, Any] | None = None


def _context() -> Any:
    import ssl

    import truststore

    return truststore.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


def is_loopback(url: str) -> bool:
    host = (urllib.parse.urlsplit(url).hostname or "").lower()
    return host in LOOPBACK_HOSTS or host.startswith("127.")


def host_of(url: str) -> str:
    # The host only: the path and query are harmless, but nothing else of a request goes into a message.
    return urllib.parse.urlsplit(url).netloc


def session(account: str | None, timeout: float, *, family: str = errors.ENTRA, hold_on_answer: bool = False) -> Any:
    """A requests.Session with the rules above; `session.answers` says what its answers said."""
    import requests
    import requests.adapters

    class Adapter(requests.adapters.HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            kwargs["ssl_context"] = _context()
            super().init_poolmanager(*args, **kwargs)

        def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
            super().cert_verify(conn, url, verify, cert)  # type: ignore[no-untyped-call]
            if verify is True:  # the system's store (the context), not certifi's bundle
                conn.ca_certs = None
                conn.ca_cert_dir = None

    class Session(requests.Session):
        def __init__(self) -> None:
            super().__init__()
            self.answers = Answers()

        def merge_environment_settings(self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any) -> Any:
            settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
            if is_loopback(str(url)):
                settings["proxies"] = {}
            return settings

        def get_redirect_target(self, resp: Any) -> Any:
            target = super().get_redirect_target(resp)
            if target is None or resp.request.method != "GET":
                return None
            nxt = urllib.parse.urljoin(resp.url, target)
            return target if resp.url.startswith("https://") and nxt.startswith("https://") else None

        def request(self, method: str, url: str | bytes, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
            url = url.decode() if isinstance(url, bytes) else url
            kwargs.setdefault("timeout", timeout)
            kwargs["stream"] = True
            if method.upper() != "GET":
                kwargs["allow_redirects"] = False
            try:
                response = super().request(method, url, *args, **kwargs)
                body = response.raw.read(MAX_ANSWER + 1, decode_content=True)
            except MailtokenError:
                raise
            except (requests.exceptions.RequestException, OSError, ValueError) as exc:
                raise errors.transport(exc, host_of(url), account, family) from None
            except Exception as exc:  # urllib3's own errors under .raw.read()
                raise errors.transport(exc, host_of(url), account, family) from None
            if len(body) > MAX_ANSWER:
                response.close()
                raise errors.temporary(f"the answer from {host_of(url)} is larger than 1 MiB", account, family)
            response._content = body
            response._content_consumed = True  # type: ignore[attr-defined]
            self._look(method, url, response, body)
            return response

        def _look(self, method: str, url: str, response: Any, body: bytes) -> None:
            status = response.status_code
            if status == 429 or status >= 500:
                self.answers.retry_after = errors.retry_after_seconds(response.headers.get("Retry-After"))
            if method.upper() == "GET":
                return
            if 300 <= status < 400:
                where = host_of(urllib.parse.urljoin(url, response.headers.get("Location", "")))
                raise errors.temporary(
                    f"{host_of(url)} answered with a redirect (to {where or 'nowhere'}), which mailtoken never "
                    "follows for requests that carry secrets: check the endpoint in the config",
                    account,
                    family,
                )
            if status == 200:
                if hold_on_answer:
                    deadline.hold()  # this answer may hold the rotated refresh token: nothing may drop it now
                doc = parse(body, host_of(url), account, family)
                self.answers.answer = doc if isinstance(doc, dict) else None
                rotated = doc.get("refresh_token") if isinstance(doc, dict) else None
                if isinstance(rotated, str) and rotated:
                    self.answers.rotated = rotated

    s = Session()
    # One retry for a failed connect, as msal would build its own session.
    adapter = Adapter(max_retries=1)
    s.mount("https://", adapter)
    s.mount("http://", adapter)
    s.headers["User-Agent"] = _user_agent()
    return s


def _user_agent() -> str:
    from .. import __version__

    return f"mailtoken/{__version__}"


def parse(body: bytes, host: str, account: str | None, family: str = errors.ENTRA) -> object:
    """The JSON of an answer, None when it is not JSON; an answer nested too deeply is a temporary failure."""
    try:
        return json.loads(body)
    except RecursionError:
        raise errors.temporary(
            f"the answer from {host} is nested too deeply to be a token answer", account, family
        ) from None
    except ValueError:
        return None


def exchange(
    account: str,
    url: str,
    timeout: float,
    form: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    *,
    family: str,
    hold: bool = False,
) -> tuple[int, dict[str, Any], str | None, str | None]:
    """One JSON exchange: (status, body, Retry-After header, rotated refresh token). A GET without `form`.

    With `hold`, the deadline and termination signals wait from the moment a 200 answer is in: it may carry a
    rotated refresh token, which must reach the store (tokens.py releases them).
    """
    s = session(account, timeout, family=family, hold_on_answer=hold)
    with s:
        base = {"Accept": "application/json", **(headers or {})}
        response = s.get(url, headers=base) if form is None else s.post(url, data=form, headers=base)
    host = host_of(url)
    status = response.status_code
    doc = parse(response.content, host, account, family)
    if not isinstance(doc, dict):
        if status == 429 or status >= 500:
            raise errors.temporary(
                f"{host} answered HTTP {status}", account, family, response.headers.get("Retry-After")
            )
        raise errors.temporary(f"{host} answered HTTP {status} with something that is not JSON", account, family)
    return status, doc, response.headers.get("Retry-After"), s.answers.rotated
