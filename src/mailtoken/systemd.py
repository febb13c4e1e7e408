"""`mailtoken systemd install|uninstall`: a user timer that runs `mailtoken refresh --all` every 20 minutes.

The units written here are the ones in contrib/systemd/ with ExecStart pointing at this installation
(tests/test_refresh.py checks the two agree), so the documented manual steps and the command give the same result.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import subprocess
import sys

from . import quoting, ui
from .errors import EX_UNAVAILABLE, ConfigError, MailtokenError
from .fast import fsutil

SERVICE_NAME = "mailtoken-refresh.service"
TIMER_NAME = "mailtoken-refresh.timer"
# What contrib/systemd/ uses: where `pip install --user` and pipx put the script.
CONTRIB_EXEC = "%h/.local/bin/mailtoken"

SERVICE = """\
[Unit]
Description=Refresh mailtoken's OAuth2 access tokens
Documentation=man:mailtoken(1)

[Service]
Type=oneshot
ExecStart={exec} refresh --all
{environment}# 75 is a temporary failure (offline, identity platform down): the next run retries it.
SuccessExitStatus=75
TimeoutStartSec=10min
"""

SERVE_NAME = "mailtoken-serve.service"
SERVE = """\
[Unit]
Description=mailtoken bridge: local IMAP/POP3/SMTP with device passwords, XOAUTH2 upstream
Documentation=man:mailtoken(1) man:mailtoken.toml(5)

[Service]
# mailtoken serve says READY=1 once every [[serve]] listener is bound, STOPPING=1 on SIGTERM.
Type=notify
ExecStart={exec} serve
{environment}Restart=on-failure
RestartSec=5
# 78 is a configuration error and 64 a usage error: a restart cannot fix them.
RestartPreventExitStatus=64 78
# SIGTERM lets open sessions finish for up to 10 seconds.
TimeoutStopSec=20
NoNewPrivileges=yes

[Install]
WantedBy=default.target
"""

TIMER = """\
[Unit]
Description=Refresh mailtoken's OAuth2 access tokens every 20 minutes
Documentation=man:mailtoken(1)

[Timer]
OnCalendar=*:0/20
# Run at once after a suspend or a power-off that skipped a run.
Persistent=true
RandomizedDelaySec=60

[Install]
WantedBy=timers.target
"""


class SystemdUnavailable(MailtokenError):
    """The systemd user manager cannot be reached (no user bus: SSH without a session, a container). Exit 69
    as for a locked keyring: a service mailtoken needs is unavailable; the message says it is systemd's."""

    exit_code = EX_UNAVAILABLE


# Units are not secrets (0644, as systemd's own), but nobody else may change what they run.
UNIT_MODE = 0o644
# XDG base directory spec: a missing config home is created 0700; systemd's folders below it 0755.
CONFIG_HOME_MODE = 0o700
UNIT_DIR_MODE = 0o755


def config_home() -> str:
    base = os.environ.get("XDG_CONFIG_HOME", "")
    if not base or not os.path.isabs(base):
        base = os.path.join(os.path.expanduser("~"), ".config")
    return base


def unit_dir() -> str:
    return os.path.join(config_home(), "systemd", "user")


def _exec_path(path: str) -> str:
    try:
        return quoting.systemd_exec_path(path)
    except ValueError as exc:
        raise ConfigError(f"cannot write a unit that runs {path!r}: {exc}; install mailtoken elsewhere") from None


def executable() -> str:
    """This installation's console script, so the timer runs the same mailtoken as the user."""
    beside = os.path.join(os.path.dirname(sys.executable), "mailtoken")
    if os.access(beside, os.X_OK):
        return _exec_path(os.path.abspath(beside))
    found = shutil.which("mailtoken")
    if found:
        return _exec_path(os.path.abspath(found))
    return f"{_exec_path(os.path.abspath(sys.executable))} -m mailtoken"


def _environment(config_override: str | None) -> str:
    if not config_override:
        return ""
    # The units do not see the shell's variables: keep the config this user chose.
    try:
        return f"Environment={quoting.systemd_env('MAILTOKEN_CONFIG=' + config_override)}\n"
    except ValueError as exc:
        raise ConfigError(f"MAILTOKEN_CONFIG: {exc} (a systemd unit cannot hold it)") from None


def render(exec_start: str, config_override: str | None = None) -> dict[str, str]:
    return {SERVICE_NAME: SERVICE.format(exec=exec_start, environment=_environment(config_override)), TIMER_NAME: TIMER}


