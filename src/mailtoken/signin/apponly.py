"""`mailtoken login` for an app-only account (flow = "client_credentials"): keep the secret, prove it works.

There is no sign-in: login stores the app's client secret in the keyring when the account has neither
client_secret_cmd nor a certificate (read from the terminal without echo, or from stdin when it is not one),
then asks for a first token, so a wrong secret or a missing admin consent shows now rather than in the mail client.
"""

from __future__ import annotations

import sys
import time

from .. import tokens, ui
from ..config import Account
from ..errors import UsageError
from ..providers import credentials, microsoft_app


def login(acct: Account, config_path: str) -> str:
    if not acct.client_secret_cmd and not acct.certificate:
        secret = _read_secret(acct)
        where = credentials.store_secret(acct, secret)
        ui.say(f"{acct.name}: the app's client secret is kept in {where}")
    started = time.time()
    grant = microsoft_app.acquire(acct, tokens.NET_TIMEOUT)
    tokens.save_sign_in(acct, None, grant, started, config_path)
    ui.say(
        f"{acct.name}: app-only access works ({credentials.source(acct)}); the token opens the mailboxes an "
        f"Exchange admin granted to the app, as {acct.email} by default"
    )
    return acct.email


def _read_secret(acct: Account) -> str:
    if sys.stdin.isatty():
        import getpass

        secret = getpass.getpass(f"mailtoken: {acct.name}: the app's client secret (not shown): ")
    else:
        secret = sys.stdin.readline()
    secret = secret.strip()
    if not secret:
        raise UsageError(
            f"no client secret given: type it when asked, or pipe it in (never as an argument), or set "
            f"client_secret_cmd in [accounts.{acct.name}]",
            account=acct.name,
        )
    return secret
