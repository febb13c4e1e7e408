"""An app's credentials: its client secret (from a command, the keyring, or, for a desktop app's
non-confidential secret, the config) and its certificate. Never in argv, logs, messages or tracebacks: a failing
command's output is not shown, only its exit status.
"""

from __future__ import annotations

import os
import subprocess
from typing import TYPE_CHECKING

from ..config import Account
from ..errors import ConfigError, MailtokenError, SignInRequired, StoreUnavailable

if TYPE_CHECKING:
    from ..store.keyring_store import KeyringStore

# A password manager that needs a passphrase prompts on a terminal it does not have: give up instead of hanging.
CMD_TIMEOUT = 20.0
# The keyring entry beside the grants: account names cannot hold '#', so it can clash with none.
KEYRING_SUFFIX = "#client-secret"


def source(acct: Account) -> str:
    """Where the app's credential comes from, for `status` (never the credential itself)."""
    if acct.certificate:
        return f"certificate {acct.certificate}"
    if acct.client_secret_cmd:
        return f"secret from command '{acct.client_secret_cmd[0]}'"
    if acct.client_secret:
        return "secret in the config"
    return "secret in the keyring"


def client_secret(acct: Account, timeout: float) -> str | None:
    """The client secret, or None for a public client (no secret configured, and none needed)."""
    if acct.client_secret:
        return acct.client_secret
    if acct.client_secret_cmd:
        return run_command(acct, timeout)
    if acct.flow == "client_credentials" and not acct.certificate:
        return keyring_secret(acct)
    return None


def run_command(acct: Account, timeout: float) -> str:
    """The first line client_secret_cmd prints. Run without a shell, stdin closed, within a time limit."""
    argv = list(acct.client_secret_cmd)
    name = os.path.basename(argv[0])
    # Half the time left: the token request still needs the rest.
    limit = max(1.0, min(timeout / 2, CMD_TIMEOUT))
    try:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=limit, check=False)
    except FileNotFoundError:
        raise ConfigError(
            f"client_secret_cmd: no program '{argv[0]}' (not found on PATH): fix client_secret_cmd in the config",
            account=acct.name,
        ) from None
    except PermissionError:
        raise ConfigError(
            f"client_secret_cmd: '{argv[0]}' cannot be run (permission denied): fix client_secret_cmd",
            account=acct.name,
        ) from None
    except subprocess.TimeoutExpired:
        raise StoreUnavailable(
            f"client_secret_cmd ({name}) did not finish within {limit:.0f} s (waiting for a passphrase?): "
            "unlock its store (gpg-agent, the password manager) and retry",
            account=acct.name,
        ) from None
    except OSError as exc:
        raise StoreUnavailable(
            f"client_secret_cmd ({name}) could not be started ({exc.strerror or type(exc).__name__})",
            account=acct.name,
        ) from None
    if proc.returncode != 0:
        raise StoreUnavailable(
            f"client_secret_cmd ({name}) failed with exit status {proc.returncode} (its output is not shown): "
            "run it yourself to see why",
            account=acct.name,
        )
    secret = proc.stdout.decode("utf-8", "replace").split("\n", 1)[0].strip()
    if not secret:
        raise StoreUnavailable(
            f"client_secret_cmd ({name}) printed nothing on its first line: it must print the secret",
            account=acct.name,
        )
    return secret


def _keyring() -> KeyringStore:
    from ..store.keyring_store import KeyringStore

    return KeyringStore()


def keyring_secret(acct: Account) -> str:
    store = _keyring()
    try:
        store.check()
        secret = store.load(acct.name + KEYRING_SUFFIX)
    except MailtokenError as exc:
        exc.account = acct.name
        raise
    if not secret:
        raise SignInRequired(
            f"no client secret in the keyring: run 'mailtoken login {acct.name}' to store it, or set "
            "client_secret_cmd or certificate",
            account=acct.name,
        )
    return secret


def store_secret(acct: Account, secret: str) -> str:
    """Keep the app's secret in the keyring; returns where it went."""
    store = _keyring()
    try:
        store.check()
        store.save(acct.name + KEYRING_SUFFIX, secret)
    except MailtokenError as exc:
        exc.account = acct.name
        raise
    return store.describe()


def forget_secret(acct: Account) -> bool:
    store = _keyring()
    store.check()
    return bool(store.delete(acct.name + KEYRING_SUFFIX))


def certificate(acct: Account) -> dict[str, str]:
    """msal's client_credential for a certificate: the PEM's private key, with the thumbprint or the certificate
    (from which msal computes an SHA-256 thumbprint)."""
    path = os.path.expanduser(acct.certificate or "")
    try:
        with open(path, encoding="ascii") as fh:
            pem = fh.read(1 << 20)
    except FileNotFoundError:
        raise ConfigError(f"certificate: no file at {path}", account=acct.name) from None
    except (OSError, UnicodeDecodeError) as exc:
        what = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not a PEM file"
        raise ConfigError(f"certificate: cannot read {path} ({what})", account=acct.name) from None
    key = _block(pem, "PRIVATE KEY")
    if key is None:
        raise ConfigError(
            f"certificate: {path} holds no private key (it must be a PEM file with the key and the certificate)",
            account=acct.name,
        )
    try:
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        load_pem_private_key(key.encode(), password=None)
    except (ValueError, TypeError):
        raise ConfigError(
            f"certificate: the private key in {path} is unreadable or encrypted (mailtoken needs it unencrypted, "
            "in a 0600 file)",
            account=acct.name,
        ) from None
    if acct.thumbprint:
        return {"private_key": key, "thumbprint": acct.thumbprint}
    cert = _block(pem, "CERTIFICATE")
    if cert is None:
        raise ConfigError(
            f"certificate: {path} holds no certificate: add it to the file, or set thumbprint", account=acct.name
        )
    return {"private_key": key, "public_certificate": cert}


def _block(pem: str, label: str) -> str | None:
    """The first PEM block whose label ends with `label` ("PRIVATE KEY" matches RSA/EC/plain private keys)."""
    import re

    for found in re.finditer(r"-----BEGIN ([A-Z ]*)-----.*?-----END \1-----", pem, re.S):
        if found.group(1).endswith(label):
            return found.group(0) + "\n"
    return None
