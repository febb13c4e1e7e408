"""Issue 5, promise 7: secret hygiene. No token outside the stores, private files whatever the umask.

A whole session runs with -v and umask 000: add, login (device code and browser), token, xoauth2, oauthbearer,
refreshes, faults (HTTP 503, a hang, a revoked grant), refresh, status, logout. Every stdout, stderr, every file
mailtoken wrote outside its stores (grant store, access-token record) and the argv and environment of every
process mailtoken started (recorded by an audit hook in a sitecustomize on PYTHONPATH, a test-side seam) are
searched for every access token, refresh token, device code and authorization code the fake ever issued.
Files are 0600 and folders 0700; the record and the file store refuse to be read when others could read
them or when someone else owns them.
"""

from __future__ import annotations

import base64
import os
import re
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CLIENT_ID, EMAIL, IN_CI, Env
from tests.fakes.entra import FakeEntra

REPO = Path(__file__).resolve().parent.parent
LEAKS: dict[str, int] = {}

SITECUSTOMIZE = """
import json, os, sys

_LOG = os.environ.get("HYGIENE_AUDIT_LOG")


def _hook(event, args):
    if _LOG and event in ("subprocess.Popen", "os.exec", "os.posix_spawn", "os.spawn", "os.system", "os.startfile"):
        try:
            with open(_LOG, "a") as fh:
                fh.write(json.dumps({"event": event, "args": repr(args)}) + "\\n")
        except Exception:
            pass


if _LOG:
    sys.addaudithook(_hook)
"""


def audit_env(tmp_path: Path) -> dict[str, str]:
    site = tmp_path / "audit-site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    return {"PYTHONPATH": str(site), "HYGIENE_AUDIT_LOG": str(tmp_path / "audit.log"), "TMPDIR": str(tmpdir)}


def fake_secrets(fake: FakeEntra) -> set[str]:
    """Everything secret the fake ever handed out."""
    with fake._lock:
        found = set(fake._access_tokens) | set(fake._refresh_tokens) | set(fake._device_codes)
        found |= set(fake._auth_codes)
    return found


