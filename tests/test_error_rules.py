"""The transient-vs-fatal rule as one table (providers/errors.py, with its data in aadsts.toml and
oauth2_errors.toml): every AADSTS code, every OAuth error, HTTP statuses, Retry-After, transport failures."""

from __future__ import annotations

import email.utils
import socket
import ssl
import time
from pathlib import Path

import pytest
import requests

from mailtoken.errors import ConfigError, SignInRequired, TemporaryFailure
from mailtoken.providers import errors

ENTRA = errors.entra_table()
OAUTH2 = errors.oauth2_table()
KIND = {"signin": SignInRequired, "config": ConfigError, "temporary": TemporaryFailure}
CONDITIONAL = {code for code, entry in ENTRA["codes"].items() if entry.get("conditional")}


def test_the_conditional_codes_are_the_documented_ones() -> None:
    """docs/reliability.md lists them; the data is the one place they live."""
    assert {"50076", "50079", "53000", "53001", "53003", "530033", "50158", "65001"} == CONDITIONAL
    text = (Path(__file__).parent.parent / "docs" / "reliability.md").read_text(encoding="utf-8")
    for code in CONDITIONAL:
        assert code in text, f"AADSTS{code} is conditional but docs/reliability.md does not say so"


@pytest.mark.parametrize("code", sorted(ENTRA["codes"]))
def test_every_aadsts_code_as_a_refresh_answer(code: str) -> None:
    entry = ENTRA["codes"][code]
    doc = {"error": "invalid_grant", "error_codes": [int(code)], "error_description": f"AADSTS{code}: Words. More."}
    result = errors.from_answer(errors.ENTRA, doc, "work", refreshing=True)
    assert type(result) is KIND[entry["kind"]]
    assert f"AADSTS{code}" in result.message and "Words" in result.message
    assert entry["advice"].format(account="work") in result.message
    rejected = isinstance(result, SignInRequired) and result.grant_rejected
    assert rejected == (entry["kind"] == "signin" and code not in CONDITIONAL)


@pytest.mark.parametrize("error", sorted(ENTRA["errors"]))
def test_every_entra_error_name_without_a_known_code(error: str) -> None:
    result = errors.from_answer(errors.ENTRA, {"error": error}, "work", refreshing=True)
    assert type(result) is KIND[ENTRA["errors"][error]["kind"]]
    assert getattr(result, "grant_rejected", False) == (error == "invalid_grant")


@pytest.mark.parametrize(
    "provider, error",
    [("generic", e) for e in sorted(OAUTH2["generic"])] + [("google", e) for e in sorted(OAUTH2["google"])],
)
def test_every_oauth_error_of_the_stdlib_engine(provider: str, error: str) -> None:
    entry = OAUTH2.get(provider, {}).get(error) or OAUTH2["generic"][error]
    result = errors.from_answer(provider, {"error": error}, "work", refreshing=True)
    assert type(result) is KIND[entry["kind"]]
    assert entry["advice"].format(account="work") in result.message
    # These providers name no conditions: invalid_grant to a refresh is the verdict on the refresh token.
    assert getattr(result, "grant_rejected", False) == (error == "invalid_grant")


@pytest.mark.parametrize("suberror", ENTRA["conditional_suberrors"])
def test_a_conditional_suberror_never_marks_the_grant(suberror: str) -> None:
    doc = {"error": "invalid_grant", "error_codes": [70000], "suberror": suberror}
    result = errors.from_answer(errors.ENTRA, doc, "work", refreshing=True)
    assert isinstance(result, SignInRequired) and not result.grant_rejected


def test_invalid_grant_at_sign_in_marks_nothing() -> None:
    result = errors.from_answer(errors.ENTRA, {"error": "invalid_grant", "error_codes": [70000]}, "work")
    assert isinstance(result, SignInRequired) and not result.grant_rejected


@pytest.mark.parametrize(
    "family, doc, status, kind",
    [
        (errors.ENTRA, {"error": "made_up"}, 400, TemporaryFailure),  # unknown: never sends anyone to sign in
        ("generic", {"error": "made_up"}, 400, TemporaryFailure),
        ("generic", {}, 400, TemporaryFailure),  # a status without an OAuth error
        ("generic", {"error": "invalid_grant"}, 500, TemporaryFailure),  # 5xx wins over the body
        ("generic", {"error": "invalid_grant"}, 429, TemporaryFailure),
        ("generic", {"error": "invalid_client"}, 401, ConfigError),
        (errors.ENTRA, {"error": "invalid_grant", "error_codes": [999999999]}, 400, SignInRequired),
    ],
)
def test_statuses_and_unknown_errors(family: str, doc: dict, status: int, kind: type) -> None:
    assert type(errors.from_answer(family, doc, "work", status=status, refreshing=True)) is kind


def test_an_answer_quoted_in_a_message_is_cut() -> None:
    doc = {"error": "x" * 10_000, "error_description": "y" * 100_000}
    result = errors.from_answer("generic", doc, "work")
    assert len(result.message) < 500 and len(result.detail or "") < 1000


@pytest.mark.parametrize(
    "header, expected",
    [
        (None, None),
        ("", None),
        ("120", 120),
        (" 7 ", 7),
        ("0", 1),
        ("99999999999999999999", errors.MAX_WAIT),
        ("soon", None),
        ("²", None),
        ("-5", None),
    ],
)
def test_retry_after_in_seconds_capped(header: str | None, expected: int | None) -> None:
    assert errors.retry_after_seconds(header) == expected


@pytest.mark.parametrize("ahead, expected", [(300, 300), (-300, 1), (86400, errors.MAX_WAIT)])
def test_retry_after_as_an_http_date(ahead: int, expected: int) -> None:
    header = email.utils.formatdate(time.time() + ahead, usegmt=True)
    got = errors.retry_after_seconds(header)
    assert got is not None and abs(got - expected) <= 2  # an HTTP date has one-second resolution


def _wrapped(inner: BaseException) -> requests.exceptions.ConnectionError:
    outer = requests.exceptions.ConnectionError("wrapped")
    outer.__context__ = inner
    return outer


@pytest.mark.parametrize(
    "exc, needle",
    [
        (_wrapped(ConnectionRefusedError()), "refused the connection"),
        (_wrapped(socket.gaierror()), "cannot resolve"),
        (requests.exceptions.ReadTimeout(), "did not answer in time"),
        (requests.exceptions.ChunkedEncodingError(), "cut off"),
        (_wrapped(ConnectionResetError()), "closed the connection"),
        (_wrapped(ssl.SSLError()), "TLS with login.example failed"),
        (requests.exceptions.ConnectionError(), "cannot connect"),
        (ValueError("junk"), "not valid JSON"),
    ],
)
def test_every_transport_failure_is_temporary(exc: BaseException, needle: str) -> None:
    result = errors.transport(exc, "login.example", "work")
    assert isinstance(result, TemporaryFailure)
    assert needle in result.message and result.message.endswith("try again later")


def test_a_certificate_failure_names_the_host_and_the_fix_not_later() -> None:
    result = errors.transport(_wrapped(ssl.SSLCertVerificationError("bad")), "login.example", "work")
    assert isinstance(result, TemporaryFailure)  # a cached token is still served meanwhile
    assert "certificate verify failed" in result.message and "login.example" in result.message
    assert "SSL_CERT_FILE" in result.message and "later" not in result.message
