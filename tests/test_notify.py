"""notify_cmd (issue 7): when an account needs a new sign-in, `token` and `refresh` run the user's command without
a shell, in bounded time, at most once per notify_interval per account. A script records its calls.
"""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from mailtoken import config, notify
from mailtoken.errors import EX_CONFIG, EX_NOPERM, ConfigError
from tests.conftest import EMAIL, Env
from tests.fakes.entra import FakeEntra

PATH = "/home/u/.config/mailtoken/config.toml"
ACCOUNT = '[accounts.work]\nemail = "me@contoso.com"\nclient_id = "abc"\n'
# An authority nobody answers: these accounts are never signed in, so `token` fails with 77 without a network.
NOWHERE = "https://login.invalid/organizations"


def _recorder(env: Env) -> tuple[Path, Path]:
    """A notify command that appends its argv, its environment's MAILTOKEN_* values and a separator to a log."""
    log = env.root / "notices.log"
    script = env.root / "record-notice"
    script.write_text(
        "#!/bin/sh\n"
        f'{{ for a in "$@"; do printf "arg:%s\\n" "$a"; done\n'
        '  printf "env:%s|%s|%s\\n---\\n" "$MAILTOKEN_ACCOUNT" "$MAILTOKEN_EMAIL" "$MAILTOKEN_MESSAGE"\n'
        f"}} >> {log}\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script, log


def _notices(log: Path) -> list[list[str]]:
    if not log.exists():
        return []
    return [[line for line in block.splitlines() if line] for block in log.read_text().split("---\n") if block]


# --- config -------------------------------------------------------------------------------------------------


def test_notify_settings_parse_with_defaults_and_overrides() -> None:
    cfg = config.parse(
        '[defaults]\nnotify_cmd = "notify-send mailtoken \'{message}\'"\nnotify_interval = "1h30m"\n'
        + ACCOUNT
        + '\n[accounts.home]\nemail = "me@outlook.com"\nclient_id = "def"\nnotify_cmd = []\nnotify_interval = 60\n'
        + "copy_code = true\n",
        PATH,
    )
    work, home = cfg.account("work"), cfg.account("home")
    assert work.notify_cmd == ("notify-send", "mailtoken", "{message}")
    assert (work.notify_interval, work.copy_code) == (5400, False)
    assert (home.notify_cmd, home.notify_interval, home.copy_code) == ((), 60, True)
    plain = config.parse(ACCOUNT, PATH).account("work")
    assert (plain.notify_cmd, plain.notify_interval) == ((), 15 * 60)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (ACCOUNT + "notify_cmd = 42\n", "[accounts.work] notify_cmd: must be a list of strings"),
        (ACCOUNT + 'notify_cmd = ["a", 1]\n', "[accounts.work] notify_cmd: must be a list of strings"),
        (ACCOUNT + 'notify_cmd = "say \'unclosed"\n', "[accounts.work] notify_cmd: cannot be split into words"),
        (ACCOUNT + 'notify_interval = "soon"\n', "[accounts.work] notify_interval: must be a duration"),
        (ACCOUNT + "notify_interval = -5\n", "[accounts.work] notify_interval: must be a duration"),
        (ACCOUNT + 'copy_code = "yes"\n', "[accounts.work] copy_code: must be true or false, not str"),
        ("[defaults]\nnotify_intervall = 5\n" + ACCOUNT, "[defaults] notify_intervall: unknown key (did you mean "),
        ("[defaults]\nemail = 'x@y.z'\n" + ACCOUNT, "[defaults] email: unknown key"),
        ("defaults = 3\n" + ACCOUNT, "'defaults' must be a table"),
    ],
)
def test_bad_notify_settings_name_file_account_and_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        config.parse(text, PATH)
    assert info.value.exit_code == EX_CONFIG
    assert info.value.message.startswith(PATH + ": ")
    assert message in info.value.message


# --- token and refresh run it --------------------------------------------------------------------------------


