"""Issue 13: the LAN case for real. A network namespace made by the test plays the printer (and a stranger);
a veth pair with addresses from 198.18.0.0/15 (RFC 2544's test range) joins it to the bridge, which listens
on its end with local STARTTLS and `allow` admitting the printer's address only. Traffic stays on that pair.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.conftest import EMAIL, IN_CI, Env, require
from tests.servers import drivers
from tests.servers.bridge import BridgeProcess, ServeTable
from tests.servers.stack import MailStack

IP = shutil.which("ip") or "/usr/sbin/ip"


@dataclass(frozen=True)
class Lan:
    ns: str
    bridge_ip: str
    printer_ip: str
    stranger_ip: str


def _ip(*args: str) -> None:
    result = subprocess.run([IP, *args], capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")


@pytest.fixture
def lan() -> Iterator[Lan]:
    require(IP)
    if os.geteuid() != 0:
        message = "network namespaces need root (CAP_NET_ADMIN)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    tag = uuid.uuid4().hex[:6]
    ns, host_end, ns_end = f"mtb-{tag}", f"mtb{tag}h", f"mtb{tag}p"
    subnet = f"198.18.{int(tag[:2], 16)}"
    _ip("netns", "add", ns)
    try:
        _ip("link", "add", host_end, "type", "veth", "peer", "name", ns_end)
        _ip("link", "set", ns_end, "netns", ns)
        _ip("addr", "add", f"{subnet}.1/24", "dev", host_end)
        _ip("link", "set", host_end, "up")
        for address in (f"{subnet}.2/24", f"{subnet}.3/24"):
            _ip("-n", ns, "addr", "add", address, "dev", ns_end)
        _ip("-n", ns, "link", "set", ns_end, "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        yield Lan(ns, f"{subnet}.1", f"{subnet}.2", f"{subnet}.3")
    finally:
        subprocess.run([IP, "link", "del", host_end], capture_output=True, timeout=30)
        subprocess.run([IP, "netns", "del", ns], capture_output=True, timeout=30)


CLIENT = """
import smtplib, ssl, sys
host, port, source, cafile, user, password, subject = sys.argv[1:8]
try:
    smtp = smtplib.SMTP(host, int(port), "printer.lan", timeout=20, source_address=(source, 0))
    smtp.starttls(context=ssl.create_default_context(cafile=cafile))
    smtp.login(user, password)
    smtp.sendmail(user, ["bob@example.org"], f"Subject: {subject}\\r\\n\\r\\nScan attached.\\r\\n")
    smtp.quit()
    print("sent")
except (OSError, smtplib.SMTPException) as exc:
    print("refused", type(exc).__name__)
"""


def _printer(stack: MailStack, env: Env, lan: Lan, source: str, port: int, password: str, subject: str) -> str:
    cafile = env.state_dir / "serve" / "cert.pem"
    args = [lan.bridge_ip, str(port), source, str(cafile), EMAIL, password, subject]
    run = stack.run(env, [IP, "netns", "exec", lan.ns, sys.executable, "-c", CLIENT, *args], timeout=60)
    assert run.returncode == 0, str(run)
    return run.stdout.strip()


def test_lan_printer_is_admitted_over_starttls_and_a_stranger_is_dropped(mailstack: MailStack, lan: Lan) -> None:
    env = mailstack.user("bridge-lan")
    table = ServeTable(
        "smtp",
        host=lan.bridge_ip,
        upstream=f"127.0.0.1:{mailstack.server.ports.submission}",
        upstream_tls="starttls",
        local_tls="starttls",
        allow=[f"{lan.printer_ip}/32"],
    )
    bridge = BridgeProcess(env, [table])
    password = bridge.password("printer")
    bridge.start(wait=False)
    try:
        bridge.wait_log(f"smtp {lan.bridge_ip}:{table.port}: listening")
        subject = drivers.unique("scan")
        mark = mailstack.server.mark()
        assert _printer(mailstack, env, lan, lan.printer_ip, table.port, password, subject) == "sent", bridge.log()
        assert mailstack.sink.wait_for(subject).mail_from == EMAIL
        mailstack.server.wait_login(mark, "submission", EMAIL, "XOAUTH2")
        assert f"{lan.printer_ip}:" in bridge.wait_log("ok, upstream signed in")
        stranger = _printer(mailstack, env, lan, lan.stranger_ip, table.port, password, "never")
        assert stranger.startswith("refused"), stranger
        assert f"{lan.stranger_ip}:" in bridge.wait_log("dropped (not in allow)")
    finally:
        bridge.stop()
