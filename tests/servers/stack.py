"""The whole mail stack for client tests: fake identity platform, Dovecot, SMTP sink, signed-in users.

One per test module (see the `mailstack` fixture in conftest). The clients run as real programs, with the
environment of a signed-in user (`Env.vars`) and the venv's bin first on PATH, so the `mailtoken` inside
their configs is the code under test.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

from tests.conftest import BIN_DIR, EMAIL, Env
from tests.fakes.entra import FakeEntra
from tests.servers.dovecot import DOVECOT, Dovecot
from tests.servers.smtp_sink import SmtpSink
from tests.servers.tls import HOST, TestTLS

# Short enough for clients that put a SASL initial response on the AUTH command line (submission-login refuses
# lines over 1,024 bytes; neomutt's OAUTHBEARER reads at most ~510 characters), long enough to be realistic.
SHORT_TOKEN = 400
# What Entra issues for Exchange Online.
LONG_TOKEN = 2500


@dataclass
class Run:
    """A finished client run: what it printed, for assertion messages."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return f"$ {' '.join(self.args)}\nexit {self.returncode}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


class MailStack:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.tls = TestTLS(root / "tls")
        self.fake = FakeEntra(root / "fake")
        self.sink = SmtpSink()
        self.dovecot: Dovecot | None = None
        self.users: dict[str, Env] = {}

    def start(self) -> MailStack:
        self.fake.start()
        self.fake.add_user(EMAIL)
        self.sink.start()
        self.dovecot = Dovecot(
            self.root / "dovecot", introspect_url=self.fake.introspect_url, tls=self.tls, relay_port=self.sink.port
        ).start()
        return self

    def stop(self) -> None:
        if self.dovecot is not None:
            self.dovecot.stop()
        self.sink.stop()
        self.fake.stop()

    def __enter__(self) -> MailStack:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @contextmanager
    def spare_dovecots(self, name: str, count: int = 3) -> Iterator[list[Dovecot]]:
        """More Dovecots on the same identity platform and sink, for refused logins: one failure each.

        Dovecot delays every login from an address after a failed one (2 s, then 4, 8, up to 15 s), so refused
        logins must not share the module's main instance, nor one instance with each other."""
        spares = [
            Dovecot(
                self.root / f"dovecot-{name}-{i}",
                introspect_url=self.fake.introspect_url,
                tls=self.tls,
                relay_port=self.sink.port,
            )
            for i in range(count)
        ]
        try:
            for spare in spares:
                spare.start()
            yield spares
        finally:
            for spare in spares:
                spare.begin_stop()  # all at once: each master takes about a second
            for spare in spares:
                spare.stop()

    @property
    def server(self) -> Dovecot:
        assert self.dovecot is not None
        return self.dovecot

    # -- users -----------------------------------------------------------------------------------------

    def user(self, name: str = "short", token_length: int = SHORT_TOKEN, account: str = "work") -> Env:
        """A signed-in user (HOME of its own) whose account ACCOUNT gets tokens of TOKEN_LENGTH characters."""
        if name in self.users:
            return self.users[name]
        folder = self.root / f"user-{name}"
        folder.mkdir(parents=True)
        env = Env(folder)
        env.vars["REQUESTS_CA_BUNDLE"] = self.fake.ca_pem  # mailtoken (requests/msal) -> fake identity platform
        # The mail clients' "system" trust store: OpenSSL, Python and Go read SSL_CERT_FILE, the curl tool
        # CURL_CA_BUNDLE. GnuTLS clients (msmtp, mutt) get the file by path.
        env.vars["SSL_CERT_FILE"] = env.vars["CURL_CA_BUNDLE"] = str(self.tls.ca_pem)
        # The configs call plain `mailtoken`: it must be the venv's script.
        env.vars["PATH"] = f"{BIN_DIR}{os.pathsep}{env.vars.get('PATH', '/usr/bin:/bin')}"
        # Programs in /usr/sbin (dovecot) are not on a user's PATH; tests find them by absolute path.
        # Clients killed at the end of a test (aerc, neomutt) leave their temp files behind: keep them here.
        tmp = folder / "tmp"
        tmp.mkdir(mode=0o700)
        env.vars["TMPDIR"] = str(tmp)
        env.add_account(account, authority=self.fake.authority())
        self.fake.set(token_length=token_length, auto_approve=EMAIL)
        try:
            result = env.run("login", account, timeout=60)
        finally:
            self.fake.set(auto_approve=None, token_length=SHORT_TOKEN)
        assert result.returncode == 0, result.stderr
        token = env.run("token", account).stdout.strip()
        assert len(token) == token_length, len(token)
        self.users[name] = env
        return env

    def token(self, env: Env, account: str = "work") -> str:
        result = env.run("token", account)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    # -- mail ------------------------------------------------------------------------------------------

    def seed(self, user: str = EMAIL, subject: str | None = None) -> str:
        """Put a message with a unique Subject into USER's INBOX; returns the Subject."""
        subject = subject or f"seed {uuid.uuid4().hex[:12]}"
        msg = EmailMessage()
        msg["From"] = "Bob <bob@example.net>"
        msg["To"] = user
        msg["Subject"] = subject
        msg["Message-ID"] = f"<{uuid.uuid4().hex}@example.net>"
        msg.set_content(f"Hello from the test suite ({subject}).\n")
        self.server.deliver(user, bytes(msg))
        return subject

    # -- running clients -------------------------------------------------------------------------------

    def run(
        self,
        env: Env,
        args: list[str],
        *,
        timeout: float = 60,
        input: str | bytes | None = None,
        cwd: Path | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> Run:
        """Run a client program as the signed-in user (no terminal; stdin closed unless INPUT is given)."""
        text = not isinstance(input, bytes)
        try:
            result = subprocess.run(
                args,
                input=input,
                stdin=subprocess.DEVNULL if input is None else None,
                capture_output=True,
                text=text,
                timeout=timeout,
                env={**env.vars, **(extra_env or {})},
                cwd=cwd or env.home,
            )
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(
                f"{args[0]} did not finish in {timeout} s\n{exc.stdout!r}\n{exc.stderr!r}\n"
                f"{self.server.log_since(0)[-2000:]}"
            ) from None
        out, err = result.stdout, result.stderr
        if isinstance(out, bytes):
            out, err = out.decode(errors="replace"), err.decode(errors="replace")
        return Run([str(a) for a in args], result.returncode, out, err)


def wait_until(predicate, timeout: float, what: str, interval: float = 0.1):
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


__all__ = ["DOVECOT", "HOST", "LONG_TOKEN", "SHORT_TOKEN", "MailStack", "Run", "wait_until"]