def test_token_notifies_once_per_interval_without_a_shell(env: Env) -> None:
    script, log = _recorder(env)
    # A shell would expand $HOME and run the second command; an argv list must pass both through literally.
    env.add_account(authority=NOWHERE, extra=f"notify_cmd = \"{script} {{account}} '$HOME; touch pwned' {{email}}\"\n")
    first = env.run("token", "work")
    assert (first.returncode, first.stdout) == (EX_NOPERM, "")
    assert first.stderr == "mailtoken: work: not signed in: run 'mailtoken login work'\n"
    message = "work: not signed in: run 'mailtoken login work'"
    assert _notices(log) == [["arg:work", "arg:$HOME; touch pwned", f"arg:{EMAIL}", f"env:work|{EMAIL}|{message}"]]
    assert not (env.root / "pwned").exists()

    again = [env.run(cmd, "work") for cmd in ("token", "xoauth2", "oauthbearer")]
    assert [r.returncode for r in again] == [EX_NOPERM] * 3
    assert len(_notices(log)) == 1, "at most one notice per notify_interval (default 15 min)"
    stamp = env.state_dir / "notify" / "work.last"
    assert stat.S_IMODE(stamp.stat().st_mode) == 0o600


def test_a_new_notice_after_the_interval_and_defaults_apply_to_every_account(env: Env) -> None:
    script, log = _recorder(env)
    env.write_config(f'[defaults]\nnotify_cmd = ["{script}", "{{message}}"]\nnotify_interval = "1s"\n')
    env.add_account("work", authority=NOWHERE)
    env.add_account("home", authority=NOWHERE, email="bob@contoso.com", extra="notify_cmd = []\n")
    env.add_account("lab", authority=NOWHERE, email="carol@contoso.com")
    assert env.run("token", "work").returncode == EX_NOPERM
    assert env.run("token", "home").returncode == EX_NOPERM
    assert len(_notices(log)) == 1, "home opted out with notify_cmd = []"
    time.sleep(1.1)
    # refresh notifies too, each account on its own interval (named: --all skips accounts never signed in).
    result = env.run("refresh", "home", "lab", "work")
    assert result.returncode == EX_NOPERM
    assert [n[0] for n in _notices(log)] == [
        "arg:work: not signed in: run 'mailtoken login work'",
        "arg:lab: not signed in: run 'mailtoken login lab'",
        "arg:work: not signed in: run 'mailtoken login work'",
    ]


def test_revoked_grant_notifies_from_token(signed_in: Env, fake: FakeEntra) -> None:
    script, log = _recorder(signed_in)
    config_text = signed_in.config_path.read_text()
    signed_in.write_config(config_text + f'notify_cmd = ["{script}", "{{message}}"]\n')
    fake.revoke(EMAIL)
    # notify_cmd does not change the token (config.FINGERPRINT_KEYS): drop the record so this call refreshes.
    (signed_in.record_dir / "work.token").unlink()
    result = signed_in.run("token", "work")
    assert result.returncode == EX_NOPERM, result.stderr
    assert len(_notices(log)) == 1 and "AADSTS50173" in _notices(log)[0][0]
    # A successful sign-in resets the interval: the next problem is reported at once.
    fake.auto_approve = EMAIL
    assert signed_in.run("login", "work").returncode == 0
    assert not (signed_in.state_dir / "notify" / "work.last").exists()


def test_parallel_callers_send_one_notice(env: Env) -> None:
    script, log = _recorder(env)
    env.add_account(authority=NOWHERE, extra=f'notify_cmd = ["{script}"]\n')
    procs = [env.popen("token", "work") for _ in range(8)]
    assert [p.wait(60) for p in procs] == [EX_NOPERM] * 8
    for p in procs:
        p.communicate()
    assert len(_notices(log)) == 1


def test_a_hanging_or_missing_notifier_never_hangs_or_changes_the_answer(env: Env) -> None:
    child_pid = env.root / "child.pid"
    hang = f'notify_cmd = ["sh", "-c", "sleep 60 & echo $! > {child_pid}; wait"]\n'
    env.add_account(authority=NOWHERE, extra=hang)
    started = time.monotonic()
    result = env.run("token", "work")
    took = time.monotonic() - started
    assert result.returncode == EX_NOPERM and result.stdout == ""
    assert f"did not finish within {notify.NOTIFY_TIMEOUT:g} s and was stopped" in result.stderr
    assert took < notify.NOTIFY_TIMEOUT + 20
    pid = int(child_pid.read_text())
    for _ in range(50):  # the whole process group is killed, not just the shell
        if not _alive(pid):
            break
        time.sleep(0.1)
    assert not _alive(pid)

    env.write_config(env.config_path.read_text().replace(hang, 'notify_cmd = ["/nonexistent/notifier"]\n'))
    (env.state_dir / "notify" / "work.last").unlink()
    missing = env.run("token", "work")
    assert missing.returncode == EX_NOPERM
    assert "notify_cmd could not start /nonexistent/notifier" in missing.stderr


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purpose: its parent (the killed shell) is gone and init will reap it.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False
