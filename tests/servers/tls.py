"""A throwaway CA and a server certificate for 127.0.0.1, written as PEM files the clients can trust."""

from __future__ import annotations

from pathlib import Path

import trustme

HOST = "127.0.0.1"


class TestTLS:
    """``ca_pem`` for clients; ``cert_pem``/``key_pem`` for servers (chain first, then the key)."""

    __test__ = False  # not a pytest class

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.ca = trustme.CA()
        # offlineimap3 checks the commonName itself and ignores IP SANs, so the CN must be the address too.
        server = self.ca.issue_cert(HOST, "localhost", common_name=HOST)
        self.ca_pem = folder / "ca.pem"
        self.cert_pem = folder / "server.pem"
        self.key_pem = folder / "server.key"
        self.ca.cert_pem.write_to_path(str(self.ca_pem))
        server.private_key_pem.write_to_path(str(self.key_pem))
        chain = b"".join(blob.bytes() for blob in server.cert_chain_pems)
        self.cert_pem.write_bytes(chain)
        for path in (self.ca_pem, self.cert_pem, self.key_pem):
            # Dovecot's config process reads the key as root; clients and unprivileged services read the rest.
            path.chmod(0o644 if path != self.key_pem else 0o600)

    def server_context(self):
        import ssl

        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(self.cert_pem), str(self.key_pem))
        return ctx

    def client_context(self):
        import ssl

        return ssl.create_default_context(cafile=str(self.ca_pem))
