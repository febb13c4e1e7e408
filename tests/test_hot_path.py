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
    assert {"msal", "argparse", "filelock"} <= top


def test_config_change_invalidates_the_record(signed_in: Env) -> None:
    before = signed_in.run("token", "work").stdout
    signed_in.config_path.write_text(signed_in.config_path.read_text() + "\n# edited\n")
    out, top = _imports(signed_in, "token", "work")
    assert out.returncode == 0
    assert "msal" in top, "an edited config must not be answered from the old record"
    assert out.stdout != before
