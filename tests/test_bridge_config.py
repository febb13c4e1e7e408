"""Issue 13: `[[serve]]` validation, `mailtoken serve passwd/list/revoke`, and serve's exits and signals."""

from __future__ import annotations

import base64
import contextlib
import json
import re
import signal
import smtplib
import socket
import stat
import subprocess
import threading
import time
from pathlib import Path

import pytest

from mailtoken import config
from mailtoken.errors import ConfigError
from tests.conftest import EMAIL, MAILTOKEN, Env, require
from tests.servers.bridge import BridgeProcess, ServeTable

ROOT = Path(__file__).resolve().parent.parent
ACCOUNT = f'[accounts.work]\nemail = "{EMAIL}"\nclient_id = "x"\n'


def parse(serve: str, accounts: str = ACCOUNT):
    return config.parse(accounts + serve, "/cfg.toml")


def refused(serve: str) -> str:
    with pytest.raises(ConfigError) as exc:
        parse(serve)
    assert exc.value.exit_code == 78
    return exc.value.message


def test_defaults_loopback_port_account_and_allow() -> None:
    (lst,) = parse('[[serve]]\nprotocol = "imap"\n').serve
    assert (lst.host, lst.port, lst.account, lst.local_tls) == ("127.0.0.1", 1143, "work", "none")
    assert lst.allows("127.0.0.1") and lst.allows("::1") and not lst.allows("192.168.1.20")
    (lst,) = parse('[[serve]]\nprotocol = "smtp"\nupstream = "smtp.example.org:465"\n').serve
    assert lst.upstream_tls == "implicit" and lst.port == 1587


def test_errors_name_the_file_the_table_and_the_key_with_the_closest_one() -> None:
    msg = refused('[[serve]]\nprotocol = "smtp"\n[[serve]]\nprotocol = "pop3"\nlisten = "1110"\nupstrem = "x"\n')
    assert msg == "/cfg.toml: [[serve]] #2 (pop3) upstrem: unknown key (did you mean 'upstream'?)"
    assert "did you mean 'imap'" in refused('[[serve]]\nprotocol = "imapp"\n')
    assert "[[serve]] #1 (smtp) account: no account 'wrok' (did you mean 'work'?)" in refused(
        '[[serve]]\nprotocol = "smtp"\naccount = "wrok"\n'
    )
    assert "listen" in refused('[[serve]]\nprotocol = "smtp"\nlisten = "127.0.0.1:99999"\n')
    assert "allow" in refused('[[serve]]\nprotocol = "smtp"\nallow = ["not-a-net"]\n')
    assert "also the listen address of [[serve]] #1" in refused(
        '[[serve]]\nprotocol = "smtp"\n[[serve]]\nprotocol = "imap"\nlisten = "127.0.0.1:1587"\n'
    )


def test_a_lan_address_without_tls_needs_allow_plaintext() -> None:
    lan = '[[serve]]\nprotocol = "smtp"\nlisten = "192.168.1.5:1587"\nallow = ["192.168.1.0/24"]\n'
    assert "allow_plaintext = true" in refused(lan)
    assert parse(lan + "allow_plaintext = true\n").serve[0].allow_plaintext
    assert parse(lan + 'local_tls = "starttls"\n').serve[0].local_tls == "starttls"


def test_serve_with_a_bad_table_exits_78_naming_it(env: Env) -> None:
    env.write_config(ACCOUNT + '[[serve]]\nprotocol = "smtp"\nlocal_tls = "nope"\n')
    result = env.run("serve")
    assert result.returncode == 78
    assert f"{env.config_path}: [[serve]] #1 (smtp) local_tls: must be one of none, starttls, implicit" in result.stderr


def test_passwd_prints_only_the_password_and_stores_a_private_slow_hash(env: Env) -> None:
    env.write_config(ACCOUNT)
    result = env.run("serve", "passwd", "printer", "--account", "work")
    assert result.returncode == 0, result.stderr
    password = result.stdout.strip()
    assert result.stdout == password + "\n" and len(password) >= 20
    store = env.state_dir / "serve" / "passwords.json"
    assert stat.S_IMODE(store.stat().st_mode) == 0o600
    data = json.loads(store.read_text())
    assert password not in store.read_text() and data["devices"]["printer"]["n"] >= 1 << 17
    listing = env.run("serve", "list")
    assert "printer" in listing.stdout and "work" in listing.stdout and password not in listing.stdout
    assert env.run("serve", "passwd", "printer", "--account", "nope").returncode == 78
    assert env.run("serve", "revoke", "printer").returncode == 0
    assert env.run("serve", "revoke", "printer").returncode == 64
    assert "no devices" in env.run("serve", "list").stdout


def test_a_port_in_use_exits_75_naming_the_listener(env: Env) -> None:
    env.write_config(ACCOUNT)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        BridgeProcess(env, [ServeTable("smtp", port=port, upstream="127.0.0.1:587")])
        result = env.run("serve", timeout=30)
    assert result.returncode == 75, result.stderr
    assert f"smtp 127.0.0.1:{port}: cannot listen" in result.stderr


