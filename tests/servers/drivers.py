"""Run each real mail client with a config block (from contrib/ or `mailtoken config`) against the stack.

A block is written for Microsoft; `localize` swaps in only the test's host, ports and paths. Every driver
asserts the client's effect (mail synced or delivered) and Dovecot's own `Login:` line for the service, and
returns that line.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from tests.conftest import EMAIL, MAILTOKEN, Env
from tests.servers.dovecot import Login
from tests.servers.stack import MailStack, Run

ROOT = Path(__file__).resolve().parents[2]
CONTRIB = ROOT / "contrib"
# contrib/offlineimap names the hook where a pipx install puts it; tests use the installed package's.
CONTRIB_HOOK = "~/.local/share/pipx/venvs/mailtoken/lib/python3.11/site-packages/mailtoken/offlineimap.py"
MS_HOSTS = ("outlook.office365.com", "smtp.office365.com")
RCPT = "bob@example.org"


def hook_path() -> str:
    import mailtoken.offlineimap

    return os.path.abspath(mailtoken.offlineimap.__file__)


def localize(text: str, stack: MailStack) -> str:
    """Point a Microsoft config block at the test servers: host, ports and trust/hook paths only."""
    p, host = stack.server.ports, stack.server.host
    ca = str(stack.tls.ca_pem)
    rules = [
        # host:port pairs (URLs: mutt, aerc, curl)
        (r"outlook\.office365\.com:993", f"{host}:{p.imaps}"),
        (r"outlook\.office365\.com:995", f"{host}:{p.pop3s}"),
        (r"smtp\.office365\.com:587", f"{host}:{p.submission}"),
        # key/value configs: msmtp, mbsync, offlineimap, getmail, Python
        (r"(?m)^(host|Host|remotehost =|server =) (outlook|smtp)\.office365\.com$", rf"\1 {host}"),
        (r"(?m)^(Port|remoteport =|port =) 993$", rf"\1 {p.imaps}"),
        (r"(?m)^port 587$", f"port {p.submission}"),
        (r"(?m)^port 995$", f"port {p.pop3s}"),
        # Lua (imapfilter)
        (r'(?m)^    server = "outlook\.office365\.com",$', f'    server = "{host}",'),
        (r"(?m)^    port = 993,$", f"    port = {p.imaps},"),
        (r'(?m)^IMAP = \("outlook\.office365\.com", 993\)$', f'IMAP = ("{host}", {p.imaps})'),
        (r'(?m)^POP = \("outlook\.office365\.com", 995\)$', f'POP = ("{host}", {p.pop3s})'),
        (r'(?m)^SMTP = \("smtp\.office365\.com", 587\)$', f'SMTP = ("{host}", {p.submission})'),
        # trust stores (the others read SSL_CERT_FILE / CURL_CA_BUNDLE, see MailStack.user)
        (r"(?m)^tls_trust_file system$", f"tls_trust_file {ca}"),
        (r"(?m)^sslcacertfile = OS-DEFAULT$", f"sslcacertfile = {ca}"),
        # offlineimap's pythonfile: the hook of the package under test
        (rf"(?m)^pythonfile = {re.escape(CONTRIB_HOOK)}$", f"pythonfile = {hook_path()}"),
    ]
    for pattern, repl in rules:
        text = re.sub(pattern, repl, text)
    for line in text.splitlines():
        # Comments may still name Microsoft's hosts; a setting may not.
        if not line.lstrip().startswith("#") and any(h in line for h in MS_HOSTS):
            raise AssertionError(f"localize left a Microsoft host in: {line!r}")
    return text


def write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


def unique(prefix: str) -> str:
    return f"{prefix} {uuid.uuid4().hex[:10]}"


def maildir_subjects(folder: Path) -> set[str]:
    found = set()
    for sub in ("new", "cur"):
        for path in (folder / sub).glob("*") if (folder / sub).is_dir() else []:
            for line in path.read_bytes().decode(errors="replace").splitlines():
                if line.startswith("Subject: "):
                    found.add(line[9:].strip())
                    break
                if not line:
                    break
    return found


def _ok(run: Run) -> Run:
    assert run.returncode == 0, str(run)
    return run


# --- msmtp --------------------------------------------------------------------------------------------------


def msmtp_send(stack: MailStack, env: Env, rc_text: str, *, account: str = "work", method: str = "XOAUTH2") -> Login:
    rc = write(env.home / ".msmtprc", localize(rc_text, stack))
    subject = unique("msmtp")
    mark = stack.server.mark()
    message = f"From: {EMAIL}\nTo: {RCPT}\nSubject: {subject}\n\nSent by msmtp.\n"
    _ok(stack.run(env, ["msmtp", "-C", str(rc), "-a", account, RCPT], input=message))
    received = stack.sink.wait_for(subject)
    assert received.rcpt_tos == (RCPT,) and received.mail_from == EMAIL
    return stack.server.wait_login(mark, "submission", EMAIL, method)


# --- mbsync -------------------------------------------------------------------------------------------------


def mbsync_sync(stack: MailStack, env: Env, rc_text: str, *, channel: str = "work") -> Login:
    rc = write(env.home / ".mbsyncrc", localize(rc_text, stack))
    (env.home / "Mail" / channel).mkdir(parents=True, exist_ok=True)
    subject = stack.seed()
    mark = stack.server.mark()
    run = _ok(stack.run(env, ["mbsync", "-c", str(rc), channel]))
    got = maildir_subjects(env.home / "Mail" / channel / "INBOX")
    assert subject in got, f"{subject!r} not synced (have {got})\n{run}"
    return stack.server.wait_login(mark, "imap", EMAIL, "XOAUTH2")


# --- neomutt / mutt -----------------------------------------------------------------------------------------


def _mutt_args(stack: MailStack, binary: str, rc: Path) -> list[str]:
    # -n skips the system muttrc; the CA goes on the command line so the config stays as written.
    return [binary, "-n", "-F", str(rc), "-e", f'set ssl_ca_certificates_file="{stack.tls.ca_pem}"']


def mutt_send(stack: MailStack, env: Env, binary: str, rc_text: str) -> Login:
    """Batch mode (no terminal): `mutt -s SUBJECT RCPT < body`, as scripts send mail."""
    rc = write(env.home / f".{binary}rc", localize(rc_text, stack))
    subject = unique(binary)
    mark = stack.server.mark()
    _ok(stack.run(env, [*_mutt_args(stack, binary, rc), "-s", subject, "--", RCPT], input=f"Sent by {binary}.\n"))
    received = stack.sink.wait_for(subject)
    assert received.rcpt_tos == (RCPT,)
    return stack.server.wait_login(mark, "submission", EMAIL, "XOAUTH2")


def mutt_open(stack: MailStack, env: Env, binary: str, rc_text: str, *, pop: bool = False) -> Login:
    """Open INBOX (or the POP mailbox) on a terminal and see the seeded message in the index."""
    text = localize(rc_text, stack)
    rc = write(env.home / f".{binary}rc", text)
    subject = stack.seed()
    args = _mutt_args(stack, binary, rc)
    if pop:
        pop_host = re.search(r"(?m)^set pop_host = '([^']+)'$", text)
        assert pop_host, "the config sets no pop_host"
        args += ["-f", pop_host.group(1)]
    mark = stack.server.mark()
    screen = tui(env, args, expect=subject)
    assert subject in screen
    return stack.server.wait_login(mark, "pop3" if pop else "imap", EMAIL, "XOAUTH2")


def tui(
    env: Env,
    args: list[str],
    *,
    expect: str,
    timeout: float = 30.0,
    keys: list[str] | None = None,
    then: Callable[[], object] | None = None,
    extra_env: dict[str, str] | None = None,
) -> str:
    """Run a terminal program in a private tmux server until EXPECT shows on screen; optionally type KEYS and
    call THEN while it still runs. Returns the screen. The program is killed with the server afterwards."""
    sock = str(env.root / f"tmux-{uuid.uuid4().hex[:8]}.sock")
    # The shell wrapper keeps the pane (and any error message) on screen if the program exits early.
    wrapped = f'{shlex.join(args)}; echo "[exited $?]"; sleep 600'
    run_env = {**env.vars, "TERM": "xterm-256color", **(extra_env or {})}
    base = ["tmux", "-S", sock, "-f", "/dev/null"]
    subprocess.run(
        [*base, "new-session", "-d", "-x", "200", "-y", "50", wrapped],
        env=run_env,
        cwd=env.home,
        check=True,
        timeout=15,
    )
    screen = ""

    def wait_for(text: str) -> str:
        end = time.monotonic() + timeout
        shown = ""
        while time.monotonic() < end:
            out = subprocess.run([*base, "capture-pane", "-p"], env=run_env, capture_output=True, text=True, timeout=10)
            shown = out.stdout
            if text in shown:
                return shown
            time.sleep(0.2)
        raise AssertionError(f"{args[0]}: {text!r} never showed on screen; last screen:\n{shown}")

    try:
        screen = wait_for(expect)
        if keys:
            subprocess.run([*base, "send-keys", *keys], env=run_env, check=True, timeout=10)
        if then is not None:
            then()
        return screen
    finally:
        subprocess.run([*base, "kill-server"], env=run_env, capture_output=True, timeout=10)


# --- offlineimap3 -------------------------------------------------------------------------------------------


def offlineimap_sync(stack: MailStack, env: Env, rc_text: str, *, account: str = "work") -> Login:
    rc = write(env.home / ".offlineimaprc", localize(rc_text, stack))
    subject = stack.seed()
    mark = stack.server.mark()
    run = _ok(stack.run(env, ["offlineimap", "-o", "-u", "basic", "-c", str(rc)], timeout=90))
    assert "ERROR" not in run.stdout + run.stderr, str(run)
    got = maildir_subjects(env.home / "Mail" / account / "INBOX")
    assert subject in got, f"{subject!r} not synced (have {got})\n{run}"
    return stack.server.wait_login(mark, "imap", EMAIL, "XOAUTH2")


# --- getmail6 -----------------------------------------------------------------------------------------------


def getmail_fetch(stack: MailStack, env: Env, rc_text: str, *, account: str = "work", service: str = "imap") -> Login:
    text = localize(rc_text, stack)
    maildir = env.home / "Mail" / account
    cleanup = None
    if os.geteuid() == 0:
        # getmail refuses to deliver as root unless told whom to deliver as; that user must reach the folder.
        cleanup = tempfile.mkdtemp(prefix="mailtoken-getmail-")
        os.chmod(cleanup, 0o755)
        maildir = Path(cleanup) / "Maildir"
        text = re.sub(r"(?m)^path = .*$", f"path = {maildir}/\nuser = nobody", text)
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    if cleanup:
        for path in [maildir, *maildir.iterdir()]:
            shutil.chown(path, "nobody")
    getmaildir = env.home / ".config" / "getmail"
    write(getmaildir / "getmailrc", text)
    subject = stack.seed()
    mark = stack.server.mark()
    try:
        run = _ok(stack.run(env, ["getmail", "--getmaildir", str(getmaildir), "--rcfile", "getmailrc"]))
        got = maildir_subjects(maildir)
        assert subject in got, f"{subject!r} not fetched (have {got})\n{run}"
    finally:
        if cleanup:
            shutil.rmtree(cleanup, ignore_errors=True)
    return stack.server.wait_login(mark, service, EMAIL, "XOAUTH2")


# --- fetchmail (password only: through the bridge) ----------------------------------------------------------


def fetchmail_fetch(stack: MailStack, env: Env, proto: str, port: int, password: str) -> Login:
    """fetchmail 6.4 with the block `mailtoken config fetchmail work` prints for the bridge's listener (the
    device password put where it says), delivering to an mbox through an MDA given on the command line."""
    subject = stack.seed()
    out = env.home / f"fetched-{proto.lower()}.mbox"
    block = _ok(stack.run(env, [MAILTOKEN, "config", "fetchmail", "work"])).stdout
    assert f"service {port} protocol {proto}" in block and "DEVICE-PASSWORD" in block, block
    rc = write(env.home / f".fetchmailrc-{proto.lower()}", block.replace("DEVICE-PASSWORD", password))
    mark = stack.server.mark()
    mda = ["--mda", f"/bin/sh -c 'cat >> {out}'"]
    run = _ok(stack.run(env, ["fetchmail", "-f", str(rc), "--nosyslog", "-v", "--all", *mda], timeout=90))
    assert out.exists() and f"Subject: {subject}" in out.read_text(errors="replace"), str(run)
    return stack.server.wait_login(mark, "imap" if proto == "IMAP" else "pop3", EMAIL, "XOAUTH2")


# --- aerc ---------------------------------------------------------------------------------------------------


def aerc_open_and_send(stack: MailStack, env: Env, accounts_text: str) -> tuple[Login, Login]:
    """Open INBOX (the seeded message shows in the list), then send through a mailto: composer."""
    write(env.home / ".config" / "aerc" / "accounts.conf", localize(accounts_text, stack))
    subject = stack.seed()
    mark = stack.server.mark()
    tui(env, ["aerc"], expect=subject)
    imap = stack.server.wait_login(mark, "imap", EMAIL, "XOAUTH2")
    sent = unique("aerc")
    mark = stack.server.mark()
    mailto = f"mailto:{RCPT}?subject={sent.replace(' ', '%20')}&body=Sent%20by%20aerc."
    # EDITOR=true: the composer's editor returns at once and aerc shows its review screen; "y" sends.
    # The sink, not the screen, says it was sent: aerc's "Message sent" status can come late or flash by.
    received = []
    tui(
        env,
        ["aerc", mailto],
        expect="Send this email?",
        keys=["y"],
        then=lambda: received.append(stack.sink.wait_for(sent, timeout=30)),
        extra_env={"EDITOR": "true", "VISUAL": "true"},
    )
    assert received[0].rcpt_tos == (RCPT,)
    return imap, stack.server.wait_login(mark, "submission", EMAIL, "XOAUTH2")


# --- curl ---------------------------------------------------------------------------------------------------


def curl_examples(text: str) -> list[list[str]]:
    """The example calls in a curl block's comments, as argv lists for the shell function."""
    return [shlex.split(line.split("#", 1)[1]) for line in text.splitlines() if re.match(r"#\s+curl_\w+ '", line)]


