"""The `[[serve]]` tables: one listener of the bridge each. Pure validation, called from config.parse().

Errors name the file, the table (its index and protocol), the key, the closest valid key, and exit 78.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..config import Account

PROTOCOLS = ("smtp", "imap", "pop3")
DEFAULT_PORTS = {"smtp": 1587, "imap": 1143, "pop3": 1110}
IMPLICIT_PORTS = frozenset({465, 993, 995})
STARTTLS_PORTS = frozenset({25, 587, 143, 110})
UPSTREAM_TLS = ("starttls", "implicit")
LOCAL_TLS = ("none", "starttls", "implicit")
DEFAULT_ALLOW = ("127.0.0.0/8", "::1/128")
DEFAULT_MAX_CONNECTIONS = 200
DEFAULT_IDLE_TIMEOUT = 60
GRAPH = "graph"  # upstream = "graph": the bridge takes the message and submits it with Microsoft Graph
# Which account key (and catalog entry) names the upstream host for each protocol.
_HOST_KEY = {"smtp": "smtp", "imap": "imap", "pop3": "pop"}

SERVE_KEYS: dict[str, type | tuple[type, ...]] = {
    "protocol": str,
    "listen": str,
    "account": str,
    "upstream": str,
    "upstream_tls": str,
    "local_tls": str,
    "cert": str,
    "key": str,
    "allow": list,
    "allow_plaintext": bool,
    "max_connections": int,
    "idle_timeout": (int, str),
}

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Listener:
    index: int  # 1-based position among the [[serve]] tables, for messages
    protocol: str
    host: str
    port: int
    account: str
    upstream: str | None  # "host:port", "graph", or None: the account's host for the protocol (resolved at serve time)
    upstream_tls: str | None  # None: from the upstream port
    local_tls: str = "none"
    cert: str | None = None
    key: str | None = None
    allow: tuple[Network, ...] = ()
    allow_plaintext: bool = False
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    idle_timeout: int = DEFAULT_IDLE_TIMEOUT

    @property
    def name(self) -> str:
        """How logs and errors name this listener: `smtp 127.0.0.1:1587`."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.protocol} {host}:{self.port}"

    def allows(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in net for net in self.allow)