def needles(secret: str) -> list[str]:
    # Whole, and two slices from the random part: a truncated or wrapped copy is a leak as well.
    return [secret, secret[-40:], secret[len(secret) // 2 : len(secret) // 2 + 40]]


def is_store(path: Path, env: Env) -> bool:
    grants = env.state_dir / "grants"
    return path.parent == grants or (path.parent == env.record_dir and path.suffix == ".token")


def test_no_secret_leaves_the_stores(env: Env, fake: FakeEntra, tmp_path: Path) -> None:
    extra = audit_env(tmp_path)
    env.vars.update(extra)
    env.vars["BROWSER"] = f"{sys.executable} {REPO / 'tests' / 'fakes' / 'browser.py'} %s"
    env.vars["SSL_CERT_FILE"] = fake.ca_pem  # for the scripted browser
    outputs: list[tuple[list[str], str, str]] = []

    def run(*args: str, code: int | None = 0, token_out: bool = False) -> Any:
        result = env.run("-v", *args, umask=0, timeout=120)
        if code is not None:
            assert result.returncode == code, f"{args}: {result.returncode} {result.stderr}"
        # stdout holds the secret only for the commands that are asked for it, and then exactly once.
        outputs.append((list(args), "" if token_out else result.stdout, result.stderr))
        if token_out:
            assert result.stdout.count("\n") == 1
        return result

    fake.auto_approve = EMAIL
    add = [
        "add",
        "work",
        "--email",
        EMAIL,
        "--client-id",
        CLIENT_ID,
        "--tenant",
        "organizations",
        "--authority",
        fake.authority(),
        "--store",
        "file",
    ]
    run(*add)
    # A notifier is a process mailtoken starts too (on "sign-in required"): its argv is audited as well.
    with env.config_path.open("a") as fh:
        fh.write(f'\n[defaults]\nnotify_cmd = ["{sys.executable}", "-c", "pass", "{{message}}"]\n')
    run("login", "work")
    run("login", "work", "--browser", "--timeout", "30")
    token = run("token", "work", token_out=True).stdout.strip()
    assert fake.is_valid_access_token(token)
    assert base64.b64decode(run("xoauth2", "work", token_out=True).stdout).decode().endswith(f"{token}\x01\x01")
    run("oauthbearer", "work", "--host", "h", "--port", "993", token_out=True)
    env.age_record(expires_in=-10)
    run("token", "work", token_out=True)
    env.age_record(expires_in=-10)
    fake.inject("status", status=503)
    run("token", "work", code=75)
    fake.inject("hang", seconds=30, then="close")
    run("token", "work", "--timeout", "2", code=75)
    fake.inject("nonjson")
    run("token", "work", code=75)
    run("refresh", "--min-validity", "2h", "--timeout", "30")
    run("status")
    run("status", "--json")
    fake.revoke(EMAIL)
    env.age_record(expires_in=-10)
    run("token", "work", code=77)
    run("xoauth2", "work", code=77)
    run("login", "work")
    run("token", "work", token_out=True)

    # Files are private whatever the umask (every command above ran with umask 000).
    config_dir = env.config_path.parent
    written = [config_dir, env.state_dir, env.record_dir]
    for root in written:
        for path in [root, *root.rglob("*")]:
            mode = stat.S_IMODE(path.lstat().st_mode)
            assert mode == (0o700 if path.is_dir() else 0o600), f"{path} has mode {mode:o} (umask 000)"

    def files(when: str) -> int:
        count = 0
        for root in (env.home, env.runtime, Path(extra["TMPDIR"])):
            for path in root.rglob("*"):
                if path.is_file() and not is_store(path, env):
                    corpus[f"{path} ({when})"] = path.read_bytes().decode("utf-8", "replace")
                    count += 1
        return count

    corpus: dict[str, str] = {}
    scanned = files("before logout")
    run("logout", "work")
    scanned += files("after logout")

    secrets = fake_secrets(fake)
    assert len(secrets) >= 10
    for args, out, err in outputs:
        corpus[f"stdout of {' '.join(args)}"] = out
        corpus[f"stderr of {' '.join(args)}"] = err
    audit = Path(extra["HYGIENE_AUDIT_LOG"])
    corpus["argv and environment of started processes"] = audit.read_text() if audit.exists() else ""
    started = corpus["argv and environment of started processes"].count("\n")
    assert started >= 2, "the BROWSER command and the notifier should have been started"
    assert "sign-in required" in corpus["argv and environment of started processes"], "the notifier did not run"
    found = [
        (where, secret[:12] + "...")
        for secret in secrets
        for where, text in corpus.items()
        if any(n in text for n in needles(secret))
    ]
    LEAKS.update(secrets=len(secrets), places=len(corpus), files=scanned, processes_started=started, leaks=len(found))
    programs = sorted(
        set(
            re.findall(
                r"^\{\"event\": \"[^\"]+\", \"args\": \"\('([^']+)'",
                corpus["argv and environment of started processes"],
                flags=re.M,
            )
        )
    )
    print(f"\nhygiene: {LEAKS}; programs started: {programs}")
    assert not found, f"secrets outside the stores: {found}"
    # The stores themselves: the grant holds the refresh token, the record the access token; nothing else does.
    assert not (env.state_dir / "accounts" / "work.json").exists()


def _need_root() -> None:
    if os.geteuid() != 0:
        (pytest.fail if IN_CI else pytest.skip)("changing a file's owner needs root")


def _assert_69(result: Any, *needles_: str) -> None:
    assert result.returncode == 69, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("mailtoken: work: "), result.stderr
    for n in needles_:
        assert n in lines[0], lines[0]


@pytest.mark.parametrize("which", ["record", "grant", "account-state"])
def test_files_readable_by_others_are_refused(signed_in: Env, fake: FakeEntra, which: str) -> None:
    path = {
        "record": signed_in.record_dir / "work.token",
        "grant": signed_in.state_dir / "grants" / "work.json",
        "account-state": signed_in.state_dir / "accounts" / "work.json",
    }[which]
    if which != "record":
        signed_in.age_record(expires_in=-10)
    for mode in (0o640, 0o604):
        path.chmod(mode)
        _assert_69(signed_in.run("token", "work"), str(path), f"readable by others (mode {mode:04o})", "chmod 600")
    path.chmod(0o600)
    ok = signed_in.run("token", "work")
    assert ok.returncode == 0 and fake.is_valid_access_token(ok.stdout.strip())


@pytest.mark.parametrize("which", ["record", "grant"])
def test_files_owned_by_someone_else_are_refused(signed_in: Env, fake: FakeEntra, which: str) -> None:
    _need_root()
    path = signed_in.record_dir / "work.token" if which == "record" else signed_in.state_dir / "grants" / "work.json"
    if which == "grant":
        signed_in.age_record(expires_in=-10)
    os.chown(path, 65534, 65534)
    _assert_69(signed_in.run("token", "work"), str(path), "owned by another user (uid 65534)")
    os.chown(path, 0, 0)
    ok = signed_in.run("token", "work")
    assert ok.returncode == 0 and fake.is_valid_access_token(ok.stdout.strip())


def test_the_hot_path_does_not_serve_an_unsafe_record(signed_in: Env) -> None:
    """The stdlib fast path must not print a token from a record others can read (it leaves it to the CLI)."""
    rec = signed_in.record_dir / "work.token"
    rec.chmod(0o644)
    result = signed_in.run("token", "work")
    assert result.returncode == 69 and result.stdout == ""
    assert "readable by others" in result.stderr


# --- issue 11, point 9: `add` writes the user's config where the user keeps it -----------------------------


def _add(env: Env, name: str, config: Path) -> Any:
    result = env.run(
        "add", name, "--email", EMAIL, "--client-id", CLIENT_ID, env={"MAILTOKEN_CONFIG": str(config)}, umask=0
    )
    assert result.returncode == 0, result.stderr
    return result


def test_add_leaves_the_folders_it_did_not_create_as_they_were(env: Env) -> None:
    """A config in a dotfiles folder, or straight in $HOME: their modes are the user's business."""
    dotfiles = env.home / "dotfiles"
    dotfiles.mkdir()
    dotfiles.chmod(0o755)
    env.home.chmod(0o751)
    _add(env, "work", dotfiles / "mailtoken.toml")
    _add(env, "home", env.home / "x.toml")
    assert stat.S_IMODE(dotfiles.stat().st_mode) == 0o755
    assert stat.S_IMODE(env.home.stat().st_mode) == 0o751
    for config in (dotfiles / "mailtoken.toml", env.home / "x.toml"):
        assert stat.S_IMODE(config.stat().st_mode) == 0o600
    # Folders add creates are private, whatever the umask.
    _add(env, "new", env.home / "new" / "sub" / "config.toml")
    for folder in (env.home / "new", env.home / "new" / "sub"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_add_writes_through_a_symlinked_config_to_its_target(env: Env) -> None:
    dotfiles = env.home / "dotfiles"
    dotfiles.mkdir()
    target = dotfiles / "mailtoken.toml"
    _add(env, "work", target)
    link = env.home / ".config" / "mailtoken" / "config.toml"
    link.parent.mkdir(parents=True)
    link.symlink_to(target)
    _add(env, "home", link)
    assert link.is_symlink() and os.readlink(link) == str(target), "the link must stay a link"
    text = target.read_text()
    assert "[accounts.work]" in text and "[accounts.home]" in text
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in dotfiles.iterdir()] == ["mailtoken.toml"], "no temp file left behind"
    status = env.run("status", env={"MAILTOKEN_CONFIG": str(link)})
    assert status.returncode == 0 and "home" in status.stdout and "work" in status.stdout, status.stderr


# --- issue 11, point 11: no core dump holds a secret -----------------------------------------------------------


def _unlimited_cores() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))


