"""`login --browser`: authorization code + PKCE with a http://localhost redirect (issue 3)."""

from __future__ import annotations

import re
import ssl
import stat
import threading
import urllib.request
from pathlib import Path

from tests.conftest import EMAIL, Env
from tests.fakes.entra import FakeEntra


def _follow_as_browser(fake: FakeEntra, proc, seen: list[str], tamper: bool = False) -> threading.Thread:
    """What a browser does: open the printed URL, sign in (the fake auto-approves), follow the redirect home."""

    def run() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            seen.append(line)
            if line.startswith(fake.base_url) and "/authorize?" in line:
                context = ssl.create_default_context(cafile=fake.ca_pem)
                opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context), _NoRedirect())
                try:
                    opener.open(line.strip(), timeout=10)
                except urllib.error.HTTPError as redirect:
                    location = redirect.headers["Location"]
                    if tamper:
                        location = re.sub(r"state=[^&]+", "state=forged", location)
                    try:
                        with urllib.request.urlopen(location, timeout=10) as page:
                            seen.append(f"[browser] {page.status} {page.read(200)!r}\n")
                    except urllib.error.HTTPError as refused:
                        seen.append(f"[browser] {refused.code} {refused.read(200)!r}\n")

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # noqa: ANN002, ANN003
        return None


def test_browser_login_with_pkce(env: Env, fake: FakeEntra) -> None:
    env.add_account(authority=fake.authority())
    fake.auto_approve = EMAIL
    proc = env.popen("login", "work", "--browser", "--timeout", "30")
    seen: list[str] = []
    browser = _follow_as_browser(fake, proc, seen)
    assert proc.wait(60) == 0, "".join(seen)
    browser.join(5)
    text = "".join(seen)
    assert "signed in" in text and "[browser] 200" in text
    assert "Warning" not in text, "stderr is for the user: no library warnings"
    assert fake.counts["authorization_code"] == 1
    form = next(r for r in fake.requests if r.get("form", {}).get("grant_type") == "authorization_code")["form"]
    assert form["code_verifier"] and form["redirect_uri"].startswith("http://localhost:")
    authorize = next(r for r in fake.requests if r["path"].endswith("/authorize"))
    assert authorize["query"]["code_challenge_method"] == "S256"
    assert authorize["query"]["login_hint"] == EMAIL
    token = env.run("token", "work")
    assert token.returncode == 0 and fake.is_valid_access_token(token.stdout.strip())


def test_browser_login_ignores_a_forged_state_and_waits_on(env: Env, fake: FakeEntra) -> None:
    """An answer with another state is answered (400) and ignored: the wait goes on until the deadline."""
    env.add_account(authority=fake.authority())
    fake.auto_approve = EMAIL
    proc = env.popen("login", "work", "--browser", "--timeout", "5")
    seen: list[str] = []
    browser = _follow_as_browser(fake, proc, seen, tamper=True)
    assert proc.wait(60) == 77, "".join(seen)
    browser.join(5)
    text = "".join(seen)
    assert "[browser] 400" in text and "no answer from the browser in time" in text, text
    assert fake.counts["authorization_code"] == 0
    assert not (env.state_dir / "accounts" / "work.json").exists()


def test_login_warns_when_another_user_signs_in(env: Env, fake: FakeEntra) -> None:
    fake.add_user("bob@contoso.com")
    env.add_account(authority=fake.authority())
    fake.auto_approve = "bob@contoso.com"
    out = env.run("login", "work")
    assert out.returncode == 0, out.stderr
    assert "warning: signed in as bob@contoso.com, but the config says email = alice@contoso.com" in out.stderr


def test_device_login_without_a_tty_only_prints_and_polls(env: Env, fake: FakeEntra) -> None:
    """stdin is /dev/null (cron, ssh -T): login must not read it, just show the code and wait."""
    env.add_account(authority=fake.authority())
    out = env.run("login", "work", "--timeout", "3", timeout=30)
    assert out.returncode == 77
    assert "enter the code" in out.stderr
    assert "not completed in time" in out.stderr or "expired" in out.stderr
    assert out.stdout == ""
    grants = env.state_dir / "grants"
    assert not grants.exists() or not any(grants.iterdir())


def test_record_survives_runtime_dir_loss(signed_in: Env, fake: FakeEntra) -> None:
    """After a reboot the tmpfs record is gone; the grant on disk brings the token back without a login."""
    record = signed_in.record_dir / "work.token"
    assert stat.S_IMODE(record.stat().st_mode) == 0o600
    for path in sorted(Path(signed_in.record_dir).iterdir()):
        path.unlink()
    signed_in.record_dir.rmdir()
    out = signed_in.run("token", "work")
    assert out.returncode == 0, out.stderr
    assert fake.counts["refresh_token"] == 1
