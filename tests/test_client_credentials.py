"""App-only access (issue 6): flow = "client_credentials" through msal's ConfidentialClientApplication against the
fake Entra, with the secret from client_secret_cmd or the keyring, or a certificate; through the console script.
"""

from __future__ import annotations

import datetime
import json
import sys
from pathlib import Path

import pytest

from tests.conftest import Env
from tests.fakes.entra import FakeEntra

APP_ID = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
MAILBOX = "robot@contoso.com"
SECRET = "Zq8~app-secret-value-never-shown"


def _app_account(env: Env, fake: FakeEntra, credential: str, extra: str = "") -> None:
    env.write_config(
        f'[accounts.app]\nemail = "{MAILBOX}"\nclient_id = "{APP_ID}"\nflow = "client_credentials"\n'
        f'authority = "{fake.authority("contoso.com")}"\n{credential}\n{extra}'
    )


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "secret file"
    path.write_text(SECRET + "\nsecond line is ignored\n")
    return path


def _requests(fake: FakeEntra) -> list[dict]:
    return [r for r in fake.requests if r.get("form", {}).get("grant_type") == "client_credentials"]


def test_token_without_sign_in_from_a_secret_command(env: Env, fake: FakeEntra, secret_file: Path) -> None:
    fake.client_secrets[APP_ID] = SECRET
    _app_account(env, fake, f'client_secret_cmd = ["cat", "{secret_file}"]')
    out = env.run("-v", "token", "app")
    assert out.returncode == 0, out.stderr
    assert fake.is_valid_access_token(out.stdout.strip())
    assert SECRET not in out.stderr and out.stdout.strip() not in out.stderr
    [request] = _requests(fake)
    assert request["form"]["scope"] == "https://outlook.office365.com/.default"
    assert request["form"]["client_secret"] == SECRET
    assert "refresh_token" not in json.dumps(request)

    # The record caches the app's token like any other; the XOAUTH2 user is the mailbox.
    again = env.run("xoauth2", "app", "--raw")
    assert again.stdout == f"user={MAILBOX}\x01auth=Bearer {out.stdout.strip()}\x01\x01\n"
    assert fake.counts["client_credentials"] == 1
    status = json.loads(env.run("status", "--json").stdout)["accounts"][0]
    assert status["signed_in"] == "app-only" and status["store"] == "secret from command 'cat'"
    assert not (env.state_dir / "grants").exists() or not any((env.state_dir / "grants").iterdir())


def test_stale_record_asks_again_and_shlex_string_command(env: Env, fake: FakeEntra, secret_file: Path) -> None:

    fake.client_secrets[APP_ID] = SECRET
    _app_account(env, fake, f"client_secret_cmd = \"cat '{secret_file}'\"")
    first = env.run("token", "app")
    assert first.returncode == 0, first.stderr
    env.age_record("app")
    second = env.run("token", "app")
    assert second.returncode == 0 and second.stdout != first.stdout
    assert fake.counts["client_credentials"] == 2


def test_wrong_secret_is_a_config_error_that_never_shows_it(env: Env, fake: FakeEntra, secret_file: Path) -> None:
    fake.client_secrets[APP_ID] = "the-right-one"
    _app_account(env, fake, f'client_secret_cmd = ["cat", "{secret_file}"]')
    out = env.run("-v", "token", "app")
    assert out.returncode == 78
    assert out.stdout == ""
    assert "AADSTS7000215" in out.stderr and "client_secret_cmd" in out.stderr
    assert SECRET not in out.stderr


@pytest.mark.parametrize(
    ("command", "code", "message"),
    [
        (
            ["sh", "-c", f"echo {SECRET}; echo {SECRET} >&2; exit 3"],
            69,
            "failed with exit status 3 (its output is not shown)",
        ),
        (["/nonexistent/pass", "show"], 78, "no program '/nonexistent/pass'"),
        (["sh", "-c", "exit 0"], 69, "printed nothing on its first line"),
        (["sh", "-c", "sleep 30"], 69, "did not finish within 3 s"),
    ],
)
def test_secret_command_failures(env: Env, fake: FakeEntra, command: list[str], code: int, message: str) -> None:
    fake.client_secrets[APP_ID] = SECRET
    _app_account(env, fake, f"client_secret_cmd = {json.dumps(command)}")
    out = env.run("token", "app", "--timeout", "6", timeout=30)
    assert out.returncode == code, out.stderr
    assert out.stdout == ""
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert out.stderr.startswith("mailtoken: app: ") and message in out.stderr
    assert SECRET not in out.stderr
    assert fake.counts["client_credentials"] == 0


