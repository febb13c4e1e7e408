"""`add`, help, version, usage errors and exit codes through the console script (issue 3)."""

from __future__ import annotations

import os
import pty
import subprocess
from pathlib import Path

from mailtoken import __version__
from tests.conftest import CLIENT_ID, MAILTOKEN, Env
from tests.fakes.entra import FakeEntra


def test_add_keeps_comments_and_other_accounts(env: Env) -> None:
    env.write_config('# my mail\n[accounts.home]  # personal\nemail = "me@outlook.com"\nclient_id = "x"\n')
    out = env.run("add", "work", "--email", "me@contoso.com", "--client-id", CLIENT_ID, "--tenant", "organizations")
    assert out.returncode == 0, out.stderr
    assert out.stdout == ""
    text = env.config_path.read_text()
    assert text.startswith("# my mail\n[accounts.home]  # personal\n")
    assert "[accounts.work]" in text and 'tenant = "organizations"' in text
    assert (env.config_path.stat().st_mode & 0o777) == 0o600
    dup = env.run("add", "work", "--email", "a@b.cd", "--client-id", "y")
    assert dup.returncode == 64 and "already exists" in dup.stderr


def test_add_creates_the_config_and_validates(env: Env) -> None:
    bad = env.run("add", "work", "--email", "nobody", "--client-id", CLIENT_ID)
    assert bad.returncode == 64 and "--email: 'nobody' is not an email address" in bad.stderr
    assert not env.config_path.exists()
    missing = env.run("add", "work", "--email", "a@b.cd")
    assert missing.returncode == 78 and "client_id: missing" in missing.stderr
    ok = env.run("add", "work", "--email", "a@b.cd", "--client-id", CLIENT_ID)
    assert ok.returncode == 0, ok.stderr
    assert (env.config_path.parent.stat().st_mode & 0o777) == 0o700


def test_add_asks_on_a_terminal(env: Env) -> None:
    pid, fd = pty.fork()
    if pid == 0:  # child: mailtoken on a pseudo-terminal, as a user would run it
        os.execve(MAILTOKEN, [MAILTOKEN, "add", "work"], env.vars)
    answers = iter(["me@contoso.com", CLIENT_ID, "organizations"])
    seen = b""
    while True:
        try:
            chunk = os.read(fd, 1024)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
        if seen.rstrip().endswith(b":") or seen.rstrip().endswith(b"[common]:"):
            os.write(fd, (next(answers, "") + "\n").encode())
            seen = b""
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    text = env.config_path.read_text()
    assert 'email = "me@contoso.com"' in text and f'client_id = "{CLIENT_ID}"' in text
    assert 'tenant = "organizations"' in text


def test_version_and_help(env: Env) -> None:
    assert env.run("--version").stdout.strip() == f"mailtoken {__version__}"
    for verb in ("token", "xoauth2", "oauthbearer", "login", "logout", "add", "status"):
        out = env.run(verb, "--help")
        assert out.returncode == 0 and "usage: mailtoken" in out.stdout and "77" in out.stdout


def test_usage_errors_exit_64_with_one_line(env: Env) -> None:
    for args in (("token",), ("frobnicate",), ("token", "work", "--bogus"), ()):
        out = env.run(*args)
        assert out.returncode == 64, args
        assert out.stdout == ""
        assert len(out.stderr.strip().splitlines()) == 1 and out.stderr.startswith("mailtoken: ")


def test_verbose_before_or_after_the_command(signed_in: Env) -> None:
    for args in (("-v", "token", "work"), ("token", "-v", "work"), ("token", "work", "--verbose")):
        out = signed_in.run(*args)
        assert out.returncode == 0, (args, out.stderr)
        assert "debug:" in out.stderr
        assert out.stdout.strip() not in out.stderr


def test_config_errors_exit_78(env: Env) -> None:
    out = env.run("token", "work")
    assert out.returncode == 78 and str(env.config_path) in out.stderr and out.stdout == ""
    env.write_config('[accounts.work]\nemial = "x"\n')
    out = env.run("token", "work")
    assert out.returncode == 78
    assert out.stderr.strip() == (
        f"mailtoken: {env.config_path}: [accounts.work] emial: unknown key (did you mean 'email'?)"
    )
    env.write_config('[accounts.work]\nemail = "a@b.cd"\nclient_id = "x"\n')
    out = env.run("token", "wrok")
    assert out.returncode == 78 and "did you mean 'work'" in out.stderr


def test_signin_required_is_77_and_fast_without_a_tty(env: Env, fake: FakeEntra) -> None:
    env.add_account(authority=fake.authority())
    out = env.run("token", "work", timeout=10)
    assert out.returncode == 77
    assert out.stdout == ""
    assert out.stderr == "mailtoken: work: not signed in: run 'mailtoken login work'\n"
    assert sum(fake.counts.values()) == 0


def test_env_config_override(env: Env, fake: FakeEntra, tmp_path) -> None:
    other = tmp_path / "elsewhere.toml"
    other.write_text(f'[accounts.x]\nemail = "a@b.cd"\nclient_id = "c"\nauthority = "{fake.authority()}"\n')
    out = env.run("status", "--json", env={"MAILTOKEN_CONFIG": str(other)})
    assert out.returncode == 0 and '"account": "x"' in out.stdout


def test_broken_pipe_is_quiet(signed_in: Env) -> None:
    proc = subprocess.run(
        f"'{MAILTOKEN}' token work | head -c 0",
        shell=True,
        capture_output=True,
        text=True,
        env=signed_in.vars,
        timeout=30,
    )
    assert "Traceback" not in proc.stderr


def _break_record_writes(env: Env, tmp_path: Path, text: str) -> None:
    """Make every record write fail with an exception we never planned for, carrying `text` (a secret)."""
    folder = tmp_path / "broken"
    folder.mkdir(exist_ok=True)
    (folder / "sitecustomize.py").write_text(
        "import os\n"
        "if os.environ.get('MAILTOKEN_TEST_BREAK'):\n"
        "    import mailtoken.fast.record as r\n"
        "    def write(*args, **kwargs):\n"
        "        raise RuntimeError(os.environ['MAILTOKEN_TEST_BREAK'])\n"
        "    r.write = write\n"
    )
    env.vars.update(PYTHONPATH=str(folder), MAILTOKEN_TEST_BREAK=text)


def test_unexpected_failure_is_one_line_exit_70_without_secrets(
    signed_in: Env, fake: FakeEntra, tmp_path: Path
) -> None:
    """An exception we never planned for (here: a record write failing with a token in its text): exit 70,
    one line, and with -v the stack frames but never the exception's text (it could carry a token).

    (An identity platform answering 200 without an access token used to be the trigger; that is now a
    temporary failure, exit 75, like every other unusable answer.)"""
    old = signed_in.run("token", "work").stdout.strip()
    (signed_in.record_dir / "work.token").unlink()
    _break_record_writes(signed_in, tmp_path, old)
    out = signed_in.run("token", "work")
    assert out.returncode == 70, out.stderr
    assert out.stdout == ""
    assert out.stderr.startswith("mailtoken: internal error (") and "rerun with -v" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    verbose = signed_in.run("-v", "token", "work")
    assert verbose.returncode == 70
    assert 'File "' in verbose.stderr, "-v shows where it failed"
    assert old not in verbose.stderr
    # The grant survived: the next call works without a login.
    del signed_in.vars["MAILTOKEN_TEST_BREAK"]
    again = signed_in.run("token", "work")
    assert again.returncode == 0, again.stderr
