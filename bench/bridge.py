"""Benchmark of the IMAP bridge (`mailtoken serve`) against direct XOAUTH2 and against email-oauth2-proxy.

    python3 -m venv /tmp/emailproxy-venv && /tmp/emailproxy-venv/bin/pip install emailproxy
    .venv/bin/python bench/bridge.py [--emailproxy /tmp/emailproxy-venv/bin/emailproxy] [--runs 30] \
        [--noops 1000] [--mbytes 50] [--burst 50] [--idle 1000] [--ep-idle 200] [--quiet 10]

Everything on loopback, in one run, each row side by side: the suite's private Dovecot (XOAUTH2 only, its
oauth2 passdb asking the fake identity platform, which runs as its own process), reached
- directly: TLS to Dovecot's IMAPS port and `AUTHENTICATE XOAUTH2` with the token `mailtoken token` caches,
- through the bridge: plain IMAP to `mailtoken serve`, `LOGIN` with a device password,
- through email-oauth2-proxy (`emailproxy --no-gui`, installed apart from the project: see above), configured
  against the same fake identity platform and Dovecot, `LOGIN` with its password.
Rows: connect -> authenticated (median, cached token), NOOP round trip (median of --noops), FETCH of a
--mbytes mailbox (MB/s, median of 3), a burst of --burst simultaneous connects (greeted within 1 s), and
--idle concurrent IDLE sessions held by one bridge process (RSS, CPU while idle) against a small asyncio IMAP
responder (Dovecot forks a process per session), with emailproxy at --ep-idle sessions. Timing is never
asserted in the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bridge_peers import EP_PASSWORD, start_emailproxy  # noqa: E402 (bench/ is on sys.path: it is run as a script)

from tests.conftest import EMAIL, Env  # noqa: E402
from tests.servers.bridge import BridgeProcess, ServeTable  # noqa: E402
from tests.servers.dovecot import Dovecot  # noqa: E402
from tests.servers.ports import free_port, wait_listening  # noqa: E402
from tests.servers.tls import TestTLS  # noqa: E402

HERE = Path(__file__).resolve()


# -- one IMAP client, blocking, for the latency rows ----------------------------------------------------------


class Client:
    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.buf = sock, b""

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed; had {self.buf[-200:]!r}")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def until(self, tag: bytes) -> bytes:
        while True:
            line = self.line()
            if line.startswith(tag + b" "):
                if not line.startswith(tag + b" OK"):
                    raise RuntimeError(line.decode(errors="replace"))
                return line

    def command(self, tag: bytes, text: bytes) -> bytes:
        self.sock.sendall(tag + b" " + text + b"\r\n")
        return self.until(tag)


class Target:
    """How one contender is reached and signed in."""

    def __init__(self, name: str, port: int, login: bytes, ctx: ssl.SSLContext | None = None) -> None:
        self.name, self.port, self.login, self.ctx = name, port, login, ctx

    def connect(self) -> Client:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=120)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.ctx is not None:
            sock = self.ctx.wrap_socket(sock, server_hostname="127.0.0.1")
        client = Client(sock)
        assert client.line().startswith(b"* OK")
        client.command(b"a1", self.login)
        return client


def connect_ms(target: Target) -> float:
    start = time.perf_counter()
    client = target.connect()
    elapsed = time.perf_counter() - start
    client.sock.sendall(b"z LOGOUT\r\n")
    client.sock.close()
    return elapsed * 1000


def noop_ms(target: Target, count: int) -> float:
    client = target.connect()
    times = []
    for i in range(count):
        start = time.perf_counter()
        client.command(b"n%d" % i, b"NOOP")
        times.append(time.perf_counter() - start)
    client.sock.close()
    return statistics.median(times) * 1000


def fetch_mbs(target: Target) -> float:
    client = target.connect()
    client.command(b"s", b"EXAMINE INBOX")
    start = time.perf_counter()
    client.sock.sendall(b"f FETCH 1:* BODY.PEEK[]\r\n")
    total, tail = 0, b""
    while True:
        chunk = client.sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("closed during FETCH")
        total += len(chunk)
        tail = (tail + chunk)[-200:]
        if b"\r\nf OK" in tail or tail.startswith(b"f OK"):
            break
    elapsed = time.perf_counter() - start
    client.sock.close()
    return total / elapsed / 1e6


async def burst(port: int, count: int, within: float = 1.0) -> int:
    """COUNT connections opened at once; how many got a greeting line within WITHIN seconds of the start."""
    start = time.perf_counter()

    async def one() -> float:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
            await asyncio.wait_for(reader.readline(), 5)
            took = time.perf_counter() - start
            writer.close()
            return took
        except (OSError, asyncio.TimeoutError):
            return float("inf")

    times = await asyncio.gather(*(one() for _ in range(count)))
    return sum(t <= within for t in times)


# -- many IDLE sessions ---------------------------------------------------------------------------------------


async def hold_idle(port: int, login: bytes, count: int, parallel: int) -> list:
    gate = asyncio.Semaphore(parallel)

    async def one(i: int):
        async with gate:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            await reader.readline()
            writer.write(b"a " + login + b"\r\n")
            while not (line := await reader.readline()).startswith(b"a "):
                if not line:
                    raise ConnectionError("closed at login")
            if not line.startswith(b"a OK"):
                raise RuntimeError(line)
            writer.write(b"s SELECT INBOX\r\n")
            while not (await reader.readline()).startswith(b"s "):
                pass
            writer.write(b"i IDLE\r\n")
            assert (await reader.readline()).startswith(b"+")
            return reader, writer

    results = await asyncio.gather(*(one(i) for i in range(count)), return_exceptions=True)
    return results


def proc_usage(pid: int) -> tuple[float, float]:
    """(RSS in MB, CPU seconds so far) of PID and its threads."""
    rss = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return rss, cpu


async def idle_row(pid: int, port: int, login: bytes, count: int, parallel: int, quiet: float = 10.0) -> dict:
    rss0, cpu0 = proc_usage(pid)
    start = time.perf_counter()
    sessions = await hold_idle(port, login, count, parallel)
    opened = time.perf_counter() - start
    held = [s for s in sessions if isinstance(s, tuple)]
    errors = {repr(s)[:80] for s in sessions if not isinstance(s, tuple)}
    rss1, cpu1 = proc_usage(pid)
    await asyncio.sleep(quiet)
    rss2, cpu2 = proc_usage(pid)
    for _reader, writer in held:
        writer.close()
    return {
        "held": len(held),
        "errors": sorted(errors)[:3],
        "open_s": opened,
        "rss_mb": rss2,
        "rss_per_session_kb": (rss2 - rss0) * 1024 / max(1, len(held)),
        "cpu_open_ms_per_session": (cpu1 - cpu0) * 1000 / max(1, len(held)),
        "idle_cpu_pct": (cpu2 - cpu1) / quiet * 100,
        "threads": int(
            next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith("Threads:")).split()[1]
        ),
    }


# -- setup ----------------------------------------------------------------------------------------------------


class Stack:
    def __init__(self, root: Path, args: argparse.Namespace) -> None:
        self.root, self.args = root, args
        self.procs: list[subprocess.Popen] = []
        self.tls = TestTLS(root / "tls")

    def start_fake(self) -> None:
        state = self.root / "fake"
        argv = [sys.executable, "-m", "tests.fakes.entra", "--state-dir", str(state), "--user", EMAIL]
        argv += ["--auto-approve", EMAIL]
        self.procs.append(subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL))
        info = state / "fake.json"
        deadline = time.monotonic() + 60
        while not info.exists():
            if time.monotonic() > deadline:
                sys.exit("bench: the fake identity platform did not start")
            time.sleep(0.05)
        self.fake = json.loads(info.read_text())
        self.authority = self.fake["base_url"] + "/organizations"
        # One trust bundle: the fake's CA (token endpoint) and the test CA (Dovecot, the responder).
        self.bundle = self.root / "bundle.pem"
        self.bundle.write_text(Path(self.fake["ca_pem"]).read_text() + self.tls.ca_pem.read_text())

    def start_dovecot(self) -> None:
        self.dovecot = Dovecot(
            self.root / "dovecot", introspect_url=self.fake["introspect_url"], tls=self.tls, relay_port=free_port()
        ).start()
        body = ("x" * 76 + "\r\n") * ((1 << 20) // 78)
        count = max(1, self.args.mbytes)
        for i in range(count):  # one MiB each
            msg = f"From: bob@example.net\r\nTo: {EMAIL}\r\nSubject: bench {i}\r\n\r\n{body}".encode()
            self.dovecot.deliver(EMAIL, msg)

    def sign_in(self) -> None:
        (self.root / "user").mkdir()
        self.env = Env(self.root / "user")
        self.env.vars.update(REQUESTS_CA_BUNDLE=self.fake["ca_pem"], SSL_CERT_FILE=str(self.bundle))
        self.env.add_account(authority=self.authority)
        result = self.env.run("login", "work", timeout=60)
        if result.returncode != 0:
            sys.exit(f"bench: mailtoken login failed: {result.stderr}")

    def token(self) -> str:
        return self.env.run("token", "work").stdout.strip()

    def start_responder(self) -> int:
        port = free_port()
        argv = [sys.executable, str(HERE.parent / "bridge_peers.py"), str(port), str(self.tls.cert_pem)]
        argv.append(str(self.tls.key_pem))
        self.procs.append(subprocess.Popen(argv, cwd=ROOT, stdin=subprocess.DEVNULL))
        wait_listening("127.0.0.1", port, 20)
        return port

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
        if getattr(self, "dovecot", None) is not None:
            self.dovecot.stop()


# -- the run --------------------------------------------------------------------------------------------------


def interleaved(targets: list[Target], runs: int, measure) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {t.name: [] for t in targets}
    for _ in range(runs):
        for t in targets:
            out[t.name].append(measure(t))
    return out


def row(label: str, values: dict[str, float], unit: str, lower_is_better: bool, fmt: str = "{:.2f}") -> str:
    direct = values.get("direct")
    cells = []
    for name in ("direct", "bridge", "emailproxy"):
        v = values.get(name)
        cells.append("–" if v is None else fmt.format(v))
    ratios = []
    for name in ("bridge", "emailproxy"):
        v = values.get(name)
        ratios.append("–" if v is None or not direct else f"{v / direct:.2f}×")
    better = values.get("bridge"), values.get("emailproxy")
    vs = "–"
    if None not in better and all(better):
        factor = (better[1] / better[0]) if lower_is_better else (better[0] / better[1])
        vs = f"{factor:.1f}× better" if factor >= 1 else f"{1 / factor:.2f}× worse"
    return f"| {label} ({unit}) | " + " | ".join(cells) + " | " + " | ".join(ratios) + f" | {vs} |"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--emailproxy", default="/tmp/emailproxy-venv/bin/emailproxy")
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--noops", type=int, default=1000)
    p.add_argument("--mbytes", type=int, default=50)
    p.add_argument("--burst", type=int, default=50)
    p.add_argument("--idle", type=int, default=1000)
    p.add_argument("--ep-idle", type=int, default=200)
    p.add_argument("--quiet", type=float, default=10.0, help="seconds of idle CPU measured (default 10)")
    args = p.parse_args()
    have_ep = os.access(args.emailproxy, os.X_OK)
    if not have_ep:
        print(f"bench: no emailproxy at {args.emailproxy}: its column stays empty (see the command at the top)")
    root = Path(tempfile.mkdtemp(prefix="mailtoken-bench-bridge-"))
    stack = Stack(root, args)
    bridges: list[BridgeProcess] = []
    try:
        stack.start_fake()
        stack.start_dovecot()
        stack.sign_in()
        dovecot = stack.dovecot
        table = ServeTable("imap", upstream=f"127.0.0.1:{dovecot.ports.imaps}", upstream_tls="implicit")
        table.extra["max_connections"] = max(200, args.idle + 50)
        responder_port = stack.start_responder()
        idle_table = ServeTable("imap", upstream=f"127.0.0.1:{responder_port}", upstream_tls="implicit")
        idle_table.extra["max_connections"] = args.idle + 50
        bridge = BridgeProcess(stack.env, [table, idle_table], extra_env={"SSL_CERT_FILE": str(stack.bundle)})
        password = bridge.password("bench")
        bridge.start()
        bridges.append(bridge)
        token = stack.token()  # after the bridge's tables went in (a config change asks for a new token)
        xoauth2 = base64.b64encode(f"user={EMAIL}\x01auth=Bearer {token}\x01\x01".encode())
        client_ctx = ssl.create_default_context(cafile=str(stack.tls.ca_pem))
        login = f'LOGIN "{EMAIL}" "{password}"'.encode()
        targets = [
            Target("direct", dovecot.ports.imaps, b"AUTHENTICATE XOAUTH2 " + xoauth2, client_ctx),
            Target("bridge", table.port, login),
        ]
        ep_proc = ep_idle_proc = None
        if have_ep:
            ep_proc, ep_port = start_emailproxy(stack, args.emailproxy, dovecot.ports.imaps, "dovecot")
            targets.append(Target("emailproxy", ep_port, f'LOGIN "{EMAIL}" "{EP_PASSWORD}"'.encode()))
            ep_idle_proc, ep_idle_port = start_emailproxy(stack, args.emailproxy, responder_port, "responder")
        warm = [*targets, Target("idle", idle_table.port, login)]
        if have_ep:
            # One first login each before any concurrency: emailproxy refreshes per login attempt, and parallel
            # refreshes with one rotating refresh token fall back to an interactive sign-in nobody answers.
            warm.append(Target("ep-idle", ep_idle_port, f'LOGIN "{EMAIL}" "{EP_PASSWORD}"'.encode()))
        for t in warm:  # first logins: the bridge's scrypt, emailproxy's token refresh
            t.connect().sock.close()

        lines = ["| row | direct | bridge | emailproxy | bridge/direct | emailproxy/direct | bridge vs emailproxy |"]
        lines.append("|---|---|---|---|---|---|---|")
        conn = interleaved(targets, args.runs, connect_ms)
        med = {k: statistics.median(v) for k, v in conn.items()}
        lines.append(row("connect → authenticated, median", med, "ms", True))
        noop = {t.name: noop_ms(t, args.noops) for t in targets}
        lines.append(row(f"NOOP round trip, median of {args.noops}", noop, "ms", True, "{:.3f}"))
        fetch = {k: statistics.median(v) for k, v in interleaved(targets, 3, fetch_mbs).items()}
        lines.append(row(f"FETCH of a {args.mbytes} MB mailbox, median of 3", fetch, "MB/s", False, "{:.0f}"))
        greeted = {"direct": asyncio.run(burst(dovecot.ports.imap, args.burst))}
        greeted["bridge"] = asyncio.run(burst(table.port, args.burst))
        if have_ep:
            greeted["emailproxy"] = asyncio.run(burst(targets[2].port, args.burst))
        lines.append(row(f"burst of {args.burst} connects, greeted within 1 s", greeted, "count", False, "{:.0f}"))

        assert bridge.proc is not None
        scale = {"bridge": asyncio.run(idle_row(bridge.proc.pid, idle_table.port, login, args.idle, 50, args.quiet))}
        if ep_idle_proc is not None:
            ep_login = f'LOGIN "{EMAIL}" "{EP_PASSWORD}"'.encode()
            held = idle_row(ep_idle_proc.pid, ep_idle_port, ep_login, args.ep_idle, 10, args.quiet)
            scale["emailproxy"] = asyncio.run(held)
        print("\n".join(lines))
        print()
        print("| IDLE sessions (one process) | held | open s | RSS MB | RSS KB/session | CPU ms/session to open | "
              "CPU % idle | threads | errors |")  # fmt: skip
        print("|---|---|---|---|---|---|---|---|---|")
        for name, s in scale.items():
            print(
                f"| {name} ({args.idle if name == 'bridge' else args.ep_idle} asked) | {s['held']} | "
                f"{s['open_s']:.1f} | {s['rss_mb']:.0f} | {s['rss_per_session_kb']:.0f} | "
                f"{s['cpu_open_ms_per_session']:.1f} | {s['idle_cpu_pct']:.2f} | {s['threads']} | "
                f"{'; '.join(s['errors']) or '–'} |"
            )
        print("\nconnect samples (ms): " + json.dumps({k: [round(x, 1) for x in v] for k, v in conn.items()}))
    finally:
        for b in bridges:
            b.stop()
        stack.stop()
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
