"""Benchmark of the SMTP bridge (`mailtoken serve`) against direct XOAUTH2 submission, side by side.

    .venv/bin/python bench/bridge_smtp.py [--runs 20] [--mbytes 20] [--parallel 200]

On loopback, in one run: the suite's private Dovecot submission (STARTTLS, XOAUTH2 only, relaying to an
in-process sink) and the fake identity platform, reached
- directly: STARTTLS and `AUTH XOAUTH2` with the token `mailtoken token` caches (what msmtp does),
- through the bridge: plain SMTP to `mailtoken serve` on 127.0.0.1, `AUTH PLAIN` with a device password.
Rows: connect -> authenticated (median of --runs, cached token; the bridge's first login, which pays the
device password's scrypt, is left out as warm-up), a --mbytes message submitted (median of 3, until the
server's 250 after DATA), and --parallel simultaneous submissions through one bridge while the token is due
(how many refresh grants the identity platform saw: the goal is exactly one).
"""

from __future__ import annotations

import argparse
import base64
import smtplib
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import EMAIL  # noqa: E402
from tests.servers.bridge import BridgeProcess, ServeTable  # noqa: E402
from tests.servers.stack import MailStack  # noqa: E402

RCPT = "bob@example.org"


def direct_login(stack: MailStack, token: str) -> smtplib.SMTP:
    smtp = smtplib.SMTP("127.0.0.1", stack.server.ports.submission, "localhost", timeout=120)
    smtp.starttls(context=stack.tls.client_context())
    smtp.ehlo()
    xoauth2 = base64.b64encode(f"user={EMAIL}\x01auth=Bearer {token}\x01\x01".encode()).decode()
    code, _ = smtp.docmd("AUTH", "XOAUTH2")
    if code == 334:
        code, _ = smtp.docmd(xoauth2)
    assert code == 235, code
    return smtp


def bridge_login(port: int, password: str) -> smtplib.SMTP:
    smtp = smtplib.SMTP("127.0.0.1", port, "localhost", timeout=120)
    smtp.login(EMAIL, password)
    return smtp


def timed(login) -> float:
    start = time.perf_counter()
    smtp = login()
    elapsed = time.perf_counter() - start
    smtp.quit()
    return elapsed


def message(mbytes: int, subject: str) -> bytes:
    line = b"x" * 76 + b"\r\n"
    body = line * (mbytes * 1024 * 1024 // len(line))
    return f"From: {EMAIL}\r\nTo: {RCPT}\r\nSubject: {subject}\r\n\r\n".encode() + body


def submit(login, data: bytes) -> float:
    smtp = login()
    start = time.perf_counter()
    smtp.sendmail(EMAIL, [RCPT], data)
    elapsed = time.perf_counter() - start
    smtp.quit()
    return elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--mbytes", type=int, default=20)
    ap.add_argument("--parallel", type=int, default=200)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="mailtoken-bench-smtp-") as tmp, MailStack(Path(tmp)) as stack:
        env = stack.user("bench")
        table = ServeTable("smtp", upstream=f"127.0.0.1:{stack.server.ports.submission}", upstream_tls="starttls")
        with BridgeProcess(env, [table]) as bridge:
            password = bridge.password("bench")
            token = stack.token(env)
            timed(lambda: bridge_login(table.port, password))  # warm-up: scrypt once, token cached in-process
            rows = []
            direct_t, bridge_t = [], []
            for _ in range(args.runs):  # interleaved, so load changes hit both alike
                direct_t.append(timed(lambda: direct_login(stack, token)))
                bridge_t.append(timed(lambda: bridge_login(table.port, password)))
            d, b = statistics.median(direct_t) * 1000, statistics.median(bridge_t) * 1000
            rows.append(("connect -> authenticated (ms, median)", f"{d:.1f}", f"{b:.1f}", f"{b - d:+.1f} ms"))
            big_d, big_b = [], []
            for i in range(3):
                big_d.append(submit(lambda: direct_login(stack, token), message(args.mbytes, f"big-d-{i}")))
                big_b.append(submit(lambda: bridge_login(table.port, password), message(args.mbytes, f"big-b-{i}")))
            d, b = statistics.median(big_d), statistics.median(big_b)
            rows.append((f"{args.mbytes} MB submission (s, median of 3)", f"{d:.2f}", f"{b:.2f}", f"{d / b:.2f}x"))
        # A new bridge process and a due token: the first of the parallel logins must refresh, once for all.
        env.age_record()
        stack.fake.reset_counts()
        with BridgeProcess(env, [table]) as bridge:
            failures: list[BaseException] = []

            def one(i: int) -> None:
                try:
                    submit(lambda: bridge_login(table.port, password), message(0, f"par-{i}") + b"hi\r\n")
                except BaseException as exc:  # noqa: BLE001 - counted below
                    failures.append(exc)

            threads = [threading.Thread(target=one, args=(i,)) for i in range(args.parallel)]
            start = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.perf_counter() - start
            grants = stack.fake.counts["refresh_token"]
            rows.append(
                (f"{args.parallel} parallel submissions, token due", "-", f"{wall:.1f} s", f"{grants} refresh grant(s)")
            )
            if failures:
                rows.append(("  failed submissions", "-", str(len(failures)), type(failures[0]).__name__))
    print(f"{'row':<44} {'direct':>10} {'bridge':>10}  ratio/diff")
    for name, d, b, r in rows:
        print(f"{name:<44} {d:>10} {b:>10}  {r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