@pytest.mark.parametrize("when", ["refreshing", "signing in"])
def test_a_crash_leaves_no_core_dump(signed_in: Env, fake: FakeEntra, tmp_path: Path, when: str) -> None:
    """`ulimit -c unlimited` and a crash while the refresh token is in memory: no core file anywhere.

    Where cores go to the working directory (core_pattern "core") the crash must leave none there; where they
    are piped to a handler (apport, systemd-coredump) only the limit the process runs with can be checked."""
    import signal

    pattern = Path("/proc/sys/kernel/core_pattern").read_text().strip()
    cores_land_here = not pattern.startswith("|") and "/" not in pattern
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    if when == "refreshing":
        signed_in.age_record(expires_in=-10)
        fake.inject("hang", seconds=30, then="close")
        args, counter = ("token", "work", "--timeout", "60"), "refresh_token"
    else:
        args, counter = ("login", "work", "--timeout", "60"), "devicecode"
    proc = signed_in.popen(*args, cwd=cwd, preexec_fn=_unlimited_cores)
    try:
        end = time.monotonic() + 30
        while fake.counts[counter] == 0 and time.monotonic() < end and proc.poll() is None:
            time.sleep(0.05)
        assert fake.counts[counter] == 1, f"mailtoken never got to {when}"
        time.sleep(0.2)
        limits = Path(f"/proc/{proc.pid}/limits").read_text()
        core_limit = next(line for line in limits.splitlines() if line.startswith("Max core file size"))
        assert core_limit.split()[4] == "0", f"while {when}: {core_limit}"
        proc.send_signal(signal.SIGSEGV)
        assert proc.wait(30) == -signal.SIGSEGV
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)
    cores = [p.name for p in cwd.iterdir()]
    assert not cores, f"a crash while {when} left {cores}"
    if not cores_land_here:
        print(f"core_pattern {pattern!r}: checked the core limit only")


