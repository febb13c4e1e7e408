"""App-only access to Exchange Online (OAuth 2.0 client credentials) through msal's ConfidentialClientApplication.

No person signs in and there is no refresh token: each refresh asks Entra for a new access token with the app's
secret or certificate. The token is for the app; the mailbox is chosen by the XOAUTH2 user (the account's email),
and Exchange lets the app in where an admin granted it (Add-MailboxPermission).
"""

from __future__ import annotations

from typing import Any

from .. import providers
from ..config import Account
from ..errors import TemporaryFailure
from . import credentials, microsoft
from .base import Grant


def scopes_for(acct: Account, resource: str | None = None) -> list[str]:
    cloud = providers.cloud(acct.provider, acct.cloud)
    if resource == "graph":  # the Mail.Send application permission on Microsoft Graph
        return [f"{cloud['graph']}/.default"]
    return [f"{cloud.get('app_resource', cloud['resource'])}/.default"]


def acquire(acct: Account, timeout: float, resource: str | None = None) -> Grant:
    import msal

    credential: Any = credentials.certificate(acct) if acct.certificate else credentials.client_secret(acct, timeout)
    kwargs: dict[str, Any] = {}
    if acct.authority:
        # A custom authority (national cloud, test server) must not trigger instance discovery at Microsoft.
        kwargs["instance_discovery"] = False
    app = microsoft._call(
        acct,
        lambda: msal.ConfidentialClientApplication(
            acct.client_id,
            authority=microsoft.authority_for(acct),
            client_credential=credential,
            http_client=microsoft._session(timeout),
            **kwargs,
        ),
    )
    result = microsoft._call(acct, lambda: app.acquire_token_for_client(scopes=scopes_for(acct, resource)))
    if not result or "error" in result:
        error = providers.error_from_response(result or {"error": "no_answer"}, acct.name)
        error.grant_rejected = False  # there is no grant to mark: the secret or the app is the problem
        raise error
    token = result.get("access_token")
    if not isinstance(token, str) or not token:
        raise TemporaryFailure(
            "temporary failure: Entra's answer holds no access token: try again later", account=acct.name
        )
    return Grant(access_token=token, expires_in=int(result.get("expires_in", 3600)), blob="", username=acct.email)