def curl_all(stack: MailStack, env: Env, block: str) -> dict[str, Login]:
    """Source the block and run each of its examples: IMAP search and fetch, POP retrieve, SMTP send."""
    text = localize(block, stack)
    script = write(env.home / "mailtoken-curl.sh", text)
    subject = stack.seed()
    sent = unique("curl")
    write(env.home / "message.eml", f"From: {EMAIL}\nTo: {RCPT}\nSubject: {sent}\n\nSent by curl.\n")
    logins: dict[str, Login] = {}
    outputs = []
    for argv in curl_examples(text):
        mark = stack.server.mark()
        # The message file and recipient of the SMTP example are the test's.
        argv = [RCPT if a == "bob@example.org" else a for a in argv]
        run = _ok(stack.run(env, ["sh", "-c", f'. "$0" && {shlex.join(argv)}', str(script)]))
        # The token never goes on curl's command line: the function feeds it on stdin.
        assert stack.token(env) not in " ".join(argv)
        outputs.append(run.stdout)
        service = {"imaps": "imap", "pop3s": "pop3", "smtp": "submission"}[argv[1].split(":")[0]]
        login = wait_any_method(stack, mark, service)
        logins[argv[1].split("/")[-1] or service] = login
    joined = "\n".join(outputs)
    # SEARCH lists the seeded message; the IMAP fetch and the POP retrieve each show a message.
    assert re.search(r"^\* SEARCH( \d+)+", joined, re.M), joined
    assert joined.count("Subject: seed ") >= 2, joined
    del subject
    stack.sink.wait_for(sent)
    return logins


