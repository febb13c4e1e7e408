"""SASL initial responses for XOAUTH2 and OAUTHBEARER (RFC 7628). Pure functions, stdlib only.

>>> xoauth2("test@contoso.onmicrosoft.com", "EwBAAl3BAAUFFpUAo7J3Ve0bjLBWZWCclRC3EoAA")
'dXNlcj10ZXN0QGNvbnRvc28ub25taWNyb3NvZnQuY29tAWF1dGg9QmVhcmVyIEV3QkFBbDNCQUFVRkZwVUFvN0ozVmUwYmpMQldaV0NjbFJDM0VvQUEBAQ=='
>>> oauthbearer_raw("a@b.c", "tok", host="imap.b.c", port=993)
'n,a=a@b.c,\\x01host=imap.b.c\\x01port=993\\x01auth=Bearer tok\\x01\\x01'
"""

from __future__ import annotations

import binascii


def b64(text: str) -> str:
    # binascii rather than base64: base64 drags in struct and re, and this runs on the hot path.
    return binascii.b2a_base64(text.encode("utf-8"), newline=False).decode("ascii")


def xoauth2_raw(user: str, token: str) -> str:
    return f"user={user}\x01auth=Bearer {token}\x01\x01"


def xoauth2(user: str, token: str) -> str:
    return b64(xoauth2_raw(user, token))


def _saslname(user: str) -> str:
    # RFC 5801 gs2 header: ',' and '=' in the authzid must be escaped.
    return user.replace("=", "=3D").replace(",", "=2C")


def oauthbearer_raw(user: str, token: str, host: str | None = None, port: int | None = None) -> str:
    parts = [f"n,a={_saslname(user)},"]
    if host:
        parts.append(f"host={host}")
    if port is not None:
        parts.append(f"port={port}")
    parts.append(f"auth=Bearer {token}")
    return "\x01".join(parts) + "\x01\x01"


def oauthbearer(user: str, token: str, host: str | None = None, port: int | None = None) -> str:
    return b64(oauthbearer_raw(user, token, host, port))