def _slow_upstream(sock: socket.socket, delay: float) -> None:
    """Greet each connection after DELAY and offer no STARTTLS (the bridge then answers 454)."""

    def serve(conn: socket.socket) -> None:
        with conn:
            time.sleep(delay)
            conn.sendall(b"220 slow.example ESMTP\r\n")
            conn.recv(1000)
            conn.sendall(b"250 slow.example\r\n")
            conn.recv(1000)

    with contextlib.suppress(OSError):
        while True:
            threading.Thread(target=serve, args=(sock.accept()[0],), daemon=True).start()


def test_sigterm_lets_an_open_session_finish_and_notify_socket_hears_ready_and_stopping(
    signed_in: Env, tmp_path
) -> None:
    """A login waiting on a slow upstream is open when SIGTERM comes: it gets its reply, then serve exits 0."""
    env = signed_in
    notify_path = str(tmp_path / "notify.sock")
    notices = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notices.bind(notify_path)
    notices.settimeout(20)
    upstream = socket.socket()
    upstream.bind(("127.0.0.1", 0))
    upstream.listen()
    table = ServeTable("smtp", upstream=f"127.0.0.1:{upstream.getsockname()[1]}", upstream_tls="starttls")
    bridge = BridgeProcess(env, [table], extra_env={"NOTIFY_SOCKET": notify_path})
    try:
        password = bridge.password("slow")
        threading.Thread(target=_slow_upstream, args=(upstream, 3.0), daemon=True).start()
        bridge.start()
        assert notices.recv(100) == b"READY=1"
        client = smtplib.SMTP("127.0.0.1", table.port, "localhost", timeout=30)
        client.ehlo()
        client.putcmd("AUTH", "PLAIN " + base64.b64encode(f"\0{EMAIL}\0{password}".encode()).decode())
        bridge.wait_log("connect")
        time.sleep(1.0)  # the password is checked; the bridge now waits for the slow upstream's greeting
        assert bridge.proc is not None
        bridge.proc.send_signal(signal.SIGTERM)
        assert notices.recv(100) == b"STOPPING=1"
        try:
            code, text = client.getreply()
        except smtplib.SMTPServerDisconnected:
            raise AssertionError(bridge.log()) from None
        assert code == 454 and b"STARTTLS" in text, (code, text)
        client.close()
        assert bridge.proc.wait(20) == 0
        assert "stopped" in bridge.log()
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", table.port), timeout=2)
    finally:
        bridge.stop()
        notices.close()
        upstream.close()


def test_dropped_at_accept_when_not_allowed(env: Env) -> None:
    env.write_config(ACCOUNT)
    table = ServeTable("smtp", upstream="127.0.0.1:587", allow=["10.0.0.0/8"])
    with BridgeProcess(env, [table]) as bridge:
        with socket.create_connection(("127.0.0.1", table.port), timeout=5) as sock:
            assert sock.recv(100) == b""  # closed without a greeting
        assert "dropped (not in allow)" in bridge.wait_log("dropped")


def test_every_serve_key_is_in_the_man_page() -> None:
    from mailtoken.bridge.config import SERVE_KEYS

    page = (ROOT / "man" / "mailtoken.toml.5").read_text()
    for key in SERVE_KEYS:
        assert re.search(rf"^\.It Ic {key} No = ", page, re.M), f"[[serve]] {key} is not in mailtoken.toml.5"


def test_systemd_install_serve_writes_the_contrib_unit_and_enables_it(env: Env) -> None:
    from mailtoken import systemd

    contrib = (ROOT / "contrib" / "systemd" / systemd.SERVE_NAME).read_text()
    assert contrib == systemd.render_serve(systemd.CONTRIB_EXEC)[systemd.SERVE_NAME], "contrib unit drifted"
    bin_dir = env.root / "bin"
    bin_dir.mkdir()
    log = env.root / "systemctl.log"
    (bin_dir / "systemctl").write_text(f'#!/bin/sh\necho "$*" >> {log}\n')
    (bin_dir / "systemctl").chmod(0o755)
    env.vars["PATH"] = f"{bin_dir}:{env.vars['PATH']}"
    result = env.run("systemd", "install", "--serve")
    assert result.returncode == 0, result.stderr
    unit = env.home / ".config" / "systemd" / "user" / systemd.SERVE_NAME
    text = unit.read_text()
    assert "Type=notify\n" in text and f"ExecStart={MAILTOKEN} serve\n" in text
    assert log.read_text().splitlines() == ["--user daemon-reload", "--user enable --now mailtoken-serve.service"]
    require("systemd-analyze")
    check = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True, text=True)
    assert (check.returncode, check.stdout + check.stderr) == (0, "")
    assert env.run("systemd", "uninstall").returncode == 0 and not unit.exists()
    assert "--user disable --now mailtoken-serve.service" in log.read_text()


