"""`mailtoken config CLIENT ACCOUNT`: a ready config block for a mail client, for one account.

The mail hosts come from the provider catalog (national clouds included), the helper is called by its absolute
path, and each client gets the mechanism it can use with the provider (XOAUTH2 for Microsoft). Every value is
written with the quoting of the client's own syntax (quoting.py). contrib/ holds these blocks for a sample
account; tests/test_config_cmd.py checks the two match and feeds both to the clients.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable

from ..config import Account
from ..errors import UsageError
from .base import CONTRIB_HELPER, Endpoint, Target, helper_path, hook_path, target
from .mua import aerc, mutt, neomutt, s_nail
from .sync import getmail6, imapfilter, mbsync, offlineimap3
from .tools import curl, mpop, msmtp

GENERATORS: dict[str, Callable[[Target], str]] = {
    "msmtp": msmtp,
    "mbsync": mbsync,
    "neomutt": neomutt,
    "mutt": mutt,
    "offlineimap3": offlineimap3,
    "getmail6": getmail6,
    "aerc": aerc,
    "curl": curl,
    "mpop": mpop,
    "s-nail": s_nail,
    "imapfilter": imapfilter,
}
ALIASES = {"isync": "mbsync", "offlineimap": "offlineimap3", "getmail": "getmail6", "mailx": "s-nail"}
CLIENTS = tuple(GENERATORS)
# Clients that only know a password: their blocks point at the account's `mailtoken serve` listener
# (clientconf/bridge.py), so they need the config's [[serve]] tables, not just the account.
BRIDGE_CLIENTS = ("fetchmail", "postfix")


def client_name(name: str) -> str:
    key = ALIASES.get(name.lower(), name.lower())
    if key not in GENERATORS and key not in BRIDGE_CLIENTS:
        raise UsageError(f"unknown client '{name}' (known: {', '.join(CLIENTS + BRIDGE_CLIENTS)})")
    return key


def render(client: str, acct: Account, helper: str | None = None, hook: str | None = None) -> str:
    generate = GENERATORS[client_name(client)]
    main = target(acct, helper, hook)
    blocks = [generate(main)]
    # A shared mailbox is opened with the signed-in user's token and the mailbox's address as the SASL user.
    for mailbox in acct.shared:
        label = f"{acct.name}-{re.sub(r'[^A-Za-z0-9_.+-]', '-', mailbox.rpartition('@')[0])}"
        blocks.append(generate(dataclasses.replace(main, email=mailbox, label=label)))
    return "\n\n".join(block.rstrip("\n") for block in blocks)


__all__ = [
    "BRIDGE_CLIENTS",
    "CLIENTS",
    "CONTRIB_HELPER",
    "GENERATORS",
    "Endpoint",
    "Target",
    "client_name",
    "helper_path",
]
__all__ += ["hook_path", "render", "target"]
