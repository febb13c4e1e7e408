"""`mailtoken config fetchmail|postfix ACCOUNT`: clients that only know a password, pointed at the account's
`mailtoken serve` listeners ([[serve]] tables). The device password is never in a generated config (there is
none to put: only its hash is kept); the block says where it goes and the command that makes it.
"""

from __future__ import annotations

from .. import quoting
from ..bridge.config import Listener
from ..config import Account, Config
from ..errors import ConfigError

PLACEHOLDER = "DEVICE-PASSWORD"


def _listener(cfg: Config, acct: Account, protocols: tuple[str, ...], client: str) -> Listener:
    for protocol in protocols:
        for listener in cfg.serve:
            if listener.account == acct.name and listener.protocol == protocol and listener.upstream != "graph":
                return listener
    for listener in cfg.serve:  # SMTP through Graph is still SMTP to a client
        if listener.account == acct.name and listener.protocol in protocols:
            return listener
    wanted = " or ".join(protocols)
    raise ConfigError(
        f"{cfg.path}: no [[serve]] {wanted} listener for account '{acct.name}', which {client} needs: add one, "
        f'like [[serve]] protocol = "{protocols[0]}" account = "{acct.name}"',
        account=acct.name,
    )


def _cert(listener: Listener) -> str:
    """The certificate the listener shows: its own `cert`, else the pair the bridge makes once."""
    from ..bridge import tls

    return listener.cert or tls.generated_paths()[0]


def _host(listener: Listener) -> str:
    # The listener's own address; a wildcard one is reached on loopback from this machine.
    return {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(listener.host, listener.host)


def fetchmail(cfg: Config, acct: Account) -> str:
    listener = _listener(cfg, acct, ("imap", "pop3"), "fetchmail")
    protocol = "IMAP" if listener.protocol == "imap" else "POP3"
    lines = [
        f"# ~/.fetchmailrc (mode 0600): {acct.name} through mailtoken serve ({listener.name}).",
        f"# {PLACEHOLDER}: the password 'mailtoken serve passwd fetchmail --account {acct.name}' prints once.",
        f"poll {_host(listener)} service {listener.port} protocol {protocol} auth password",
        f"    user {quoting.fetchmailrc(acct.email)} password {quoting.fetchmailrc(PLACEHOLDER)}",
    ]
    if listener.local_tls == "none":
        # fetchmail 6.4 tries STARTTLS even when it is not offered, and gives up when refused.
        lines.append("    sslproto ''")
    else:
        # Trust exactly the bridge's certificate (self-signed unless `cert` names one).
        how = "ssl" if listener.local_tls == "implicit" else "sslproto TLS1.2+"
        lines.append(f"    {how} sslcertck sslcertfile {quoting.fetchmailrc(_cert(listener))}")
    lines.append("    keep   # leave the messages on the server; drop it to delete what was fetched")
    lines.append('    # mda "/usr/lib/dovecot/deliver"   # or: deliver through the local MTA (the default)')
    return "\n".join(lines) + "\n"


def postfix(cfg: Config, acct: Account) -> str:
    listener = _listener(cfg, acct, ("smtp",), "Postfix")
    try:
        login = quoting.postfix_value(acct.email)
    except ValueError as exc:
        raise ConfigError(
            f"[accounts.{acct.name}] email: {exc}; Postfix cannot log in as it", account=acct.name
        ) from None
    relay = f"[{_host(listener)}]:{listener.port}"
    tls = {
        "none": "smtp_tls_security_level = none",
        "starttls": "smtp_tls_security_level = encrypt",
        "implicit": "smtp_tls_wrappermode = yes\nsmtp_tls_security_level = encrypt",
    }[listener.local_tls]
    trust = "" if listener.local_tls == "none" else f"\nsmtp_tls_CAfile = {quoting.postfix_value(_cert(listener))}"
    return (
        f"# /etc/postfix/main.cf: relay everything through mailtoken serve ({listener.name}) as {acct.email}.\n"
        f"relayhost = {relay}\n"
        "smtp_sasl_auth_enable = yes\n"
        "smtp_sasl_password_maps = hash:/etc/postfix/sasl_passwd\n"
        "# Postfix's default (noplaintext) refuses PLAIN and LOGIN: 'No worthy mechs found'.\n"
        "smtp_sasl_security_options = noanonymous\n"
        "smtp_sasl_mechanism_filter = plain, login\n"
        f"{tls}{trust}\n"
        "\n"
        f"# /etc/postfix/sasl_passwd (chmod 600, then: postmap /etc/postfix/sasl_passwd; postfix reload).\n"
        f"# {PLACEHOLDER}: what 'mailtoken serve passwd postfix --account {acct.name}' prints once.\n"
        f"{relay} {login}:{PLACEHOLDER}\n"
    )


GENERATORS = {"fetchmail": fetchmail, "postfix": postfix}
