"""Which Graph permissions an account asks for, and where its Graph API is: catalog data, no I/O."""

from __future__ import annotations

from .. import providers
from ..config import Account


def graph_host(acct: Account) -> str:
    """The Graph resource of the account's cloud (the token's audience), like https://graph.microsoft.com."""
    return str(providers.cloud(acct.provider, acct.cloud)["graph"])


def api_url(acct: Account) -> str:
    """Where requests go: `graph_url` (tests, future clouds), else the cloud's host and API version."""
    return acct.graph_url or f"{graph_host(acct)}/{providers.spec(acct.provider)['graph_api']}"


def names(acct: Account) -> list[str]:
    """The delegated permissions the account needs: no more than its features use."""
    spec = providers.spec(acct.provider)
    wanted = list(spec["graph_scopes"])
    if acct.shared:
        wanted += spec["graph_shared_scopes"]
    if acct.graph_large:
        wanted += spec["graph_large_scopes"]
    return wanted


def delegated(acct: Account) -> list[str]:
    host = graph_host(acct)
    return [f"{host}/{name}" for name in names(acct)]
