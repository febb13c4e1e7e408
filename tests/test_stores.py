"""The grant stores (issue 3): one contract run against the file store and a real Secret Service, chunking,
and the `auto` choice with its remembered store.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import EMAIL, Env
from tests.fakes.entra import FakeEntra
from tests.secret_service import SecretService

# The contract runs in a subprocess with the test's environment, as mailtoken itself would.
CONTRACT = r"""
import json, sys
from mailtoken.store import by_name
from mailtoken.store.keyring_store import KeyringStore
name, chunk = sys.argv[1], sys.argv[2]
store = KeyringStore(chunk_chars=int(chunk)) if name == "keyring" and chunk != "0" else by_name(name)
store.check()
results = {}
for value in ["x", "ünïcödé ✓ \"quotes\" \\ back", "y" * 12000, ""]:
    store.save("acct-1", value)
    results.setdefault("roundtrip", []).append(store.load("acct-1") == value)
store.save("acct-2", "other")
results["isolated"] = store.load("acct-1") == "" and store.load("acct-2") == "other"
results["missing"] = store.load("nobody") is None
results["delete"] = [store.delete("acct-1"), store.load("acct-1") is None, store.delete("acct-1")]
store.delete("acct-2")
print(json.dumps(results))
"""


def _contract(env: Env, store: str, chunk: int = 0) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CONTRACT, store, str(chunk)], capture_output=True, text=True, env=env.vars, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _expect_contract(results: dict) -> None:
    assert results == {
        "roundtrip": [True, True, True, True],
        "isolated": True,
        "missing": True,
        "delete": [True, True, False],
    }


def test_file_store_contract(env: Env) -> None:
    _expect_contract(_contract(env, "file"))


def test_secret_service_contract(env: Env, secret_service: SecretService) -> None:
    _expect_contract(_contract(env, "keyring"))


def test_secret_service_contract_chunked(env: Env, secret_service: SecretService) -> None:
    """Windows Credential Manager caps an item at 2560 bytes: the chunked layout must round-trip too."""
    _expect_contract(_contract(env, "keyring", chunk=1000))
    # No chunk survives deletion.
    assert "acct-1" not in secret_service.search()


def test_login_with_auto_uses_secret_service(env: Env, fake: FakeEntra, secret_service: SecretService) -> None:
    env.add_account(authority=fake.authority(), store="auto")
    fake.auto_approve = EMAIL
    login = env.run("login", "work")
    assert login.returncode == 0, login.stderr
    assert "keyring (keyring.backends.SecretService.Keyring)" in login.stderr
    items = secret_service.search()
    assert "attribute.service = mailtoken" in items and "attribute.username = work" in items
    assert not (env.state_dir / "grants" / "work.json").exists(), "the grant must not also be on disk"
    state = json.loads((env.state_dir / "accounts" / "work.json").read_text())
    assert state["store"] == "keyring"
    # Expire the record: the refresh must read the grant from the keyring and rotate it there.
    (env.record_dir / "work.token").unlink()
    token = env.run("token", "work")
    assert token.returncode == 0, token.stderr
    assert fake.is_valid_access_token(token.stdout.strip())
    assert fake.counts["refresh_token"] == 1
    status = json.loads(env.run("status", "--json").stdout)["accounts"][0]
    assert status["signed_in"] == "yes" and status["store"].startswith("keyring")


def test_auto_without_dbus_falls_back_to_file_and_says_so(env: Env, fake: FakeEntra) -> None:
    env.add_account(authority=fake.authority(), store="auto")
    fake.auto_approve = EMAIL
    login = env.run("login", "work")
    assert login.returncode == 0, login.stderr
    assert "keyring not usable" in login.stderr
    grant = env.state_dir / "grants" / "work.json"
    assert grant.exists() and (grant.stat().st_mode & 0o777) == 0o600


def test_remembered_keyring_unreachable_is_69_not_signin(
    env: Env, fake: FakeEntra, secret_service: SecretService
) -> None:
    """cron without D-Bus: the grant is in the keyring, so say how to reach it — never 'sign-in required'."""
    env.add_account(authority=fake.authority(), store="auto")
    fake.auto_approve = EMAIL
    assert env.run("login", "work").returncode == 0
    (env.record_dir / "work.token").unlink()
    no_bus = {k: v for k, v in env.vars.items() if k != "DBUS_SESSION_BUS_ADDRESS"}
    out = subprocess.run(
        [str(Path(sys.executable).parent / "mailtoken"), "token", "work"],
        capture_output=True,
        text=True,
        env=no_bus,
        timeout=60,
    )
    assert out.returncode == 69, out.stderr
    assert out.stdout == ""
    assert out.stderr.startswith("mailtoken: work: ") and "DBUS_SESSION_BUS_ADDRESS" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    # The grant is still there once the keyring is reachable again.
    assert env.run("token", "work").returncode == 0


def test_locked_keyring_is_69_with_the_fix(env: Env, fake: FakeEntra, secret_service: SecretService) -> None:
    env.add_account(authority=fake.authority(), store="keyring")
    fake.auto_approve = EMAIL
    assert env.run("login", "work").returncode == 0
    (env.record_dir / "work.token").unlink()
    secret_service.lock()
    out = env.run("token", "work")
    assert out.returncode == 69, out.stderr
    assert "locked" in out.stderr and "unlock" in out.stderr
    assert out.stdout == ""
    secret_service.unlock()
    again = env.run("token", "work")
    assert again.returncode == 0, again.stderr


def test_store_keyring_without_backend_refuses_login(env: Env, fake: FakeEntra) -> None:
    env.add_account(authority=fake.authority(), store="keyring")
    out = env.run("login", "work")
    assert out.returncode == 69
    assert 'store = "file"' in out.stderr
    assert fake.counts["devicecode"] == 0, "no sign-in may start when the grant could not be kept"


@pytest.mark.parametrize("umask", [0o000, 0o022])
def test_private_modes_regardless_of_umask(env: Env, fake: FakeEntra, umask: int) -> None:
    env.add_account(authority=fake.authority())
    fake.auto_approve = EMAIL
    login = env.run("login", "work", preexec_fn=lambda: os.umask(umask))
    assert login.returncode == 0, login.stderr
    for root in (env.state_dir, env.record_dir):
        for path in [root, *root.rglob("*")]:
            mode = path.stat().st_mode & 0o777
            assert mode == (0o700 if path.is_dir() else 0o600), f"{path}: {mode:o} under umask {umask:o}"