def wait_any_method(stack: MailStack, mark: int, service: str, timeout: float = 10.0) -> Login:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for login in stack.server.logins(mark):
            if login.service == service and login.user == EMAIL:
                return login
        time.sleep(0.05)
    raise AssertionError(f"no {service} login after mark:\n{stack.server.log_since(mark)}")


# --- Python -------------------------------------------------------------------------------------------------


def python_example(stack: MailStack, env: Env, source: str) -> dict[str, Login]:
    script = write(env.home / "mailtoken_mail.py", localize(source, stack))
    subject = unique("smtplib")
    mark = stack.server.mark()
    run = _ok(stack.run(env, [sys.executable, str(script), "work", EMAIL, "--send", RCPT, "--subject", subject]))
    assert re.search(r"^IMAP INBOX: \d+ messages$", run.stdout, re.M), str(run)
    assert re.search(r"^POP: \d+ messages$", run.stdout, re.M), str(run)
    stack.sink.wait_for(subject)
    return {
        service: stack.server.wait_login(mark, service, EMAIL, "XOAUTH2") for service in ("imap", "pop3", "submission")
    }


# contrib/ file for each generator: the block `mailtoken config CLIENT work` prints for SAMPLE_ACCOUNT, with
# the helper called as plain `mailtoken` and the offlineimap hook at CONTRIB_HOOK.
CONTRIB_FILES = {
    "msmtp": "msmtp/msmtprc",
    "mbsync": "mbsync/mbsyncrc",
    "neomutt": "neomutt/neomuttrc",
    "mutt": "mutt/muttrc",
    "offlineimap3": "offlineimap/offlineimaprc",
    "getmail6": "getmail/getmailrc",
    "aerc": "aerc/accounts.conf",
    "curl": "curl/mailtoken-curl.sh",
    "mpop": "mpop/mpoprc",
    "s-nail": "s-nail/mailrc",
    "imapfilter": "imapfilter/config.lua",
}


def contrib(client: str) -> str:
    return (CONTRIB / CONTRIB_FILES[client]).read_text()


def sample_account():
    from mailtoken.config import Account

    return Account(name="work", email=EMAIL, client_id="11111111-2222-3333-4444-555555555555")


def contrib_text(client: str) -> str:
    """What contrib/ must hold for CLIENT: the generator's block for the sample account."""
    from mailtoken import clientconf

    return clientconf.render(client, sample_account(), helper="mailtoken", hook=CONTRIB_HOOK) + "\n"