# --- issue 11, point 12: a file the user cannot read is named, with why -------------------------------------


@pytest.mark.parametrize("which", ["record", "grant", "account-state", "record-folder"])
def test_a_file_the_user_cannot_read_is_named_with_the_reason(which: str) -> None:
    """Mode 0000 on one of mailtoken's files: one line naming the file and why, not a bare [Errno 13].

    root reads any file, so as root the whole world is handed to nobody and mailtoken runs as nobody."""
    import json
    import shutil
    import tempfile

    from tests.conftest import MAILTOKEN

    top = Path(tempfile.mkdtemp(prefix="mailtoken-unreadable-"))
    try:
        top.chmod(0o755)  # nobody must reach its home inside
        env = Env(top)
        env.add_account(authority="https://127.0.0.1:9/organizations")  # never asked: the read fails first
        files = {
            "record": env.record_dir / "work.token",
            "grant": env.state_dir / "grants" / "work.json",
            "account-state": env.state_dir / "accounts" / "work.json",
        }
        for path in files.values():
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        files["account-state"].write_text(json.dumps({"store": "file", "username": EMAIL}))
        files["grant"].write_text("{}")
        if which.startswith("record"):
            files["record"].write_text("mailtoken-record 1\n")
        target = files[which.removesuffix("-folder")]
        for path in files.values():
            if path.exists():
                path.chmod(0o600)
        (target.parent if which.endswith("-folder") else target).chmod(0)
        command = [MAILTOKEN, "token", "work"]
        if os.geteuid() == 0:
            setpriv = shutil.which("setpriv")
            if setpriv is None:
                (pytest.fail if IN_CI else pytest.skip)("setpriv (util-linux) is needed to test as non-root")
            for path in [env.home, env.runtime, *env.home.rglob("*"), *env.runtime.rglob("*")]:
                os.chown(path, 65534, 65534, follow_symlinks=False)
            command = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", *command]
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=60, env=env.vars, stdin=subprocess.DEVNULL
        )
    finally:
        for folder in (env.record_dir, env.state_dir / "grants", env.state_dir / "accounts"):
            if folder.exists():
                folder.chmod(0o700)  # so that a non-root run can remove it
        shutil.rmtree(top, ignore_errors=True)
    if which.endswith("-folder"):
        _assert_69(result, f"{target} cannot be read (permission denied: a folder above it, like {target.parent}")
    else:
        _assert_69(result, f"{target} cannot be read (permission denied: its mode is 0000", f"chmod 600 {target}")
    assert "[Errno" not in result.stderr