def _make_dirs(folder: str) -> None:
    """Create the missing folders up to FOLDER with explicit modes (the umask does not count); refuse an
    existing one that others may write to, since they could replace the units in it."""
    missing = []
    head = folder
    while not os.path.isdir(head):
        missing.append(head)
        head = os.path.dirname(head)
    for path in reversed(missing):
        mode = CONFIG_HOME_MODE if path == config_home() else UNIT_DIR_MODE
        os.mkdir(path, mode)
        os.chmod(path, mode)  # mkdir's mode is masked by the umask; ours only, never a folder that was there
    # A parent others can write to lets them swap the whole folder: check each one up from the config home.
    path = folder
    while True:
        st = os.stat(path)
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) or st.st_uid != os.getuid():
            raise ConfigError(
                f"{path} may be written by other users (mode {stat.S_IMODE(st.st_mode):04o}, uid {st.st_uid}): "
                f"run 'chmod go-w {path}' (and check what is in it) first"
            )
        if path == config_home() or os.path.dirname(path) == path:
            break
        path = os.path.dirname(path)


def render_serve(exec_start: str, config_override: str | None = None) -> dict[str, str]:
    """The bridge's unit (`systemd install --serve`), as contrib/systemd/ has it."""
    return {SERVE_NAME: SERVE.format(exec=exec_start, environment=_environment(config_override))}


def install(enable: bool, serve: bool = False) -> list[str]:
    """Write the units and enable the timer (with SERVE: the bridge's service); returns the paths written."""
    folder = unit_dir()
    units = (render_serve if serve else render)(executable(), os.environ.get("MAILTOKEN_CONFIG"))
    _make_dirs(folder)
    written = []
    for name, text in units.items():
        path = os.path.join(folder, name)
        fsutil.replace_file(path, text.encode("utf-8"), UNIT_MODE)
        written.append(path)
    ui.say(f"wrote {', '.join(written)}")
    if serve:
        if enable:
            _systemctl("daemon-reload")
            _systemctl("enable", "--now", SERVE_NAME)
            ui.say(f"enabled {SERVE_NAME}: see 'journalctl --user -u {SERVE_NAME}'")
        else:
            ui.say(f"next: systemctl --user daemon-reload && systemctl --user enable --now {SERVE_NAME}")
        return written
    if enable:
        _systemctl("daemon-reload")
        _systemctl("enable", "--now", TIMER_NAME)
        ui.say(f"enabled {TIMER_NAME}: see 'systemctl --user list-timers' and 'journalctl --user -u {SERVICE_NAME}'")
    else:
        ui.say(f"next: systemctl --user daemon-reload && systemctl --user enable --now {TIMER_NAME}")
    return written


def uninstall() -> list[str]:
    folder = unit_dir()
    names = (TIMER_NAME, SERVICE_NAME, SERVE_NAME)
    present = [os.path.join(folder, n) for n in names if os.path.exists(os.path.join(folder, n))]
    if present:
        with contextlib.suppress(SystemdUnavailable):
            # The files may have been copied by hand onto a machine without a user manager.
            _systemctl("disable", "--now", TIMER_NAME)
        if os.path.exists(os.path.join(folder, SERVE_NAME)):
            with contextlib.suppress(SystemdUnavailable):
                _systemctl("disable", "--now", SERVE_NAME)
    for path in present:
        os.unlink(path)
    if present:
        with contextlib.suppress(SystemdUnavailable):
            _systemctl("daemon-reload")
    ui.say(f"removed {', '.join(present)}" if present else f"no mailtoken units in {folder}")
    return present


def _systemctl(*args: str) -> None:
    argv = ["systemctl", "--user", *args]
    hint = f"the units are in {unit_dir()}; in your login session run: systemctl --user enable --now {TIMER_NAME}"
    try:
        result = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        raise SystemdUnavailable(f"systemctl not found (no systemd here?): use cron instead ({hint})") from None
    except subprocess.TimeoutExpired:
        raise SystemdUnavailable(f"'{' '.join(argv)}' did not answer within 60 s: {hint}") from None
    if result.returncode != 0:
        why = (result.stderr.strip().splitlines() or [f"exit status {result.returncode}"])[0]
        raise SystemdUnavailable(f"'{' '.join(argv)}' failed ({why}): {hint}")
