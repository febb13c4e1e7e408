"""Benchmark of `mailtoken sendmail` (issue 14): a 10 KB message with a cached Graph token, side by side with
msmtp -> Dovecot's submission directly and with the cached `mailtoken token` call; prints a markdown table.

    .venv/bin/python bench/graph_sendmail.py [--runs 20]

Everything is local: the fake identity platform, the fake Graph (tests/fakes/graph.py, HTTPS), a private
Dovecot whose submission relays to an SMTP sink (tests/servers/stack.py). Commands are interleaved per round
and each ratio is the median of the per-round ratios. "Own overhead" is the sendmail command's wall time
minus the fake Graph's service time for its request (what a real Graph would add instead), compared with the
cached `mailtoken token` call, which is the cost of starting the helper at all.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import EMAIL, MAILTOKEN, Env  # noqa: E402
from tests.fakes.graph import FakeGraph  # noqa: E402
from tests.servers.drivers import RCPT, contrib_text, localize, write  # noqa: E402
from tests.servers.stack import MailStack  # noqa: E402


def message(size: int = 10 * 1024) -> bytes:
    head = f"From: {EMAIL}\nTo: {RCPT}\nSubject: bench\nContent-Type: text/plain; charset=utf-8\n\n".encode()
    line = b"0123456789 abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789\n"
    return head + line * ((size - len(head)) // len(line) + 1)


def timed(args: list[str], env: dict[str, str], data: bytes | None = None) -> float:
    started = time.perf_counter()
    out = subprocess.run(args, input=data, capture_output=True, env=env, timeout=60)
    wall = time.perf_counter() - started
    if out.returncode != 0:
        sys.exit(f"bench: {' '.join(args)} exited {out.returncode}: {out.stderr.decode(errors='replace')}")
    return wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mailtoken-bench-graph-") as tmp, MailStack(Path(tmp) / "stack") as stack:
        smtp_user = stack.user()
        rc = write(smtp_user.home / ".msmtprc", localize(contrib_text("msmtp"), stack))
        with FakeGraph(Path(tmp) / "graph", stack.fake) as graph:
            (Path(tmp) / "graph-user").mkdir()
            env = Env(Path(tmp) / "graph-user")
            bundle = Path(tmp) / "cas.pem"
            bundle.write_text(Path(stack.fake.ca_pem).read_text() + Path(graph.ca_pem).read_text())
            env.vars["REQUESTS_CA_BUNDLE"] = str(bundle)
            env.add_account(authority=stack.fake.authority(), extra=f'send = "graph"\ngraph_url = "{graph.url}"\n')
            stack.fake.set(auto_approve=EMAIL)
            login = env.run("login", "work")
            stack.fake.set(auto_approve=None)
            if login.returncode != 0:
                sys.exit(f"bench: login failed: {login.stderr}")
            data = message()
            rows: dict[str, list[float]] = {k: [] for k in ("token", "send", "service", "msmtp")}
            for _ in range(args.runs):
                rows["token"].append(timed([MAILTOKEN, "token", "work"], env.vars))
                rows["send"].append(timed([MAILTOKEN, "sendmail", "work", RCPT], env.vars, data))
                rows["service"].append(graph.requests[-1]["service"])
                rows["msmtp"].append(timed(["msmtp", "-C", str(rc), "-a", "work", RCPT], smtp_user.vars, data))
            assert len(graph.sent) == args.runs and stack.fake.counts["refresh_token"] <= 1
    med = {k: statistics.median(v) * 1000 for k, v in rows.items()}
    own = [s - g for s, g in zip(rows["send"], rows["service"], strict=True)]
    ratio_own = statistics.median(o / t for o, t in zip(own, rows["token"], strict=True))
    ratio_msmtp = statistics.median(s / m for s, m in zip(rows["send"], rows["msmtp"], strict=True))
    print(
        f"bench/graph_sendmail.py, {datetime.date.today()}, {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}, {args.runs} interleaved rounds, medians\n"
    )
    print("| measurement | result |\n|---|---|")
    print(f"| cached `mailtoken token` | {med['token']:.1f} ms |")
    print(f"| `mailtoken sendmail`, 10 KB, cached Graph token (wall) | {med['send']:.1f} ms |")
    print(f"| fake Graph's service time for it | {med['service']:.1f} ms |")
    print(f"| msmtp -> Dovecot submission directly, 10 KB (wall) | {med['msmtp']:.1f} ms |")
    print(f"| sendmail's own overhead / cached `mailtoken token` | {ratio_own:.2f}x |")
    print(f"| sendmail / msmtp -> Dovecot | {ratio_msmtp:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
