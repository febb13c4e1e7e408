"""Transient or permanent, decided in one place: OAuth error answers, HTTP statuses, Retry-After, transport.

The kinds of error answers are data (aadsts.toml for the Microsoft identity platform, oauth2_errors.toml for
the standard-library engine's providers); this module is the only reader of both and the only place that
turns an answer, a status or a transport failure into the error the user sees. The rule, in full:

- An error answer's kind comes from its table: Entra's AADSTS codes first, then the OAuth error name; a
  provider's own entry, then the generic one. An error nobody listed is temporary: only an authoritative
  answer may send the user back to sign in.
- HTTP 429 and 5xx are temporary, with the Retry-After they carry; a status without an OAuth error is too.
- Only `invalid_grant` to a refresh, naming no condition that can pass without a new sign-in (an entry with
  `conditional = true`, or one of `conditional_suberrors`), is a verdict on the grant itself
  (SignInRequired.grant_rejected; tokens.py marks the grant).
- Every transport failure (DNS, refused, reset, TLS, timeout, a cut-off, oversized or unparsable answer)
  is temporary. A certificate that fails verification is too (a captive portal looks the same), but its
  message names the host and the fix instead of "try again later".
"""

from __future__ import annotations

import functools
import sys
from importlib import resources
from typing import Any

from ..errors import ConfigError, MailtokenError, SignInRequired, TemporaryFailure

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

# A Retry-After longer than this is cut to it: a bogus header must not stop refreshes for long.
MAX_WAIT = 600
# Longest piece of an answer quoted in a message or in -v detail: answers are not ours to print whole.
MAX_QUOTE = 400
_CLASSES: dict[str, type[MailtokenError]] = {
    "signin": SignInRequired,
    "config": ConfigError,
    "temporary": TemporaryFailure,
}
ENTRA = "entra"


def _load(name: str) -> dict[str, Any]:
    return tomllib.loads(resources.files(__package__).joinpath(name).read_text("utf-8"))


@functools.lru_cache(maxsize=1)
def entra_table() -> dict[str, Any]:
    return _load("aadsts.toml")


@functools.lru_cache(maxsize=1)
def oauth2_table() -> dict[str, Any]:
    return _load("oauth2_errors.toml")


def _table(family: str) -> dict[str, Any]:
    return entra_table() if family == ENTRA else oauth2_table()


def entry(family: str, error: str, codes: list[str] | None = None) -> tuple[dict[str, Any], str]:
    """The table entry for an error answer and the label that names it in the message.

    `family` is "entra" or the name of a provider of the oauth2 engine (its own table, then [generic]).
    """
    unknown = {"kind": "temporary", "advice": "try again later"}
    if family == ENTRA:
        table = entra_table()
        for code in codes or []:
            if code in table["codes"]:
                return table["codes"][code], f"AADSTS{code}"
        label = f"{error}, AADSTS{codes[0]}" if codes else error
        return table["errors"].get(error, unknown), label
    table = oauth2_table()
    found = table.get(family, {}).get(error) if family != "labels" else None
    return found or table["generic"].get(error) or unknown, error


def quote(text: object, limit: int = MAX_QUOTE) -> str:
    value = str(text)
    return value if len(value) <= limit else value[:limit] + "…"


def first_sentence(description: str) -> str:
    # "AADSTS70008: The provided authorization code or refresh token has expired ... \r\nTrace ID: ..."
    text = description[: MAX_QUOTE * 4].split("\r\n")[0].split("\n")[0].strip()
    if ":" in text and text.startswith("AADSTS"):
        text = text.split(":", 1)[1].strip()
    return text.split(". ")[0].rstrip(".")[:120]


def from_answer(
    family: str,
    doc: dict[str, Any],
    account: str,
    *,
    status: int = 400,
    retry_after: str | None = None,
    refreshing: bool = False,
) -> MailtokenError:
    """The error for an OAuth error answer (`doc`, with Entra's error_codes when present) at HTTP `status`."""
    error = quote(doc.get("error") or "", 100)
    if status == 429 or status >= 500 or not error:
        return temporary(
            f"{who(family)} answered HTTP {status}" + (f" ({error})" if error else ""), account, family, retry_after
        )
    codes = [quote(c, 20) for c in doc.get("error_codes") or [] if isinstance(c, (int, str))]
    found, label = entry(family, error, codes)
    labels = _table(family)["labels"]
    kind = found["kind"]
    summary = first_sentence(str(doc.get("error_description") or ""))
    cause = (f"{label} {summary}" if family == ENTRA else f"{label}: {summary}") if summary else label
    detail = "; ".join(
        f"{k}={quote(doc[k])}"
        for k in ("error_description", "error_uri", "correlation_id", "trace_id", "suberror")
        if doc.get(k)
    )
    result = _CLASSES[kind](
        f"{labels[kind]} ({cause}): {found['advice'].format(account=account)}", account=account, detail=detail or None
    )
    if isinstance(result, TemporaryFailure):
        result.retry_after = retry_after_seconds(retry_after)
    if isinstance(result, SignInRequired) and refreshing and error == "invalid_grant":
        conditional = found.get("conditional") or any(entry(family, error, [c])[0].get("conditional") for c in codes)
        suberror = str(doc.get("suberror") or "") in _table(family).get("conditional_suberrors", [])
        result.grant_rejected = not (conditional or suberror)
    return result


