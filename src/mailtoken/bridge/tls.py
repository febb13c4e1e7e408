"""TLS for the bridge: verified upstream contexts, and local ones with the user's pair or a self-signed pair
made once in the state folder (with `cryptography`, which msal already depends on)."""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl

from .. import paths
from ..errors import ConfigError
from ..fast import fsutil


def upstream_context() -> ssl.SSLContext:
    """System CAs (SSL_CERT_FILE/SSL_CERT_DIR honoured, as OpenSSL reads them), hostname checked, TLS >= 1.2."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def generated_paths() -> tuple[str, str]:
    folder = os.path.join(paths.state_dir(), "serve")
    return os.path.join(folder, "cert.pem"), os.path.join(folder, "key.pem")


def ensure_self_signed(hosts: list[str]) -> tuple[str, str, list[str]]:
    """The generated pair (made on first use, for localhost, loopback and HOSTS); also the HOSTS it lacks."""
    cert_path, key_path = generated_paths()
    if not (os.path.exists(cert_path) and os.path.exists(key_path)):
        cert_pem, key_pem = make_self_signed(["localhost", "127.0.0.1", "::1", *hosts])
        fsutil.atomic_write(key_path, key_pem)
        fsutil.atomic_write(cert_path, cert_pem)
    return cert_path, key_path, [h for h in hosts if h not in covered(cert_path)]


def make_self_signed(names: list[str]) -> tuple[bytes, bytes]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = []
    for name in dict.fromkeys(n for n in names if n and n not in ("0.0.0.0", "::")):
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            sans.append(x509.DNSName(name))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mailtoken bridge")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def covered(cert_path: str) -> set[str]:
    from cryptography import x509

    try:
        with open(cert_path, "rb") as fh:
            cert = x509.load_pem_x509_certificate(fh.read())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, x509.ExtensionNotFound):
        return set()
    return {str(v) for v in san.get_values_for_type(x509.IPAddress)} | set(san.get_values_for_type(x509.DNSName))


def local_context(cert: str, key: str, where: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    # Printers and old clients stop at TLS 1.2; nothing older is offered.
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"{where}: cannot load the certificate {cert} and key {key}: {exc}") from None
    return ctx
