"""What `mailtoken test` makes of a failure: the token's own claims and the server's reply, mapped to a
diagnosis and an exit code. Pure functions: doctor.py does the talking to servers.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from . import errors

LABEL = {"imap": "IMAP", "pop": "POP", "smtp": "SMTP"}
SCOPES = {"imap": "IMAP.AccessAsUser.All", "pop": "POP.AccessAsUser.All", "smtp": "SMTP.Send"}
# The Exchange Online mailbox setting that turns each protocol off.
CAS_FLAG = {"imap": "ImapEnabled", "pop": "PopEnabled", "smtp": "SmtpClientAuthenticationDisabled"}


@dataclass
class Claims:
    """What an Entra access token (a JWT) says about itself; empty for opaque tokens."""

    values: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, token: str) -> Claims:
        from . import jwtclaims

        return cls(jwtclaims.unverified(token))

    @property
    def user(self) -> str | None:
        for key in ("upn", "unique_name", "preferred_username", "email"):
            value = self.values.get(key)
            if isinstance(value, str):
                return value
        return None

    @property
    def scopes(self) -> list[str] | None:
        scp = self.values.get("scp")
        return scp.split() if isinstance(scp, str) else None

    def problems(self, protocol: str, user: str, account: str) -> list[str]:
        """What the token itself shows to be wrong for this protocol and mailbox."""
        found = []
        owner = self.user
        if owner and owner.lower() != user.lower():
            found.append(
                f"the token belongs to {owner}, not {user}: sign in as {user}, or give {owner} "
                f"Full Access to {user} if it is a shared mailbox"
            )
        scopes = self.scopes
        if scopes is not None and not any(s.split("/")[-1].lower() == SCOPES[protocol].lower() for s in scopes):
            found.append(
                f"the token lacks {SCOPES[protocol]} (it has: {' '.join(scopes) or 'none'}): add that delegated "
                "permission of Office 365 Exchange Online to the app registration, have it consented, then sign in "
                f"again ('mailtoken logout {account}', 'mailtoken login {account}')"
            )
        exp = self.values.get("exp")
        if isinstance(exp, (int, float)) and exp < time.time():
            found.append("the token has expired: check the computer's clock")
        return found

    def summary(self) -> str:
        if not self.values:
            return "opaque (not a JWT): its claims cannot be checked here"
        parts = []
        if self.user:
            parts.append(f"for {self.user}")
        if self.values.get("aud"):
            parts.append(f"audience {self.values['aud']}")
        if self.scopes is not None:
            parts.append("scopes " + (" ".join(self.scopes) or "none"))
        return ", ".join(parts) or "a JWT without the usual claims"


def diagnose(
    proto: str, server: str, stage: str, reply: str, user: str, claims: Claims, account: str
) -> tuple[str, int]:
    """What a failure at `stage` (connect, tls, mechs, auth, mailbox) of `proto` on `server` most likely
    means and what to do, and the exit code it maps to."""
    label = LABEL[proto]
    if stage == "connect":
        return (
            f"cannot reach {server}: check the host and port, and any firewall or proxy in between",
            errors.EX_TEMPFAIL,
        )
    if stage == "tls":
        return (
            f"TLS with {server} failed: if a proxy inspects TLS here, pass its CA with --cafile",
            errors.EX_CONFIG,
        )
    if stage == "mechs":
        return (
            f"{server} offers no XOAUTH2 for {label}: is this the provider's {label} host for the account's cloud?",
            errors.EX_CONFIG,
        )
    low = reply.lower()
    if proto == "smtp" and "5.7.139" in reply:
        return _smtp_blocked(low, user), errors.EX_NOPERM
    from_token = claims.problems(proto, user, account)
    if stage == "mailbox":
        why = from_token or [
            f"user={user} must be the signed-in account, or a mailbox it has Full Access to (try --user)",
            f"{label} may be disabled for the mailbox (Exchange Online: an admin checks "
            f"'Get-CASMailbox -Identity {user} | Format-List {CAS_FLAG[proto]}')",
        ]
        return f"signed in, but the mailbox is not reachable: {'; or '.join(why)}", errors.EX_NOPERM
    if "invalid_token" in low or '"status":"401"' in low.replace(" ", ""):
        why = from_token or ["the token is not valid for this server (expired, revoked, or issued for another one)"]
        return f"the server refused the token: {'; '.join(why)}", errors.EX_NOPERM
    if from_token:
        return f"the server refused the token: {'; '.join(from_token)}", errors.EX_NOPERM
    return (
        "the server refused the token. Usual causes: "
        f"user={user} is not the signed-in account (a shared mailbox needs Full Access; try --user); "
        f"the app registration lacks {SCOPES[proto]}; "
        f"{label} is disabled for the mailbox (Exchange Online: "
        f"'Get-CASMailbox -Identity {user} | Format-List {CAS_FLAG[proto]}'); "
        "a Conditional Access policy blocks this client",
        errors.EX_NOPERM,
    )


def _smtp_blocked(low: str, user: str) -> str:
    if "disabled for the tenant" in low:
        return (
            "SMTP AUTH is disabled for the whole tenant: an Exchange admin enables it for this mailbox with "
            f"'Set-CASMailbox -Identity {user} -SmtpClientAuthenticationDisabled $false' (or tenant-wide with "
            "'Set-TransportConfig -SmtpClientAuthenticationDisabled $false'); see https://aka.ms/smtp_auth_disabled"
        )
    if "disabled for the mailbox" in low:
        return (
            "SMTP AUTH is disabled for this mailbox: an Exchange admin runs "
            f"'Set-CASMailbox -Identity {user} -SmtpClientAuthenticationDisabled $false', or in the Microsoft 365 "
            "admin center: Users > Active users > the user > Mail > Manage email apps > Authenticated SMTP"
        )
    if "security defaults" in low:
        return (
            "Microsoft Entra security defaults block SMTP AUTH in this tenant: an admin must replace security "
            "defaults with Conditional Access policies that allow it"
        )
    if "criteria" in low or "conditional access" in low:
        return (
            "a Conditional Access policy refused this sign-in (device, location or MFA rule): the tenant's Entra "
            "sign-in log names the policy; ask an admin"
        )
    return (
        "Exchange Online blocks SMTP AUTH here (5.7.139): SMTP AUTH disabled for the mailbox or tenant, security "
        f"defaults, or Conditional Access; an admin checks 'Get-CASMailbox -Identity {user} | Format-List "
        "SmtpClientAuthenticationDisabled'"
    )