def test_garbage_tls_hellos_silence_and_vanishing_clients_end_cleanly(env: Env) -> None:
    """Before login: every bad client gets an error or a close, the bridge logs no internal error and still
    greets the next one; idle clients are closed after idle_timeout and connections beyond max_connections
    are dropped."""
    env.write_config(ACCOUNT)
    table = ServeTable("smtp", upstream="127.0.0.1:587", extra={"idle_timeout": "1s", "max_connections": 3})
    with BridgeProcess(env, [table]) as bridge:

        def connect() -> socket.socket:
            sock = socket.create_connection(("127.0.0.1", table.port), timeout=10)
            assert sock.recv(100).startswith(b"220 ")
            return sock

        with connect() as sock:  # a TLS ClientHello on the plain port
            sock.sendall(bytes.fromhex("16030100a5010000a10303") + bytes(range(256)))
            assert sock.recv(100).startswith(b"500 ")
        with connect() as sock:  # binary garbage, then an endless line
            sock.sendall(bytes(range(256)) * 4 + b"\r\n" + b"x" * 10000)
            data = b""
            while chunk := sock.recv(4096):
                data += chunk
            assert b"500 5.5.2 Line too long" in data
        with connect() as sock:  # vanishes mid-line
            sock.sendall(b"EHLO half-a-li")
        with connect() as sock:  # says nothing: closed after idle_timeout
            start = time.monotonic()
            assert sock.recv(100) == b"" and time.monotonic() - start < 5
        held = [connect() for _ in range(3)]
        try:
            with socket.create_connection(("127.0.0.1", table.port), timeout=10) as extra:
                assert extra.recv(100) == b""  # over max_connections: dropped without a greeting
        finally:
            for sock in held:
                sock.close()
        bridge.wait_log("refused (max_connections 3 reached)")
        bridge.wait_log("idle for 1 s before login")
        time.sleep(0.2)
        with connect() as sock:
            sock.sendall(b"QUIT\r\n")
            assert sock.recv(100).startswith(b"221 ")
    assert "internal error" not in bridge.log() and "Traceback" not in bridge.log()


def test_a_login_checks_its_own_device_only_and_a_wrong_password_none(env: Env, tmp_path) -> None:
    """The fingerprint picks the device: with many devices a login still costs one scrypt."""
    import asyncio

    from mailtoken.bridge import passwords

    env.write_config(ACCOUNT)
    made = {}
    for name in ("a", "b", "c"):
        made[name] = env.run("serve", "passwd", name, "--account", "work").stdout.strip()
    verifier = passwords.Verifier(str(env.state_dir / "serve" / "passwords.json"))
    calls = []
    real = passwords._scrypt

    def counting(*args):
        calls.append(args)
        return real(*args)

    passwords._scrypt = counting
    try:
        assert asyncio.run(verifier.check("work", made["c"])) == "c" and len(calls) == 1
        assert asyncio.run(verifier.check("work", made["c"])) == "c" and len(calls) == 1  # from memory now
        assert asyncio.run(verifier.check("work", made["c"] + "x")) is None and len(calls) == 1
        assert asyncio.run(verifier.check("other", made["a"])) is None
    finally:
        passwords._scrypt = real


def test_two_hundred_clients_at_once_are_all_greeted_and_one_more_is_dropped(env: Env) -> None:
    """The default limit: 200 open connections per listener, each greeted; the 201st is closed at accept."""
    env.write_config(ACCOUNT)
    table = ServeTable("smtp", upstream="127.0.0.1:587")
    with BridgeProcess(env, [table]) as bridge:
        time.sleep(0.3)  # let the readiness probe's connection close
        held = []
        try:
            for _ in range(200):
                held.append(socket.create_connection(("127.0.0.1", table.port), timeout=30))
            for sock in held:
                assert sock.recv(100).startswith(b"220 ")
            with socket.create_connection(("127.0.0.1", table.port), timeout=30) as extra:
                assert extra.recv(100) == b""
        finally:
            for sock in held:
                sock.close()
        bridge.wait_log("refused (max_connections 200 reached)")


def test_a_password_file_others_can_read_is_refused_with_a_temporary_failure(env: Env) -> None:
    env.write_config(ACCOUNT)
    table = ServeTable("smtp", upstream="127.0.0.1:587")
    with BridgeProcess(env, [table]) as bridge:
        password = bridge.password("leaky")
        (env.state_dir / "serve" / "passwords.json").chmod(0o644)
        with smtplib.SMTP("127.0.0.1", table.port, "localhost", timeout=30) as smtp:
            smtp.ehlo()
            code, _ = smtp.docmd("AUTH", "PLAIN " + base64.b64encode(f"\0{EMAIL}\0{password}".encode()).decode())
        assert code == 454
        assert "readable by others" in bridge.wait_log("readable by others")
        assert "internal error" not in bridge.log()
