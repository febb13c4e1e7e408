"""SASL encoding (issue 3): the published Microsoft example, byte for byte, and RFC 7628's layout."""

from __future__ import annotations

import base64

from mailtoken.fast import sasl

PUBLISHED_USER = "test@contoso.onmicrosoft.com"
PUBLISHED_TOKEN = "EwBAAl3BAAUFFpUAo7J3Ve0bjLBWZWCclRC3EoAA"
PUBLISHED_XOAUTH2 = "dXNlcj10ZXN0QGNvbnRvc28ub25taWNyb3NvZnQuY29tAWF1dGg9QmVhcmVyIEV3QkFBbDNCQUFVRkZwVUFvN0ozVmUwYmpMQldaV0NjbFJDM0VvQUEBAQ=="  # noqa: E501


def test_xoauth2_reproduces_the_published_example() -> None:
    assert sasl.xoauth2(PUBLISHED_USER, PUBLISHED_TOKEN) == PUBLISHED_XOAUTH2


def test_xoauth2_raw_is_the_unencoded_string() -> None:
    raw = sasl.xoauth2_raw(PUBLISHED_USER, PUBLISHED_TOKEN)
    assert raw == f"user={PUBLISHED_USER}\x01auth=Bearer {PUBLISHED_TOKEN}\x01\x01"
    assert base64.b64encode(raw.encode()).decode() == PUBLISHED_XOAUTH2


def test_oauthbearer_layout_and_escaping() -> None:
    raw = sasl.oauthbearer_raw("a,b=c@x.org", "T", host="imap.x.org", port=993)
    assert raw == "n,a=a=2Cb=3Dc@x.org,\x01host=imap.x.org\x01port=993\x01auth=Bearer T\x01\x01"
    assert sasl.oauthbearer_raw("u@x.org", "T") == "n,a=u@x.org,\x01auth=Bearer T\x01\x01"
    assert base64.b64decode(sasl.oauthbearer("u@x.org", "T", "h", 1)).decode() == sasl.oauthbearer_raw(
        "u@x.org", "T", "h", 1
    )


def test_long_token_is_one_line() -> None:
    token = "A" * 2500
    encoded = sasl.xoauth2("u@x.org", token)
    assert "\n" not in encoded
    assert base64.b64decode(encoded).decode().endswith(token + "\x01\x01")


def test_the_modules_doctests_pass() -> None:
    """The published example in sasl.py's docstring is run, not just shown."""
    import doctest

    result = doctest.testmod(sasl, verbose=False)
    assert result.attempted >= 2 and result.failed == 0
