"""`login --paste` and fixed redirect URIs (issue 6): the browser flow without a listener on this machine, for
SSH sessions, machines without a browser, and app registrations whose redirect URI is not a loopback http one.
Against the fake Entra (msal engine); Gmail's paste flow is in test_provider_google.py.
"""

from __future__ import annotations

import re
import socket

from tests.conftest import EMAIL, Env
from tests.fakes.entra import FakeEntra
from tests.flows import Login, browser_command, paste_as_browser, trust


def _account(env: Env, fake: FakeEntra, redirect_uri: str | None) -> None:
    trust(env, fake.ca_pem)
    fake.auto_approve = EMAIL
    env.add_account(authority=fake.authority(), extra=f'redirect_uri = "{redirect_uri}"\n' if redirect_uri else "")


def _exchange(fake: FakeEntra) -> dict:
    return next(r for r in fake.requests if r.get("form", {}).get("grant_type") == "authorization_code")["form"]


def test_paste_with_an_https_localhost_redirect_uri(env: Env, fake: FakeEntra) -> None:
    _account(env, fake, "https://localhost")
    login = Login(env, "work", "--paste", "--timeout", "30", on_line=paste_as_browser(fake.ca_pem))
    assert login.wait() == 0, login.stderr
    assert login.stdout == ""
    assert "copy the whole address" in login.stderr and f"signed in as {EMAIL}" in login.stderr
    authorize = next(r for r in fake.requests if r["path"].endswith("/authorize"))["query"]
    assert authorize["redirect_uri"] == "https://localhost"
    assert authorize["code_challenge_method"] == "S256"
    form = _exchange(fake)
    assert form["redirect_uri"] == "https://localhost" and form["code_verifier"]
    token = env.run("token", "work")
    assert token.returncode == 0 and fake.is_valid_access_token(token.stdout.strip())


def test_paste_defaults_to_http_localhost(env: Env, fake: FakeEntra) -> None:
    _account(env, fake, None)
    login = Login(env, "work", "--paste", "--timeout", "30", on_line=paste_as_browser(fake.ca_pem))
    assert login.wait() == 0, login.stderr
    assert _exchange(fake)["redirect_uri"] == "http://localhost"


def test_paste_checks_state(env: Env, fake: FakeEntra) -> None:
    _account(env, fake, "https://localhost")
    forge = paste_as_browser(fake.ca_pem, tamper=lambda url: re.sub(r"state=[^&]+", "state=forged", url))
    login = Login(env, "work", "--paste", "--timeout", "30", on_line=forge)
    assert login.wait() == 77, login.stderr
    assert "state mismatch" in login.stderr
    assert fake.counts["authorization_code"] == 0
    assert not (env.state_dir / "accounts" / "work.json").exists()


def test_paste_rejects_another_address_and_nothing(env: Env, fake: FakeEntra) -> None:
    _account(env, fake, "https://localhost")
    wrong = paste_as_browser(fake.ca_pem, tamper=lambda url: url.replace("https://localhost", "https://evil.example"))
    login = Login(env, "work", "--paste", "--timeout", "30", on_line=wrong)
    assert login.wait() == 77, login.stderr
    assert "that is not the address the browser was sent to (it starts with https://localhost)" in login.stderr

    # stdin closed at once (cron, ssh -T): no hang, a clear line.
    out = env.run("login", "work", "--paste", "--timeout", "30")
    assert out.returncode == 77
    assert (
        out.stderr.strip().splitlines()[-1]
        == "mailtoken: work: no address was pasted: run 'mailtoken login work --paste' again"
    )


def test_browser_refuses_a_redirect_uri_it_cannot_receive(env: Env, fake: FakeEntra) -> None:
    _account(env, fake, "https://localhost")
    out = env.run("login", "work", "--browser")
    assert out.returncode == 64
    assert out.stderr.strip() == (
        "mailtoken: work: redirect_uri is https://localhost, which no listener on this machine can receive: "
        "sign in with 'mailtoken login work --paste'"
    )
    assert fake.requests == [] or not any(r["path"].endswith("/authorize") for r in fake.requests)


def test_browser_on_a_fixed_port_for_ssh_tunnels(env: Env, fake: FakeEntra) -> None:
    """redirect_uri = "http://localhost:PORT" pins the listener's port: what `ssh -L PORT:127.0.0.1:PORT` needs."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    _account(env, fake, f"http://localhost:{port}")
    out = env.run("login", "work", "--browser", "--timeout", "30", env={"BROWSER": browser_command(env)}, timeout=60)
    assert out.returncode == 0, out.stderr
    assert _exchange(fake)["redirect_uri"] == f"http://localhost:{port}"

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        text = re.sub(r'redirect_uri = ".*"', f'redirect_uri = "http://127.0.0.1:{port}"', env.config_path.read_text())
        env.write_config(text)
        taken = env.run("login", "work", "--browser", "--timeout", "5")
    assert taken.returncode == 64 and f"cannot listen on 127.0.0.1:{port}" in taken.stderr
