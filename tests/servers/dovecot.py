"""A private Dovecot 2.3 for the tests: own config, base_dir, state, log and mail in a temp dir.

Listens on 127.0.0.1 only, on ports chosen at run time: IMAP (STARTTLS), IMAPS, POP3 (STLS), POP3S and
submission (STARTTLS) relaying to an SMTP sink. It authenticates with XOAUTH2/OAUTHBEARER only, through the
oauth2 passdb asking the fake identity platform's introspection endpoint, with no auth cache. It is started
with `dovecot -F -c CONF` and stopped by its PID; a system Dovecot is never touched.

As root, Dovecot's own users (dovenull, dovecot) run the login and auth processes and mail belongs to
`nobody`, which must reach the files: the whole tree then lives in a world-traversable temp dir. As any other
user, every process runs as that user, with no chroot.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.servers.ports import free_port, wait_listening
from tests.servers.tls import HOST, TestTLS

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
DOVEADM = shutil.which("doveadm") or "/usr/bin/doveadm"

# "imap-login: Info: Login: user=<alice@contoso.com>, method=XOAUTH2, rip=127.0.0.1, ..., TLS, session=<...>"
_LOGIN = re.compile(r"(?P<service>[\w-]+)-login: Info: Login: user=<(?P<user>[^>]*)>, method=(?P<method>[\w-]+)")
# "pop3-login: Info: Disconnected: Aborted login by logging out (auth failed, 1 attempts in 2 secs): user=<...>,
#  method=XOAUTH2, ..." (the wording before "(auth failed" varies with how the client left)
_FAILED = re.compile(
    r"(?P<service>[\w-]+)-login: Info: Disconnected\b.*?\(auth failed[^)]*\):? user=<(?P<user>[^>]*)>, "
    r"method=(?P<method>[\w-]+)"
)


@dataclass(frozen=True)
class Ports:
    imap: int
    imaps: int
    pop3: int
    pop3s: int
    submission: int


@dataclass(frozen=True)
class Login:
    service: str  # imap, pop3, submission
    user: str
    method: str  # XOAUTH2, OAUTHBEARER
    line: str


class Dovecot:
    host = HOST

    def __init__(self, workdir: Path, *, introspect_url: str, tls: TestTLS, relay_port: int) -> None:
        self.introspect_url = introspect_url
        self.tls = tls
        self.relay_port = relay_port
        self.ports = Ports(*(free_port() for _ in range(5)))
        self._root_tmp: str | None = None
        if os.geteuid() == 0:
            # The unprivileged services must traverse every parent: pytest's basetemp is 0700.
            self._root_tmp = tempfile.mkdtemp(prefix="mailtoken-dovecot-")
            os.chmod(self._root_tmp, 0o755)
            self.dir = Path(self._root_tmp)
        else:
            self.dir = workdir
            self.dir.mkdir(parents=True, exist_ok=True)
        self.conf = self.dir / "dovecot.conf"
        self.log = self.dir / "dovecot.log"
        self.mail_root = self.dir / "mail"
        self.proc: subprocess.Popen[bytes] | None = None

    # -- lifecycle -------------------------------------------------------------------------------------

    def start(self, timeout: float = 20.0, tries: int = 3) -> Dovecot:
        """Start on the chosen ports; when it exits during startup (another process took a port between
        free_port() and the bind, which parallel test workers make likely), again on fresh ports."""
        for attempt in range(tries):
            try:
                return self._start(timeout)
            except RuntimeError:
                if attempt == tries - 1:
                    raise
                self.ports = Ports(*(free_port() for _ in range(5)))
        raise AssertionError("unreachable")

    def _start(self, timeout: float) -> Dovecot:
        self._write_config()
        stderr = open(self.dir / "stderr.log", "wb")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(
            [DOVECOT, "-F", "-c", str(self.conf)],
            stdin=subprocess.DEVNULL,
            stdout=stderr,
            stderr=stderr,
            start_new_session=True,  # a Ctrl-C in pytest must not reach it before stop() does
        )
        stderr.close()
        try:
            alive = lambda: self.proc is not None and self.proc.poll() is None  # noqa: E731
            for port in (self.ports.imap, self.ports.imaps, self.ports.pop3s, self.ports.submission):
                wait_listening(self.host, port, timeout, alive=alive)
        except (RuntimeError, TimeoutError) as exc:
            why = self.diagnostics()  # before stop(), which removes the folder the logs are in
            self._halt()
            raise RuntimeError(f"dovecot did not start: {exc}\n{why}") from None
        return self

    def _halt(self) -> None:
        """Stop the process but keep the folder (a retry writes its config there again)."""
        self.begin_stop()
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)

    def stop(self) -> None:
        self._halt()
        if self._root_tmp is not None:
            shutil.rmtree(self._root_tmp, ignore_errors=True)
            self._root_tmp = None

    def begin_stop(self) -> None:
        """Ask the master to stop (it takes its children down, in about a second); stop() waits for it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def __enter__(self) -> Dovecot:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def diagnostics(self) -> str:
        parts = []
        for name in ("stderr.log", "dovecot.log"):
            path = self.dir / name
            if path.exists():
                parts.append(f"--- {name}\n{path.read_text(errors='replace')[-4000:]}")
        return "\n".join(parts)

    # -- mail ------------------------------------------------------------------------------------------

    def deliver(self, user: str, message: bytes, mailbox: str = "INBOX") -> None:
        """Store a message the way Dovecot itself would (right owner, indexes updated)."""
        result = subprocess.run(
            [DOVEADM, "-c", str(self.conf), "save", "-u", user, "-m", mailbox],
            input=message,
            capture_output=True,
            timeout=30,
        )
        if result.returncode != 0:
            raise RuntimeError(f"doveadm save failed: {result.stderr.decode(errors='replace')}")

    def maildir(self, user: str) -> Path:
        return self.mail_root / user.lower() / "Maildir"

    # -- log -------------------------------------------------------------------------------------------

    def mark(self) -> int:
        """A position in the log; pass it to logins()/wait_login() to see only what came after."""
        return self.log.stat().st_size if self.log.exists() else 0

    def log_since(self, mark: int) -> str:
        with open(self.log, "rb") as fh:
            fh.seek(mark)
            return fh.read().decode(errors="replace")

    def logins(self, mark: int = 0) -> list[Login]:
        return [
            Login(m["service"], m["user"], m["method"], line)
            for line in self.log_since(mark).splitlines()
            if (m := _LOGIN.search(line))
        ]

    def failed_logins(self, mark: int = 0) -> list[Login]:
        return [
            Login(m["service"], m["user"], m["method"], line)
            for line in self.log_since(mark).splitlines()
            if (m := _FAILED.search(line))
        ]

    def wait_login(self, mark: int, service: str, user: str, method: str, timeout: float = 10.0) -> Login:
        """Dovecot's own `Login: user=<U>, method=M` line for SERVICE after MARK (the log process may lag)."""
        end = time.monotonic() + timeout
        while True:
            for login in self.logins(mark):
                if login.service == service and login.user == user and login.method == method:
                    return login
            if time.monotonic() > end:
                raise AssertionError(
                    f"no '{service}-login: Login: user=<{user}>, method={method}' in the Dovecot log; new lines:\n"
                    + self.log_since(mark)[-3000:]
                )
            time.sleep(0.05)

    def wait_failed(self, mark: int, service: str, timeout: float = 30.0) -> Login:
        end = time.monotonic() + timeout
        while True:
            for login in self.failed_logins(mark):
                if login.service == service:
                    return login
            if time.monotonic() > end:
                raise AssertionError(f"no failed {service} login in the Dovecot log:\n{self.log_since(mark)[-3000:]}")
            time.sleep(0.05)

    # -- config ----------------------------------------------------------------------------------------

    def _write_config(self) -> None:
        d = self.dir
        (d / "state").mkdir(exist_ok=True)
        self.mail_root.mkdir(exist_ok=True)
        oauth2 = d / "dovecot-oauth2.conf.ext"
        oauth2.write_text(
            # No tokeninfo_url: Dovecot then goes straight to introspection.
            "introspection_mode = post\n"
            f"introspection_url = {self.introspect_url}\n"
            "username_attribute = username\n"
            "active_attribute = active\n"
            "active_value = true\n"
            "timeout_msecs = 10000\n"
        )
        if os.geteuid() == 0:
            mail_user = pwd.getpwnam("nobody")
            mail_uid, mail_gid = mail_user.pw_uid, mail_user.pw_gid
            os.chown(self.mail_root, mail_uid, mail_gid)
            users = ""
        else:
            mail_uid, mail_gid = os.getuid(), os.getgid()
            me, my_group = pwd.getpwuid(mail_uid).pw_name, grp.getgrgid(mail_gid).gr_name
            users = (
                f"default_login_user = {me}\ndefault_internal_user = {me}\ndefault_internal_group = {my_group}\n"
                + "".join(f"service {name} {{\n  chroot =\n}}\n" for name in ("anvil", "imap-urlauth-login"))
                + "service auth-worker {\n  user = $default_internal_user\n}\n"
            )
        dh = "/usr/share/dovecot/dh.pem"
        p = self.ports
        self.conf.write_text(
            f"""# Written by tests/servers/dovecot.py; nothing here is read from /etc/dovecot.
base_dir = {d}/run
state_dir = {d}/state
instance_name = mailtoken-test-{p.imap}
log_path = {self.log}
info_log_path = {self.log}
listen = {self.host}
protocols = imap pop3 submission
hostname = mail.test
postmaster_address = postmaster@mail.test
ssl = yes
ssl_cert = <{self.tls.cert_pem}
ssl_key = <{self.tls.key_pem}
{f"ssl_dh = <{dh}" if os.path.exists(dh) else ""}
# Bearer tokens are plaintext credentials: refused before STARTTLS, as at Microsoft.
disable_plaintext_auth = yes
auth_mechanisms = xoauth2 oauthbearer
# Every login must really ask the identity platform.
auth_cache_size = 0
first_valid_uid = 1
first_valid_gid = 1
{users}
mail_location = maildir:~/Maildir
passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {oauth2}
}}
userdb {{
  # Any user the token names exists (the oauth2 passdb cannot answer userdb lookups).
  driver = static
  args = allow_all_users=yes uid={mail_uid} gid={mail_gid} home={self.mail_root}/%Lu
}}
service imap-login {{
  {"chroot =" if users else ""}
  inet_listener imap {{
    address = {self.host}
    port = {p.imap}
  }}
  inet_listener imaps {{
    address = {self.host}
    port = {p.imaps}
    ssl = yes
  }}
}}
service pop3-login {{
  {"chroot =" if users else ""}
  inet_listener pop3 {{
    address = {self.host}
    port = {p.pop3}
  }}
  inet_listener pop3s {{
    address = {self.host}
    port = {p.pop3s}
    ssl = yes
  }}
}}
service submission-login {{
  {"chroot =" if users else ""}
  inet_listener submission {{
    address = {self.host}
    port = {p.submission}
  }}
}}
# Nothing else may listen: no doveadm/lmtp TCP listeners, no port clashes with a system Dovecot.
service lmtp {{
  unix_listener lmtp {{
    mode = 0600
  }}
}}
submission_relay_host = {self.host}
submission_relay_port = {self.relay_port}
submission_relay_ssl = no
# Tests open many sessions of one user at once (the bridge's 20 parallel submissions share one refresh):
# Dovecot's default of 10 per user and address would refuse some of them, as it did once under load.
protocol imap {{
  mail_max_userip_connections = 50
}}
protocol pop3 {{
  mail_max_userip_connections = 50
}}
protocol submission {{
  mail_max_userip_connections = 50
}}
pop3_uidl_format = %08Xu%08Xv
"""
        )
