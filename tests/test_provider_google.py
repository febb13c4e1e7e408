"""Gmail (issue 6): authorization code + PKCE with a loopback redirect through the stdlib OAuth client, against a
local fake of Google's endpoints, with a scripted browser as $BROWSER; all through the installed console script.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Env
from tests.fakes.google import CLIENT_ID, CLIENT_SECRET, FakeGoogle
from tests.flows import Login, browser_command, paste_as_browser, trust

GMAIL = "me@gmail.com"


@pytest.fixture
def google(tmp_path: Path, env: Env) -> Iterator[FakeGoogle]:
    with FakeGoogle(tmp_path / "google") as server:
        server.auto_approve = GMAIL
        trust(env, server.ca_pem)
        env.write_config(
            f'[accounts.gmail]\nprovider = "google"\nemail = "{GMAIL}"\nclient_id = "{CLIENT_ID}"\n'
            f'client_secret = "{CLIENT_SECRET}"\nstore = "file"\n'
            f'authorization_endpoint = "{server.authorization_endpoint}"\n'
            f'token_endpoint = "{server.token_endpoint}"\n'
        )
        yield server


def _login_with_browser(env: Env, *args: str) -> None:
    out = env.run("login", "gmail", *args, env={"BROWSER": browser_command(env)}, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout == ""


def test_login_uses_the_browser_because_google_refuses_the_device_flow(env: Env, google: FakeGoogle) -> None:
    out = env.run("login", "gmail", env={"BROWSER": browser_command(env)}, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "device flow does not allow the Gmail scope" in out.stderr
    assert f"signed in as {GMAIL}" in out.stderr
    assert google.counts["device_code"] == 0
    authorize = next(r for r in google.requests if r["path"] == "/o/oauth2/v2/auth")["query"]
    assert authorize["access_type"] == "offline"
    assert authorize["code_challenge_method"] == "S256" and authorize["code_challenge"]
    assert authorize["redirect_uri"].startswith("http://127.0.0.1:")
    assert authorize["login_hint"] == GMAIL
    assert "https://mail.google.com/" in authorize["scope"].split()
    assert "prompt" not in authorize, "consent is asked only when no refresh token came back"
    exchange = next(r for r in google.requests if r["form"].get("grant_type") == "authorization_code")["form"]
    assert exchange["client_secret"] == CLIENT_SECRET and exchange["code_verifier"]

    token = env.run("token", "gmail")
    assert token.returncode == 0, token.stderr
    assert google.is_valid_access_token(token.stdout.strip())
    xoauth2 = base64.b64decode(env.run("xoauth2", "gmail").stdout).decode()
    assert xoauth2 == f"user={GMAIL}\x01auth=Bearer {token.stdout.strip()}\x01\x01"
    assert CLIENT_SECRET not in token.stderr


def test_refresh_keeps_the_refresh_token_google_does_not_rotate(env: Env, google: FakeGoogle) -> None:
    _login_with_browser(env)
    first = env.run("token", "gmail").stdout
    for round_ in (1, 2):
        env.age_record("gmail")
        out = env.run("-v", "token", "gmail")
        assert out.returncode == 0, out.stderr
        assert out.stdout != first and google.is_valid_access_token(out.stdout.strip())
        assert google.counts["refresh_token"] == round_
        assert CLIENT_SECRET not in out.stderr and out.stdout.strip() not in out.stderr
        first = out.stdout
    refreshes = [r["form"] for r in google.requests if r["form"].get("grant_type") == "refresh_token"]
    assert refreshes[0]["refresh_token"] == refreshes[1]["refresh_token"], "the old refresh token must be kept"
    grant = (
        json.loads((env.state_dir / "grants" / "gmail.json").read_text())
        if (env.state_dir / "grants" / "gmail.json").exists()
        else None
    )
    if grant is not None:
        assert "access_token" not in json.dumps(grant)


def test_revoked_token_says_why_including_testing_mode(env: Env, google: FakeGoogle) -> None:
    _login_with_browser(env)
    google.revoke(GMAIL)
    env.age_record("gmail")
    out = env.run("token", "gmail")
    assert out.returncode == 77
    assert out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    line = lines[0]
    assert line.startswith("mailtoken: gmail: sign-in required (invalid_grant: Token has been expired or revoked)")
    assert "Testing mode" in line and "7 days" in line
    assert line.endswith("run 'mailtoken login gmail'")
    # The verdict is remembered for this grant: the next call does not ask Google again.
    before = dict(google.counts)
    again = env.run("token", "gmail")
    assert again.returncode == 77 and google.counts == before


def test_no_refresh_token_means_asking_again_with_consent(env: Env, google: FakeGoogle) -> None:
    google.consented.add(GMAIL)  # the user allowed this app before: Google sends no new refresh token
    _login_with_browser(env)
    authorizes = [r["query"] for r in google.requests if r["path"] == "/o/oauth2/v2/auth"]
    assert len(authorizes) == 2
    assert "prompt" not in authorizes[0] and authorizes[1]["prompt"] == "consent"
    assert env.run("token", "gmail").returncode == 0


def test_headless_login_falls_back_to_paste(env: Env, google: FakeGoogle) -> None:
    """No display, no $BROWSER (an SSH session): the default login prints the URL and reads the address back."""
    login = Login(env, "gmail", "--timeout", "30", on_line=paste_as_browser(google.ca_pem))
    assert login.wait() == 0, login.stderr
    assert "no browser is here" in login.stderr and "paste it here" in login.stderr
    exchange = next(r for r in google.requests if r["form"].get("grant_type") == "authorization_code")["form"]
    assert exchange["redirect_uri"] == "http://127.0.0.1"
    assert google.is_valid_access_token(env.run("token", "gmail").stdout.strip())


def test_device_flow_is_refused_with_the_way_out(env: Env, google: FakeGoogle) -> None:
    for args in (("--device",), ("--no-wait",)):
        out = env.run("login", "gmail", *args)
        assert out.returncode == 64, out.stderr
        assert out.stdout == ""
        assert out.stderr.strip() == (
            "mailtoken: gmail: Google's device flow does not allow the Gmail scope (https://mail.google.com/): "
            "run 'mailtoken login gmail --browser', or --paste on a machine without a browser"
        )
    assert google.requests == []


def test_wrong_client_secret_is_a_config_error(env: Env, google: FakeGoogle) -> None:
    env.write_config(env.config_path.read_text().replace(CLIENT_SECRET, "GOCSPX-wrong"))
    out = env.run("login", "gmail", "--browser", env={"BROWSER": browser_command(env)}, timeout=60)
    assert out.returncode == 78, out.stderr
    assert "invalid_client" in out.stderr and "client_secret" in out.stderr
    assert "GOCSPX-wrong" not in out.stderr


def test_status_and_config_for_gmail(env: Env, google: FakeGoogle) -> None:
    _login_with_browser(env)
    status = json.loads(env.run("status", "--json").stdout)["accounts"][0]
    assert status["signed_in"] == "yes" and status["account"] == "gmail"
    conf = env.run("config", "msmtp", "gmail")
    assert conf.returncode == 0, conf.stderr
    assert "host smtp.gmail.com" in conf.stdout and "port 587" in conf.stdout
    mbsync = env.run("config", "mbsync", "gmail").stdout
    assert "Host imap.gmail.com" in mbsync and "Port 993" in mbsync
    # `mailtoken test` gets the token and tries Gmail's ports (here on this machine, where nothing listens).
    test = env.run("test", "gmail", "--host", "127.0.0.1", "--timeout", "5")
    assert test.stdout.startswith(f"token gmail: sign-in {GMAIL}, valid for "), test.stdout + test.stderr
    assert "IMAP 127.0.0.1:993" in test.stdout and "SMTP 127.0.0.1:587" in test.stdout
