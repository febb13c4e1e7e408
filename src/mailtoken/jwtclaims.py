"""The one JWT decoder (PyJWT, already msal's dependency): claims read without checking the signature.

Used only to show who signed in (id tokens) and to explain a refused login (access tokens); never to decide
whether to trust anything, which is the mail server's and the identity platform's job.
"""

from __future__ import annotations

from typing import Any


def unverified(token: object) -> dict[str, Any]:
    """The claims of a JWT, or {} for anything that is not one (opaque tokens, garbage)."""
    import jwt

    if not isinstance(token, str) or token.count(".") != 2:
        return {}
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except (jwt.PyJWTError, ValueError, TypeError, RecursionError):
        return {}
    return claims if isinstance(claims, dict) else {}
