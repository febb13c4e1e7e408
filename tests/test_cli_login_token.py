"""End to end through the installed console script (issue 3): login, token, xoauth2, oauthbearer, status, logout."""

from __future__ import annotations

import base64
import json
import re
import threading
import time

from tests.conftest import EMAIL, Env
from tests.fakes.entra import FakeEntra


def _approve_when_shown(fake: FakeEntra, proc, seen: list[str]) -> threading.Thread:
    """Read the login's stderr like a user would: take the code it shows and approve it at the fake."""

    def reader() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            seen.append(line)
            match = re.search(r"enter the code (\S+)", line)
            if match:
                fake.approve(match.group(1), EMAIL)

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    return thread


def test_device_login_then_cached_token(env: Env, fake: FakeEntra) -> None:
    env.add_account(authority=fake.authority())
    proc = env.popen("login", "work")
    seen: list[str] = []
    reader = _approve_when_shown(fake, proc, seen)
    assert proc.wait(60) == 0, "".join(seen)
    reader.join(5)
    out = proc.stdout.read() if proc.stdout else ""
    assert out == "", "login must print nothing on stdout"
    text = "".join(seen)
    assert f"{fake.base_url}/devicelogin" in text
    assert f"signed in as {EMAIL}" in text
    assert fake.counts["device_code"] >= 1

    first = env.run("token", "work")
    assert first.returncode == 0, first.stderr
    token = first.stdout
    assert token.endswith("\n") and token.count("\n") == 1
    assert fake.is_valid_access_token(token.strip())
    assert first.stderr == ""
    before = dict(fake.counts)
    again = env.run("token", "work")
    assert again.stdout == token
    assert fake.counts == before, "a cached token must not reach the identity platform"


def test_xoauth2_and_oauthbearer_use_the_token(signed_in: Env, fake: FakeEntra) -> None:
    token = signed_in.run("token", "work").stdout.strip()
    x = signed_in.run("xoauth2", "work")
    assert x.returncode == 0
    assert base64.b64decode(x.stdout.strip()).decode() == f"user={EMAIL}\x01auth=Bearer {token}\x01\x01"
    shared = signed_in.run("xoauth2", "work", "--user", "team@contoso.com", "--raw")
    assert shared.stdout == f"user=team@contoso.com\x01auth=Bearer {token}\x01\x01\n"
    ob = signed_in.run("oauthbearer", "work", "--host", "imap.contoso.com", "--port", "993")
    assert base64.b64decode(ob.stdout.strip()).decode() == (
        f"n,a={EMAIL},\x01host=imap.contoso.com\x01port=993\x01auth=Bearer {token}\x01\x01"
    )
    # The same answers through the full CLI (-v forces it) as through the fast path.
    slow = signed_in.run("-v", "xoauth2", "work")
    assert slow.stdout == x.stdout
    assert token not in slow.stderr


def test_expired_token_is_refreshed_once_and_rotates(signed_in: Env, fake: FakeEntra) -> None:
    first = signed_in.run("token", "work").stdout.strip()
    fake.token_lifetime = 3600
    # Make the record stale as time would: rewrite its refresh time into the past.
    rec = signed_in.record_dir / "work.token"
    text = rec.read_text()
    rec.write_text(re.sub(r"refresh \d+", f"refresh {int(time.time()) - 1}", text))
    second = signed_in.run("token", "work")
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() != first
    assert fake.counts["refresh_token"] == 1
    third = signed_in.run("token", "work")
    assert third.stdout == second.stdout
    assert fake.counts["refresh_token"] == 1


def test_short_lived_token_refreshes_at_half_life_not_every_call(signed_in: Env, fake: FakeEntra) -> None:
    fake.token_lifetime = 4
    signed_in.age_record()
    assert signed_in.run("token", "work").returncode == 0
    assert fake.counts["refresh_token"] == 1
    # A 4 s token is refreshed after 2 s (half its life), not on every call as msal's 5-minute rule would.
    fields = dict(line.split(" ", 1) for line in (signed_in.record_dir / "work.token").read_text().splitlines()[1:])
    assert int(fields["expires"]) - int(fields["refresh"]) == 2
    assert signed_in.run("token", "work").returncode == 0
    assert fake.counts["refresh_token"] == 1
    signed_in.age_record()  # the 2 s pass, on both clocks, without a sleep racing the machine's load
    assert signed_in.run("token", "work").returncode == 0
    assert fake.counts["refresh_token"] == 2


def test_status_and_logout(signed_in: Env, fake: FakeEntra) -> None:
    token = signed_in.run("token", "work").stdout.strip()
    status = signed_in.run("status")
    assert status.returncode == 0, status.stderr
    assert "work" in status.stdout and EMAIL in status.stdout and "yes" in status.stdout
    assert token not in status.stdout + status.stderr
    data = json.loads(signed_in.run("status", "--json").stdout)
    assert data["format_version"] == 1
    assert data["accounts"][0]["signed_in"] == "yes"
    assert data["accounts"][0]["store"].startswith("file")

    out = signed_in.run("logout", "work")
    assert out.returncode == 0, out.stderr
    assert out.stdout == ""
    assert not (signed_in.record_dir / "work.token").exists()
    assert not list((signed_in.state_dir / "grants").glob("work*"))
    after = signed_in.run("token", "work")
    assert after.returncode == 77
    assert after.stdout == ""
    assert after.stderr.strip() == "mailtoken: work: not signed in: run 'mailtoken login work'"
    assert json.loads(signed_in.run("status", "--json").stdout)["accounts"][0]["signed_in"] == "no"


def test_files_are_private(signed_in: Env) -> None:
    signed_in.run("token", "work")
    for path in [
        signed_in.record_dir,
        *signed_in.record_dir.rglob("*"),
        signed_in.state_dir,
        *signed_in.state_dir.rglob("*"),
    ]:
        mode = path.stat().st_mode & 0o777
        assert mode == (0o700 if path.is_dir() else 0o600), f"{path} has mode {mode:o}"


def test_rejected_grant_shows_in_status_and_a_new_login_clears_it(signed_in: Env, fake: FakeEntra) -> None:
    fake.revoke(EMAIL)
    (signed_in.record_dir / "work.token").unlink()
    out = signed_in.run("token", "work")
    assert out.returncode == 77, out.stderr
    assert "run 'mailtoken login work'" in out.stderr
    status = json.loads(signed_in.run("status", "--json").stdout)["accounts"][0]
    assert status["signed_in"].startswith("no (grant rejected")
    fake.auto_approve = EMAIL
    assert signed_in.run("login", "work").returncode == 0
    assert json.loads(signed_in.run("status", "--json").stdout)["accounts"][0]["signed_in"] == "yes"
    assert not (signed_in.state_dir / "accounts" / "work.rejected").exists()
    assert signed_in.run("logout", "work").returncode == 0
    # Only the lock file stays: waiters must keep finding the same inode.
    left = [p for p in signed_in.state_dir.rglob("work.*") if p.parent.name != "locks"]
    assert left == [], left
