"""Drivers for mpop, s-nail and imapfilter (issue 15), in the style of drivers.py: each runs the real client with
a config block against the stack, asserts the effect and returns Dovecot's `Login:` line."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from tests.conftest import EMAIL, Env
from tests.servers.dovecot import Login
from tests.servers.drivers import RCPT, _ok, localize, maildir_subjects, unique, write
from tests.servers.stack import MailStack, Run

# --- mpop ---------------------------------------------------------------------------------------------------


def mpop_fetch(stack: MailStack, env: Env, rc_text: str, *, account: str = "work") -> tuple[Login, set[str]]:
    """Fetch into ~/Mail/ACCOUNT; with `keep on` the message must also still be on the server."""
    rc = write(env.home / ".mpoprc", localize(rc_text, stack))
    maildir = env.home / "Mail" / account
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    subject = stack.seed()
    mark = stack.server.mark()
    run = _ok(stack.run(env, ["mpop", "-C", str(rc), account]))
    got = maildir_subjects(maildir)
    assert subject in got, f"{subject!r} not fetched (have {got})\n{run}"
    on_server = maildir_subjects(stack.server.maildir(EMAIL))
    assert subject in on_server, f"{subject!r} was deleted from the server (keep on?)\n{run}"
    return stack.server.wait_login(mark, "pop3", EMAIL, "XOAUTH2"), got


# --- s-nail -------------------------------------------------------------------------------------------------


def snail_env(env: Env, rc: Path) -> dict[str, str]:
    """MAILRC names the file. As root s-nail sets HOME=/root for itself and the helper it runs, so the
    helper is told where this user's config and state are (the README quick start says the same)."""
    extra = {"MAILRC": str(rc)}
    if os.geteuid() == 0:
        extra.update(
            MAILTOKEN_CONFIG=str(env.config_path),
            XDG_CONFIG_HOME=str(env.home / ".config"),
            XDG_STATE_HOME=str(env.home / ".local" / "state"),
            XDG_DATA_HOME=str(env.home / ".local" / "share"),
            DEAD=str(env.home / "dead.letter"),
        )
    return extra


def snail_args(stack: MailStack, account: str) -> list[str]:
    # -:u: only the user's file (MAILRC), not /etc/s-nail.rc. The CA is the test's: -S keeps the config as written.
    return ["s-nail", "-:u", "-S", f"tls-ca-file={stack.tls.ca_pem}", "-A", account]


def snail_send(stack: MailStack, env: Env, rc_text: str, *, account: str = "work") -> Login:
    rc = write(env.home / ".mailrc", localize(rc_text, stack))
    subject = unique("s-nail")
    mark = stack.server.mark()
    args = [*snail_args(stack, account), "-s", subject, RCPT]
    _ok(stack.run(env, args, input="Sent by s-nail.\n", extra_env=snail_env(env, rc)))
    received = stack.sink.wait_for(subject)
    assert received.rcpt_tos == (RCPT,) and received.mail_from == EMAIL
    return stack.server.wait_login(mark, "submission", EMAIL, "XOAUTH2")


def snail_list(stack: MailStack, env: Env, rc_text: str, *, account: str = "work") -> tuple[Login, Run]:
    """Batch mode (-#): open INBOX and list its headers; the seeded message must be in the list."""
    rc = write(env.home / ".mailrc", localize(rc_text, stack))
    subject = stack.seed()
    mark = stack.server.mark()
    run = stack.run(
        env, [*snail_args(stack, account), "-#"], input="file +INBOX\nheaders\n", extra_env=snail_env(env, rc)
    )
    _ok(run)
    assert subject in run.stdout, str(run)
    return stack.server.wait_login(mark, "imap", EMAIL, "XOAUTH2"), run


# --- imapfilter ---------------------------------------------------------------------------------------------


def imapfilter_config(stack: MailStack, env: Env, block: str, rules: str) -> Path:
    return write(env.home / ".imapfilter" / "config.lua", localize(block, stack) + "\n" + rules)


def imapfilter_args(stack: MailStack, config: Path) -> list[str]:
    # It ignores SSL_CERT_FILE: the CA goes in with -t.
    return ["imapfilter", "-t", str(stack.tls.ca_pem), "-c", str(config)]


COUNT_AND_COPY = """
local function rules(account)
  local all = account.INBOX:select_all()
  print("INBOX holds " .. #all .. " messages")
  account:create_mailbox("Sent")
  all:copy_messages(account["Sent"])
end
rules({fn}())
"""


def imapfilter_filter(stack: MailStack, env: Env, block: str, *, fn: str = "mailtoken_work") -> tuple[Login, Run]:
    """A real filter: count INBOX and copy it into Sent; Dovecot's Sent must then hold the seeded message."""
    config = imapfilter_config(stack, env, block, COUNT_AND_COPY.replace("{fn}", fn))
    subject = stack.seed()
    mark = stack.server.mark()
    run = _ok(stack.run(env, imapfilter_args(stack, config)))
    count = re.search(r"INBOX holds (\d+) messages", run.stdout)
    assert count and int(count.group(1)) >= 1, str(run)
    sent = maildir_subjects(stack.server.maildir(EMAIL) / ".Sent")
    assert subject in sent, f"{subject!r} not copied into Sent (have {sent})\n{run}"
    return stack.server.wait_login(mark, "imap", EMAIL, "XOAUTH2"), run


def pid_from(path: Path, timeout: float = 10) -> int:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if path.exists() and path.read_text().strip().isdigit():
            return int(path.read_text().strip())
        time.sleep(0.05)
    raise AssertionError(f"no PID in {path}")
