"""Any OAuth 2.0 / OpenID Connect provider (issue 6), against a real, certified OpenID provider nobody here wrote:
the npm package oidc-provider (tests/oidc/server.mjs), with discovery, the device flow, PKCE and refresh-token
rotation (a spent refresh token, used again, revokes the whole grant). Sign-in is approved through its own
interaction pages by a scripted browser; everything mailtoken does goes through the installed console script.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from tests.conftest import Env, require
from tests.flows import Login, approve_device, browser_command, paste_as_browser, trust

OIDC_DIR = Path(__file__).parent / "oidc"
CLIENT_ID = "mailtoken-test"
USER = "carol@example.org"
STORM = 50


class OidcProvider:
    def __init__(self, root: Path) -> None:
        require("node")
        if not (OIDC_DIR / "node_modules" / "oidc-provider").is_dir():
            require(str(OIDC_DIR / "node_modules" / "oidc-provider"))  # scripts/test runs npm ci --prefix tests/oidc
        root.mkdir(parents=True, exist_ok=True)
        ca = trustme.CA()
        self.ca_pem = str(root / "ca.pem")
        ca.cert_pem.write_to_path(self.ca_pem)
        cert = ca.issue_cert("127.0.0.1", "localhost")
        cert.private_key_pem.write_to_path(str(root / "key.pem"))
        cert.cert_chain_pems[0].write_to_path(str(root / "cert.pem"))
        self.log = open(root / "server.log", "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            ["node", "server.mjs", "--cert", str(root / "cert.pem"), "--key", str(root / "key.pem")],
            cwd=OIDC_DIR,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.stop()
            raise RuntimeError(f"oidc-provider did not start: {(root / 'server.log').read_text()[-2000:]}")
        self.issuer = json.loads(line)["issuer"]
        self._ctx = ssl.create_default_context(cafile=self.ca_pem)

    def counts(self) -> dict[str, int]:
        with urllib.request.urlopen(f"{self.issuer}/_test/counts", context=self._ctx, timeout=10) as resp:
            return json.loads(resp.read())

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.log.close()


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    server = OidcProvider(tmp_path_factory.mktemp("oidc"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def generic(env: Env, provider: OidcProvider) -> Env:
    trust(env, provider.ca_pem)
    env.write_config(
        f'[accounts.corp]\nprovider = "generic"\nemail = "{USER}"\nclient_id = "{CLIENT_ID}"\n'
        f'issuer = "{provider.issuer}"\nscopes = ["openid", "email", "mail"]\nstore = "file"\n'
        'imap = "imap.example.org:993"\nsmtp = "smtp.example.org:587"\n'
    )
    return env


def _device_login(env: Env, provider: OidcProvider) -> Login:
    login = Login(env, "corp", "--timeout", "60", on_line=approve_device(provider.ca_pem, USER))
    assert login.wait(90) == 0, login.stderr
    return login


def _grant(env: Env) -> dict:
    return json.loads((env.state_dir / "grants" / "corp.json").read_text())


def test_device_login_token_refresh_and_rotation(generic: Env, provider: OidcProvider) -> None:
    before = provider.counts()
    login = _device_login(generic, provider)
    assert f"signed in as {USER}" in login.stderr
    assert f"open this page in a browser on any device:\n{provider.issuer}/device\n" in login.stderr
    after = provider.counts()
    device_ok = "urn:ietf:params:oauth:grant-type:device_code:ok"
    assert after.get(device_ok, 0) == before.get(device_ok, 0) + 1

    first = generic.run("token", "corp")
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() and first.stderr == ""
    old_refresh = json.dumps(_grant(generic))

    generic.age_record("corp")
    second = generic.run("-v", "token", "corp")
    assert second.returncode == 0, second.stderr
    assert second.stdout != first.stdout
    assert provider.counts().get("refresh_token:ok", 0) == before.get("refresh_token:ok", 0) + 1
    assert json.dumps(_grant(generic)) != old_refresh, "the rotated refresh token must replace the spent one"
    assert second.stdout.strip() not in second.stderr

    # The spent token is dead for good: had mailtoken kept it, this refresh would fail (and revoke the grant).
    generic.age_record("corp")
    third = generic.run("token", "corp")
    assert third.returncode == 0, third.stderr

    status = json.loads(generic.run("status", "--json").stdout)["accounts"][0]
    assert status["signed_in"] == "yes" and status["username"] == USER
    conf = generic.run("config", "mbsync", "corp")
    assert conf.returncode == 0, conf.stderr
    assert "Host imap.example.org" in conf.stdout and "Port 993" in conf.stdout
    pop = generic.run("config", "mutt", "corp")
    assert "pops://" in pop.stdout and "imap.example.org:995" in pop.stdout
    test = generic.run("test", "corp", "--host", "127.0.0.1", "--timeout", "5")
    assert test.stdout.startswith(f"token corp: sign-in {USER}, valid for "), test.stdout + test.stderr
    assert "IMAP 127.0.0.1:993" in test.stdout and "POP  127.0.0.1:995" in test.stdout


def test_rotation_under_a_storm_of_50_processes(generic: Env, provider: OidcProvider) -> None:
    """Fifty clients find the token stale at once: one refresh, and nobody burns the rotated refresh token."""
    _device_login(generic, provider)
    assert generic.run("token", "corp").returncode == 0
    generic.age_record("corp")
    start = provider.counts()
    procs = [generic.popen("token", "corp") for _ in range(STORM)]
    results = [(p.wait(120), p.stdout.read() if p.stdout else "", p.stderr.read() if p.stderr else "") for p in procs]
    for p in procs:
        for stream in (p.stdout, p.stderr):
            if stream:
                stream.close()
    failures = [r for r in results if r[0] != 0]
    assert not failures, failures[:3]
    tokens = {out for _, out, _ in results}
    assert len(tokens) == 1, "every caller must get the one new token"
    end = provider.counts()
    assert end.get("refresh_token:ok", 0) - start.get("refresh_token:ok", 0) == 1
    assert end.get("refresh_token:error", 0) == start.get("refresh_token:error", 0)
    # The grant survived: a later refresh with the stored (rotated) refresh token still works.
    generic.age_record("corp")
    assert generic.run("token", "corp").returncode == 0


def test_browser_login_with_pkce(generic: Env, provider: OidcProvider) -> None:
    out = generic.run(
        "login",
        "corp",
        "--browser",
        "--timeout",
        "60",
        env={"BROWSER": browser_command(generic), "FAKE_BROWSER_LOGIN": USER},
        timeout=90,
    )
    assert out.returncode == 0, out.stderr
    assert "code_challenge_method=S256" in out.stderr and "redirect_uri=http%3A%2F%2F127.0.0.1%3A" in out.stderr
    assert f"signed in as {USER}" in out.stderr
    assert generic.run("token", "corp").returncode == 0


def test_paste_login(generic: Env, provider: OidcProvider) -> None:
    login = Login(generic, "corp", "--paste", "--timeout", "60", on_line=paste_as_browser(provider.ca_pem, USER))
    assert login.wait(90) == 0, login.stderr
    assert generic.run("token", "corp").returncode == 0


def test_revoked_grant_is_a_sign_in_and_reuse_is_never_attempted(generic: Env, provider: OidcProvider) -> None:
    _device_login(generic, provider)
    grant = _grant(generic)
    # Spend the stored refresh token behind mailtoken's back (as a leaked copy would): the provider rotates it,
    # and mailtoken's next use of it is a reuse, which revokes the grant.
    form = {"grant_type": "refresh_token", "refresh_token": grant["refresh_token"], "client_id": CLIENT_ID}
    request = urllib.request.Request(grant["token_endpoint"], data=urllib.parse.urlencode(form).encode())
    with urllib.request.urlopen(request, context=ssl.create_default_context(cafile=provider.ca_pem), timeout=10):
        pass
    generic.age_record("corp")
    out = generic.run("token", "corp")
    assert out.returncode == 77, out.stderr
    assert out.stdout == ""
    assert out.stderr.startswith("mailtoken: corp: sign-in required (invalid_grant")
    assert out.stderr.strip().endswith("run 'mailtoken login corp'")


def test_config_errors_name_the_key(env: Env) -> None:
    base = f'[accounts.corp]\nprovider = "generic"\nemail = "{USER}"\nclient_id = "{CLIENT_ID}"\n'
    cases = [
        ('scopes = ["openid"]\n', "issuer: missing (provider 'generic' needs issuer or token_endpoint)"),
        ('issuer = "https://id.example.org"\n', "scopes: missing (provider 'generic' needs scopes)"),
        ('issuer = "http://id.example.org"\nscopes = ["openid"]\n', "issuer: must be an https URL"),
        ('issuer = "https://id.example.org"\nscopes = ["openid"]\ntenant = "x"\n', "tenant: not used by provider"),
    ]
    for extra, message in cases:
        env.write_config(base + extra)
        out = env.run("token", "corp")
        assert out.returncode == 78, (extra, out.stderr)
        assert message in out.stderr, out.stderr


def test_config_without_hosts_says_what_to_set(env: Env) -> None:
    env.write_config(
        f'[accounts.corp]\nprovider = "generic"\nemail = "{USER}"\nclient_id = "{CLIENT_ID}"\n'
        'issuer = "https://id.example.org"\nscopes = ["openid"]\n'
    )
    out = env.run("config", "msmtp", "corp")
    assert out.returncode == 78
    assert "has no known mail hosts: set imap and smtp in [accounts.corp]" in out.stderr