def _suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def split_hostport(text: str, default_port: int | None) -> tuple[str, int]:
    """`host:port`, `[v6]:port`, a bare host or a bare port; ValueError with the reason otherwise."""
    m = re.fullmatch(r"\[([0-9A-Fa-f:.%\w]+)\](?::(\d+))?|([^:\[\]\s]*)(?::(\d+))?|([0-9A-Fa-f:]+)", text)
    if not m:
        raise ValueError("not HOST:PORT, [IPv6]:PORT, HOST or PORT")
    if m.group(5) is not None:  # a bare IPv6 address
        host, port_text = m.group(5), None
    else:
        host, port_text = (m.group(1), m.group(2)) if m.group(1) is not None else (m.group(3), m.group(4))
    if host.isdigit() and port_text is None:
        host, port_text = "", host
    if port_text is None:
        if default_port is None:
            raise ValueError("needs a port, like HOST:PORT")
        port = default_port
    else:
        port = int(port_text)
    if not 0 < port < 65536:
        raise ValueError(f"port {port} is out of range")
    return host, port


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def validate(tables: object, path: str, accounts: Mapping[str, Account]) -> tuple[Listener, ...]:
    """The `serve` value of a parsed config (a list of tables) as listeners; ConfigError naming what is wrong."""
    from ..config import parse_duration

    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise ConfigError(f"{path}: 'serve' must be a list of tables, like [[serve]] (two brackets)")
    listeners = []
    seen: dict[tuple[str, int], int] = {}
    for index, table in enumerate(tables, 1):
        proto = table.get("protocol")
        label = f"[[serve]] #{index}" + (f" ({proto})" if isinstance(proto, str) else "")

        def where(key: str, _label: str = label) -> str:
            return f"{path}: {_label} {key}"

        for key, value in table.items():
            if key not in SERVE_KEYS:
                raise ConfigError(f"{where(key)}: unknown key{_suggest(key, SERVE_KEYS)}")
            want = SERVE_KEYS[key]
            if not isinstance(value, want) or (isinstance(value, bool) and want is not bool):
                names = " or ".join(t.__name__ for t in (want if isinstance(want, tuple) else (want,)))
                raise ConfigError(f"{where(key)}: must be a {names}, not {type(value).__name__}")
            if isinstance(value, str) and (len(value) > 2048 or any(ord(c) < 32 or ord(c) == 127 for c in value)):
                raise ConfigError(f"{where(key)}: too long or holds control characters")
        if proto is None:
            raise ConfigError(f"{where('protocol')}: missing (required: one of {', '.join(PROTOCOLS)})")
        if proto not in PROTOCOLS:
            raise ConfigError(
                f"{where('protocol')}: must be one of {', '.join(PROTOCOLS)}, not '{proto}'{_suggest(proto, PROTOCOLS)}"
            )
        try:
            host, port = split_hostport(table.get("listen", ""), DEFAULT_PORTS[proto])
        except ValueError as exc:
            raise ConfigError(f"{where('listen')}: '{table['listen']}' {exc}") from None
        host = host or "127.0.0.1"
        account = table.get("account")
        if account is None:
            if len(accounts) != 1:
                raise ConfigError(f"{where('account')}: missing (which account's token signs in upstream?)")
            account = next(iter(accounts))
        if account not in accounts:
            known = ", ".join(sorted(accounts)) or "none"
            raise ConfigError(
                f"{where('account')}: no account '{account}'{_suggest(account, accounts)} (accounts: {known})"
            )
        upstream = table.get("upstream")
        upstream_port = None
        if upstream == GRAPH:
            _check_graph(proto, table, accounts[account], where)
        elif upstream is not None:
            try:
                up_host, upstream_port = split_hostport(upstream, None)
            except ValueError as exc:
                raise ConfigError(f"{where('upstream')}: '{upstream}' {exc}") from None
            if not up_host:
                raise ConfigError(f"{where('upstream')}: '{upstream}' names no host")
        upstream_tls = table.get("upstream_tls")
        if upstream_tls is not None and upstream_tls not in UPSTREAM_TLS:
            raise ConfigError(
                f"{where('upstream_tls')}: must be one of {', '.join(UPSTREAM_TLS)}, not '{upstream_tls}'"
                f"{_suggest(upstream_tls, UPSTREAM_TLS)} (there is no plaintext upstream: tokens are secrets)"
            )
        if upstream_tls is None and upstream_port is not None:
            if upstream_port not in IMPLICIT_PORTS | STARTTLS_PORTS:
                raise ConfigError(
                    f"{where('upstream_tls')}: missing: port {upstream_port} says neither starttls nor implicit"
                )
            upstream_tls = "implicit" if upstream_port in IMPLICIT_PORTS else "starttls"
        local_tls = table.get("local_tls", "none")
        if local_tls not in LOCAL_TLS:
            raise ConfigError(
                f"{where('local_tls')}: must be one of {', '.join(LOCAL_TLS)}, not '{local_tls}'"
                f"{_suggest(local_tls, LOCAL_TLS)}"
            )
        cert, key = table.get("cert"), table.get("key")
        if (cert is None) != (key is None):
            missing = "key" if key is None else "cert"
            raise ConfigError(f"{where(missing)}: missing: cert and key go together")
        if cert is not None and local_tls == "none":
            raise ConfigError(f'{where("cert")}: set, but local_tls is "none" (use starttls or implicit)')
        allow = []
        for item in table.get("allow", list(DEFAULT_ALLOW)):
            try:
                allow.append(ipaddress.ip_network(item, strict=False))
            except (ValueError, TypeError):
                raise ConfigError(f"{where('allow')}: '{item}' is not a network like \"192.168.1.0/24\"") from None
        if not allow:
            raise ConfigError(f"{where('allow')}: empty: nobody could connect")
        plaintext = table.get("allow_plaintext", False)
        if not _is_loopback(host) and local_tls == "none" and not plaintext:
            raise ConfigError(
                f'{where("local_tls")}: "none" on the non-loopback address {host} would send local passwords '
                'in clear over the network: use local_tls = "starttls" or "implicit", or set '
                "allow_plaintext = true for a device that cannot do TLS"
            )
        max_conn = table.get("max_connections", DEFAULT_MAX_CONNECTIONS)
        if not 1 <= max_conn <= 100_000:
            raise ConfigError(f"{where('max_connections')}: must be between 1 and 100000")
        try:
            idle = parse_duration(table.get("idle_timeout", DEFAULT_IDLE_TIMEOUT))
        except ValueError:
            raise ConfigError(f'{where("idle_timeout")}: must be a duration like "60s" or "2m"') from None
        if not 1 <= idle <= 3600:
            raise ConfigError(f"{where('idle_timeout')}: must be between 1 second and 1 hour")
        clash = seen.get((host, port))
        if clash is not None:
            raise ConfigError(f"{where('listen')}: {host}:{port} is also the listen address of [[serve]] #{clash}")
        seen[(host, port)] = index
        listeners.append(
            Listener(
                index=index,
                protocol=proto,
                host=host,
                port=port,
                account=account,
                upstream=upstream,
                upstream_tls=upstream_tls,
                local_tls=local_tls,
                cert=cert,
                key=key,
                allow=tuple(allow),
                allow_plaintext=plaintext,
                max_connections=max_conn,
                idle_timeout=idle,
            )
        )
    return tuple(listeners)


def _check_graph(proto: str, table: dict[str, object], acct: Account, where: Callable[[str], str]) -> None:
    """upstream = "graph": an SMTP listener whose account sends with Microsoft Graph."""
    from .. import providers

    if proto != "smtp":
        raise ConfigError(f'{where("upstream")}: "graph" takes mail to send, so it needs protocol = "smtp"')
    if "upstream_tls" in table:
        raise ConfigError(f'{where("upstream_tls")}: means nothing with upstream = "graph" (Graph is HTTPS): remove it')
    if "graph_scopes" not in providers.spec(acct.provider):
        raise ConfigError(
            f'{where("upstream")}: "graph" needs a Microsoft account; [accounts.{acct.name}] is provider '
            f"'{acct.provider}'"
        )
    if acct.send != "graph":
        raise ConfigError(
            f'{where("upstream")}: "graph" sends as [accounts.{acct.name}], which needs send = "graph" '
            f"(then 'mailtoken login {acct.name}' asks for the Mail.Send permission)"
        )


def upstream_of(listener: Listener, acct: Account) -> tuple[str, int, str]:
    """(host, port, tls) upstream: the listener's own, else the account's host for the protocol."""
    if listener.upstream == GRAPH:  # no mail server: the bridge submits with Graph itself (graph_session.py)
        raise ValueError(f'{listener.name}: upstream = "graph" has no host and port')
    if listener.upstream is not None:
        host, port = split_hostport(listener.upstream, None)
    else:
        from .. import providers

        spec = providers.mail_hosts(acct)[_HOST_KEY[listener.protocol]]
        try:
            host, port = split_hostport(spec, None)
        except ValueError:
            raise ConfigError(
                f"[accounts.{acct.name}] {_HOST_KEY[listener.protocol]}: '{spec}' is not HOST:PORT"
            ) from None
    tls = listener.upstream_tls or ("implicit" if port in IMPLICIT_PORTS else "starttls")
    return host, port, tls