def who(family: str) -> str:
    return str(_table(family)["labels"]["who"])


def retry_after_seconds(value: str | None) -> int | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date, RFC 9110 10.2.3), at most MAX_WAIT."""
    if not value or not value.strip():
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        seconds = int(text[:12])
    else:
        import email.utils
        import time

        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when is None:
            return None
        seconds = int(when.timestamp() - time.time())
    return max(1, min(seconds, MAX_WAIT))


def temporary(
    what: str, account: str | None, family: str = ENTRA, retry_after: str | int | None = None
) -> TemporaryFailure:
    """A temporary failure; with a Retry-After the message says when to come back."""
    wait = retry_after if isinstance(retry_after, int) else retry_after_seconds(retry_after)
    later = f"try again in {wait} s ({who(family)} asked to wait)" if wait else "try again later"
    error = TemporaryFailure(f"temporary failure: {what}: {later}", account=account)
    error.retry_after = wait
    return error


def _causes(exc: BaseException) -> list[BaseException]:
    """`exc` and what it wraps (requests wraps urllib3, which wraps the socket error)."""
    seen: list[BaseException] = []
    todo: list[object] = [exc]
    while todo and len(seen) < 20:
        item = todo.pop()
        if not isinstance(item, BaseException) or any(item is s for s in seen):
            continue
        seen.append(item)
        todo += [item.__cause__, item.__context__, getattr(item, "reason", None), *item.args]
    return seen


def transport(exc: BaseException, host: str, account: str | None, family: str = ENTRA) -> MailtokenError:
    """The error for a failed HTTP exchange with `host` (requests' exceptions and what they wrap)."""
    import ssl

    causes = _causes(exc)
    kinds = {type(c).__name__ for c in causes}
    # Who failed: the host where it matters (DNS, TLS, a refused connection); for Entra, else, its name.
    party = host or who(family)
    them = who(family) if family == ENTRA else party
    if any(isinstance(c, ssl.SSLCertVerificationError) for c in causes) or "CERTIFICATE_VERIFY_FAILED" in str(exc):
        # No retry fixes this, so the message names the fix instead of "later"; it stays temporary (75) so a
        # still-valid cached token is served meanwhile (a captive portal's certificate fails the same way).
        return TemporaryFailure(
            f"TLS with {party} failed: certificate verify failed (not signed by a CA trusted here; a TLS-inspecting "
            "proxy?): add its CA to the system's trust store, or point SSL_CERT_FILE or REQUESTS_CA_BUNDLE at it",
            account=account,
        )
    if "SSLError" in kinds or any(isinstance(c, ssl.SSLError) for c in causes):
        what = f"TLS with {party} failed (a proxy, or REQUESTS_CA_BUNDLE, may be wrong)"
    elif kinds & {"ConnectTimeout", "ReadTimeout", "Timeout", "TimeoutError", "timeout"}:
        what = f"{them} did not answer in time"
    elif kinds & {"ChunkedEncodingError", "IncompleteRead"}:
        what = (
            "the identity platform's answer was cut off" if family == ENTRA else f"the answer from {party} was cut off"
        )
    elif kinds & {"NameResolutionError", "gaierror"}:
        what = f"cannot resolve {party} (DNS failure, or offline?)"
    elif "ConnectionRefusedError" in kinds:
        what = f"{party} refused the connection (network down, or a proxy needed?)"
    elif kinds & {"RemoteDisconnected", "ConnectionResetError", "ConnectionAbortedError"}:
        what = f"{them} closed the connection without answering"
    elif "ConnectionError" in kinds:
        what = f"cannot connect to {them} (network down or DNS failure?)"
    elif isinstance(exc, (ValueError, RecursionError)):
        what = f"{them} sent an answer that is not valid JSON"
    else:
        what = f"cannot talk to {party} ({type(exc).__name__})"
    return temporary(what, account, family)
