"""msal's own authority construction from the catalog meets a server: no `authority` override in the config.

Every other test points the account at the fake with `authority = "https://127.0.0.1:PORT/organizations"`,
which also turns msal's instance discovery off. Here the config names only the tenant and the global cloud, so
msal builds https://login.microsoftonline.com/organizations itself and does its instance discovery; a
resolver override (sitecustomize in the child, patching socket.getaddrinfo for that one host) sends those
connections to the fake, which has a certificate for the host and answers as it.
"""

from __future__ import annotations

from pathlib import Path

from tests.conftest import CLIENT_ID, EMAIL, Env
from tests.fakes.entra import CATALOG_HOST, FakeEntra

RESOLVER = """\
import os, socket
_target = os.environ.get("MAILTOKEN_TEST_RESOLVE")
if _target:
    _host, _addr = _target.split("=")
    _ip, _port = _addr.rsplit(":", 1)
    _real = socket.getaddrinfo
    def getaddrinfo(host, port, *args, **kwargs):
        if host == _host:
            return _real(_ip, int(_port), *args, **kwargs)
        return _real(host, port, *args, **kwargs)
    socket.getaddrinfo = getaddrinfo
"""


def test_msal_builds_the_authority_from_the_catalog_and_signs_in(tmp_path: Path) -> None:
    env = Env(tmp_path)
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(RESOLVER)
    with FakeEntra(tmp_path / "fake") as fake:
        fake.add_user(EMAIL)
        port = fake.authority().split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1]
        env.vars.update(
            REQUESTS_CA_BUNDLE=fake.ca_pem,
            PYTHONPATH=str(site),
            MAILTOKEN_TEST_RESOLVE=f"{CATALOG_HOST}=127.0.0.1:{port}",
        )
        env.write_config(
            f'[accounts.work]\nemail = "{EMAIL}"\nclient_id = "{CLIENT_ID}"\ntenant = "organizations"\nstore = "file"\n'
        )
        fake.auto_approve = EMAIL
        login = env.run("login", "work")
        assert login.returncode == 0, login.stderr
        assert f"https://{CATALOG_HOST}/devicelogin" in login.stderr, "the device code page is the catalog host's"
        env.age_record()
        token = env.run("token", "work")
        assert token.returncode == 0, token.stderr
        assert fake.is_valid_access_token(token.stdout.strip())
        seen = [e for e in fake.requests if e["listener"] != "plain"]
        hosts = {e["headers"].get("host", "").split(":")[0] for e in seen}
        assert hosts == {CATALOG_HOST}, f"every request went to the catalog's host: {hosts}"
        paths = {e["path"] for e in seen}
        assert "/organizations/oauth2/v2.0/token" in paths
        assert fake.counts["refresh_token"] == 1
