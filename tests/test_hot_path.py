"""The cached path imports nothing heavy (issue 3): measured on the installed console script itself."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.conftest import MAILTOKEN, Env

FORBIDDEN = (
    "msal",
    "keyring",
    "requests",
    "platformdirs",
    "json",
    "tomllib",
    "tomli",
    "argparse",
    "filelock",
    "tomlkit",
    "urllib",
    "http",
    "ssl",
    "logging",
    # pip's console-script wrapper imports re before our code (1.6x `python -c pass` by itself): bin/mailtoken,
    # the launcher installed instead, must not.
    "re",
)


def _imports(env: Env, *args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    out = subprocess.run(
        [sys.executable, "-X", "importtime", MAILTOKEN, *args], capture_output=True, text=True, env=env.vars, timeout=60
    )
    modules = set(re.findall(r"\|\s+(\S+)\s*$", out.stderr, flags=re.M))
    return out, {m.split(".")[0] for m in modules}


@pytest.mark.parametrize(
    "args",
    [
        ("token", "work"),
        ("xoauth2", "work"),
        ("oauthbearer", "work", "--user", "a@b.c"),
        ("xoauth2", "work", "--raw", "--user=x@y.z"),
    ],
)
def test_cached_path_imports_no_heavy_module(signed_in: Env, args: tuple[str, ...]) -> None:
    out, top = _imports(signed_in, *args)
    assert out.returncode == 0
    assert out.stdout.count("\n") == 1
    assert "mailtoken" in top, "importtime saw our package, so the check is real"
    heavy = sorted(top.intersection(FORBIDDEN))
    assert heavy == [], f"the cached path imported {heavy}"


def test_stale_record_goes_through_the_full_cli(signed_in: Env) -> None:
    """The control: when a refresh is due the same measurement does see msal, so the test above can fail."""
    (signed_in.record_dir / "work.token").unlink()
    out, top = _imports(signed_in, "token", "work")
    assert out.returncode == 0, out.stderr[-500:]
    # filelock is not among them: the cached path already claimed the account's lock (login made the file).
    assert {"msal", "argparse"} <= top


def test_a_change_to_the_account_invalidates_the_record(signed_in: Env) -> None:
    """Issue 12: only the account's own settings (config.FINGERPRINT_KEYS) make its record stale."""
    before = signed_in.run("token", "work").stdout
    text = signed_in.config_path.read_text()
    assert 'tenant = "organizations"' in text
    signed_in.config_path.write_text(text.replace('tenant = "organizations"', 'tenant = "contoso.onmicrosoft.com"'))
    out, top = _imports(signed_in, "token", "work")
    assert out.returncode == 0
    assert "msal" in top, "an edited account must not be answered from the old record"
    assert out.stdout != before


def test_a_comment_in_the_config_keeps_the_record_and_the_fast_path(signed_in: Env) -> None:
    before = signed_in.run("token", "work").stdout
    signed_in.config_path.write_text(signed_in.config_path.read_text() + "\n# edited\n")
    first, top = _imports(signed_in, "token", "work")
    assert first.returncode == 0 and first.stdout == before
    assert "msal" not in top, "re-stamping the record needs no identity platform"
    again, top = _imports(signed_in, "token", "work")
    assert again.stdout == before
    assert "argparse" not in top, "the re-stamped record is served by the cached path again"
