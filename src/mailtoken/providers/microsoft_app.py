"""App-only access to Exchange Online (OAuth 2.0 client credentials) through msal's ConfidentialClientApplication.

No person signs in and there is no refresh token (a grantless engine): each refresh asks Entra for a new
access token with the app's secret or certificate. The token is for the app; the mailbox is chosen by the
XOAUTH2 user (the account's email), and Exchange lets the app in where an admin granted it
(Add-MailboxPermission).
"""

from __future__ import annotations

from typing import Any, NoReturn

from .. import providers
from ..config import Account
from ..errors import UsageError
from . import credentials, entra, errors
from .base import ExitCondition, Flow, Grant

grantless = True


def scopes_for(acct: Account, resource: str | None = None) -> list[str]:
    cloud = providers.cloud(acct.provider, acct.cloud)
    if resource == "graph":  # the Mail.Send application permission on Microsoft Graph
        return [f"{cloud['graph']}/.default"]
    return [f"{cloud.get('app_resource', cloud['resource'])}/.default"]


def acquire(acct: Account, timeout: float, resource: str | None = None) -> Grant:
    import msal

    credential: Any = credentials.certificate(acct) if acct.certificate else credentials.client_secret(acct, timeout)
    session = entra.session(acct, timeout)
    app = entra.call(
        acct,
        lambda: msal.ConfidentialClientApplication(
            acct.client_id, client_credential=credential, **entra.app_kwargs(acct, session)
        ),
    )
    result = entra.call(acct, lambda: app.acquire_token_for_client(scopes=scopes_for(acct, resource)), session)
    if not result or "error" in result:
        # refreshing=False: there is no grant to mark, the secret or the app is the problem
        raise entra.with_wait(errors.from_answer(errors.ENTRA, result or {"error": "no_answer"}, acct.name), session)
    result.setdefault("id_token_claims", {"preferred_username": acct.email})
    return entra.grant(acct, result, lambda: "", session)


def refresh(acct: Account, blob: str, timeout: float, resource: str | None = None) -> Grant:
    return acquire(acct, timeout, resource)


def _no_sign_in(acct: Account) -> NoReturn:
    raise UsageError(
        f"an app-only account (flow = \"client_credentials\") has no sign-in: 'mailtoken login {acct.name}' "
        "only stores and checks the app's credential",
        account=acct.name,
    )


def start_device_flow(acct: Account, timeout: float) -> Flow:
    _no_sign_in(acct)


def finish_device_flow(acct: Account, flow: Flow, exit_condition: ExitCondition) -> Grant:
    _no_sign_in(acct)


def resume_device_flow(acct: Account, info: dict[str, Any], exit_condition: ExitCondition, timeout: float) -> Grant:
    _no_sign_in(acct)


def start_auth_code_flow(acct: Account, redirect_uri: str, timeout: float, consent: bool = False) -> Flow:
    _no_sign_in(acct)


def finish_auth_code_flow(acct: Account, flow: Flow, response: dict[str, str]) -> Grant:
    _no_sign_in(acct)
