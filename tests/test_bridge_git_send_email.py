"""Issue 15, last point: git send-email through `mailtoken serve` to the suite's Dovecot submission (XOAUTH2 only).

Debian 12's Authen::SASL (2.1600) has no XOAUTH2 (it came in 2.1800), so git send-email there cannot use a
token itself: it logs in to the bridge with `smtpAuth = PLAIN` and a device password, from git's credential
helper, and the bridge signs in upstream with XOAUTH2.
"""

from __future__ import annotations

import subprocess
import urllib.parse
from pathlib import Path

import pytest

from tests.conftest import EMAIL, require
from tests.servers import drivers
from tests.servers.bridge import BridgeProcess, ServeTable
from tests.servers.stack import MailStack

TO, CC = "bob@example.org", "carol@example.org"


@pytest.mark.parametrize("local_tls", ["none", "starttls"])
def test_git_send_email_series_with_cc_through_the_bridge_signs_in_upstream_with_xoauth2(
    mailstack: MailStack, tmp_path: Path, local_tls: str
) -> None:
    require("git", "/usr/lib/git-core/git-send-email")
    sasl = subprocess.run(["perl", "-MAuthen::SASL", "-e", "1"], capture_output=True, text=True)
    assert sasl.returncode == 0, f"git send-email's AUTH needs Authen::SASL (libauthen-sasl-perl): {sasl.stderr}"
    user = mailstack.user("bridge-git")
    upstream = f"127.0.0.1:{mailstack.server.ports.submission}"
    table = ServeTable("smtp", upstream=upstream, upstream_tls="starttls", local_tls=local_tls)
    with BridgeProcess(user, [table]) as bridge:
        password = bridge.password(f"git-{local_tls}")
        cert = user.state_dir / "serve" / "cert.pem"
        # The password goes to git's credential store (a 0600 file), never on a command line.
        credentials = drivers.write(
            tmp_path / "git-credentials",
            f"smtp://{urllib.parse.quote(EMAIL, safe='')}:{urllib.parse.quote(password, safe='')}"
            f"@127.0.0.1:{table.port}\n",
        )
        # git's smtpEncryption "tls" is STARTTLS, verified here against the bridge's generated certificate.
        tls = f"\tsmtpEncryption = tls\n\tsmtpSSLCertPath = {cert}\n" if local_tls == "starttls" else ""
        gitconfig = drivers.write(
            tmp_path / "gitconfig",
            f"[user]\n\tname = Alice\n\temail = {EMAIL}\n"
            f"[sendemail]\n\tsmtpServer = 127.0.0.1\n\tsmtpServerPort = {table.port}\n"
            f"\tsmtpUser = {EMAIL}\n\tsmtpAuth = PLAIN\n{tls}"
            f"[credential]\n\thelper = store --file={credentials}\n",
        )
        git_env = {"GIT_CONFIG_GLOBAL": str(gitconfig), "GIT_CONFIG_NOSYSTEM": "1"}
        repo = tmp_path / "repo"
        repo.mkdir()

        def git(*args: str) -> str:
            run = mailstack.run(user, ["git", *args], cwd=repo, extra_env=git_env, timeout=120)
            assert run.returncode == 0, f"{run}\n{bridge.log()}"
            return run.stdout

        git("init", "-q")
        tag = drivers.unique(f"git-{local_tls}")
        for n in (1, 2):
            (repo / f"f{n}.txt").write_text(f"change {n}\n")
            git("add", ".")
            git("commit", "-q", "-m", f"{tag} step {n}")
        patches = git("format-patch", "-2", "-o", str(tmp_path / "out")).split()
        mark = mailstack.server.mark()
        git("send-email", "--confirm=never", "--suppress-cc=all", f"--to={TO}", f"--cc={CC}", *patches)
        for n in (1, 2):
            received = mailstack.sink.wait_for(f"[PATCH {n}/2] {tag} step {n}")
            assert received.mail_from == EMAIL and sorted(received.rcpt_tos) == [TO, CC]
        mailstack.server.wait_login(mark, "submission", EMAIL, "XOAUTH2")
        bridge.wait_log("ok, upstream signed in")
        assert password not in bridge.log()