def _certificate(tmp_path: Path, name: str = "app") -> tuple[Path, bytes, str]:
    """A self-signed certificate for the app: (PEM file with key and certificate, certificate PEM, SHA-1 hex)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"mailtoken {name}")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    path = tmp_path / f"{name}.pem"
    path.write_bytes(key_pem + cert_pem)
    path.chmod(0o600)
    return path, cert_pem, cert.fingerprint(hashes.SHA1()).hex()


def test_certificate_pem_with_key_and_certificate(env: Env, fake: FakeEntra, tmp_path: Path) -> None:
    path, cert_pem, _ = _certificate(tmp_path)
    fake.client_certificates[APP_ID] = cert_pem
    _app_account(env, fake, f'certificate = "{path}"')
    out = env.run("token", "app")
    assert out.returncode == 0, out.stderr
    assert fake.is_valid_access_token(out.stdout.strip())
    [request] = _requests(fake)
    assert request["form"]["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    assert "client_secret" not in request["form"]


def test_certificate_with_thumbprint_and_a_wrong_certificate(env: Env, fake: FakeEntra, tmp_path: Path) -> None:
    path, cert_pem, sha1 = _certificate(tmp_path)
    key_only = tmp_path / "key-only.pem"
    key_only.write_text(path.read_text().split("-----BEGIN CERTIFICATE-----")[0])
    fake.client_certificates[APP_ID] = cert_pem
    thumb = ":".join(sha1[i : i + 2] for i in range(0, 40, 2))  # as the portal shows it, colons allowed
    _app_account(env, fake, f'certificate = "{key_only}"\nthumbprint = "{thumb}"')
    assert env.run("token", "app").returncode == 0

    other, _, _ = _certificate(tmp_path, "other")
    _app_account(env, fake, f'certificate = "{other}"')
    out = env.run("token", "app")
    assert out.returncode == 78
    assert "AADSTS700027" in out.stderr and "certificate" in out.stderr

    _app_account(env, fake, f'certificate = "{tmp_path / "missing.pem"}"')
    missing = env.run("token", "app")
    assert missing.returncode == 78 and "certificate: no file at" in missing.stderr


def test_secret_kept_in_the_keyring_by_login(env: Env, fake: FakeEntra, secret_service) -> None:  # noqa: ANN001
    fake.client_secrets[APP_ID] = SECRET
    _app_account(env, fake, "")
    before = env.run("token", "app")
    assert before.returncode == 77
    assert "no client secret in the keyring: run 'mailtoken login app'" in before.stderr

    login = env.run("login", "app", input=SECRET + "\n")
    assert login.returncode == 0, login.stderr
    assert "client secret is kept in keyring" in login.stderr and "app-only access works" in login.stderr
    assert SECRET not in login.stderr + login.stdout
    assert fake.counts["client_credentials"] == 1, "login proves the secret works"

    (env.record_dir / "app.token").unlink()
    token = env.run("token", "app")
    assert token.returncode == 0, token.stderr
    assert fake.counts["client_credentials"] == 2

    out = env.run("logout", "app")
    assert out.returncode == 0 and "client secret" in out.stderr
    assert env.run("token", "app").returncode == 77


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (f'client_secret = "{SECRET}"', "confidential secret must not sit in the config"),
        ('tenant = "common"\nclient_secret_cmd = "pass show x"', "need your organization's tenant"),
        ('flow = "implicit"', "flow: must be one of delegated, client_credentials"),
    ],
)
def test_config_errors(env: Env, config: str, message: str) -> None:
    lines = [f'email = "{MAILBOX}"', f'client_id = "{APP_ID}"']
    if not config.startswith("flow"):
        lines.append('flow = "client_credentials"')
    env.write_config("[accounts.app]\n" + "\n".join(lines) + "\n" + config + "\n")
    out = env.run("token", "app")
    assert out.returncode == 78
    assert message in out.stderr
    assert SECRET not in out.stderr
    assert f"{env.config_path}: [accounts.app]" in out.stderr


def test_secret_command_runs_without_a_shell(env: Env, fake: FakeEntra, tmp_path: Path) -> None:
    """A string command is split like a shell would, never run by one: $(...) and ; stay literal arguments."""
    marker = tmp_path / "pwned"
    script = tmp_path / "print-args"
    script.write_text(f"#!{sys.executable}\nimport sys\nprint('|'.join(sys.argv[1:]))\n")
    script.chmod(0o755)
    fake.client_secrets[APP_ID] = f"a|$(touch {marker});b"
    _app_account(env, fake, f"client_secret_cmd = \"{script} 'a' '$(touch {marker});b'\"")
    out = env.run("token", "app")
    assert out.returncode == 0, out.stderr
    assert not marker.exists()
