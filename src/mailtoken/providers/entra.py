"""What both msal engines share: the authority, msal's HTTP client, and turning msal's outcomes into errors.

msal is imported here only inside functions, and only when a network call is due.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from .. import providers
from ..config import Account
from ..errors import ConfigError, MailtokenError, SignInRequired, TemporaryFailure
from . import errors, http
from .base import Grant, RotatedGrant, token_problem

# msal logs token responses at ERROR when they are not JSON; keep its records off stderr.
logging.getLogger("msal").addHandler(logging.NullHandler())
logging.getLogger("msal").propagate = False

T = TypeVar("T")


def authority_for(acct: Account) -> str:
    if acct.authority:
        return acct.authority
    return f"{providers.cloud(acct.provider, acct.cloud)['authority_host']}/{acct.tenant}"


def app_kwargs(acct: Account, session: Any) -> dict[str, Any]:
    """What every msal application of this account is built with."""
    kwargs: dict[str, Any] = {"authority": authority_for(acct), "http_client": session}
    if acct.authority:
        # A custom authority (national cloud, test server) must not trigger instance discovery at Microsoft.
        kwargs["instance_discovery"] = False
    return kwargs


def call(acct: Account, fn: Callable[[], T], session: Any = None) -> T:
    """Run an msal call; what msal raises becomes the one classification's error (never a grant-killing one),
    saying how long to wait when the answer had a Retry-After."""
    try:
        return _call(acct, fn)
    except MailtokenError as exc:
        raise (with_wait(exc, session) if session is not None else exc) from None


def _call(acct: Account, fn: Callable[[], T]) -> T:
    from msal.exceptions import MsalServiceError

    try:
        return fn()
    except MailtokenError:
        raise
    except MsalServiceError as exc:
        # msal raises this for an HTTP 5xx answer ("HTTP Error: 503"), before looking at its body.
        status = str(exc).rsplit(" ", 1)[-1]
        raise errors.temporary(f"the identity platform answered HTTP {errors.quote(status, 10)}", acct.name) from None
    except ValueError as exc:
        text = str(exc)
        if "Unable to get authority configuration" in text and not isinstance(exc.__context__, json.JSONDecodeError):
            raise ConfigError(
                f"the identity platform does not know the authority {authority_for(acct)} "
                "(check tenant/authority in the config)",
                account=acct.name,
            ) from None
        raise errors.temporary("the identity platform sent an answer that is not valid JSON", acct.name) from None
    except (KeyError, TypeError, RecursionError):
        # msal indexing into an answer of the wrong shape
        raise errors.temporary("the identity platform sent an answer msal cannot use", acct.name) from None


def with_wait(error: MailtokenError, session: Any) -> MailtokenError:
    """The error, saying how long the identity platform asked us to wait when its answer had a Retry-After."""
    wait = session.answers.retry_after
    if wait and isinstance(error, TemporaryFailure) and not error.retry_after:
        later = "try again later"
        base = error.message[: -len(later)] if error.message.endswith(later) else error.message + ": "
        error.message = f"{base}try again in {wait} s (the identity platform asked to wait)"
        error.retry_after = wait
    return error


def grant(
    acct: Account, result: dict[str, Any] | None, blob: Callable[[], str], session: Any, refreshing: bool = False
) -> Grant:
    """The Grant from msal's result, or the error it stands for."""
    if not result:
        raise SignInRequired(
            f"sign-in required (no usable grant): run 'mailtoken login {acct.name}'", account=acct.name
        )
    if "error" in result:
        raise with_wait(errors.from_answer(errors.ENTRA, result, acct.name, refreshing=refreshing), session)
    problem = token_problem(result.get("access_token"), result.get("expires_in", 3600))
    if problem:
        error = errors.temporary(f"the identity platform's answer {problem}", acct.name)
        if session.answers.rotated:
            raise RotatedGrant(blob(), error)
        raise error
    claims = result.get("id_token_claims") or {}
    return Grant(
        access_token=result["access_token"],
        expires_in=int(result.get("expires_in", 3600)),
        blob=blob(),
        username=str(claims.get("preferred_username") or ""),
    )


def session(acct: Account, timeout: float, hold_on_answer: bool = False) -> Any:
    return http.session(acct.name, timeout, family=errors.ENTRA, hold_on_answer=hold_on_answer)
