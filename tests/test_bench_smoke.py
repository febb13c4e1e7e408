"""bench/bench.py runs end to end with tiny counts (issue 7). No timing is asserted: this only proves the benchmark
works, so the numbers quoted in the README can be reproduced with one command.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import require

ROOT = Path(__file__).resolve().parent.parent


def test_bench_runs_and_prints_its_table() -> None:
    require("gpg", "/usr/share/doc/mutt/examples/mutt_oauth2.py", "/usr/bin/time")
    argv = [sys.executable, str(ROOT / "bench" / "bench.py"), "--runs", "2", "--storm", "3", "--storm-rounds", "1"]
    argv += ["--single", "1", "--accounts", "1,3"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = {line.split(" | ")[0].lstrip("| "): line for line in result.stdout.splitlines() if line.startswith("| ")}
    for label in (
        "cached `mailtoken token` / floor",
        'cached `mailtoken token` / `python -c "import re"`',
        "the same through pip's wrapper / floor",
        "mutt_oauth2.py / cached `mailtoken token`",
        "peak RSS: floor / cached `mailtoken token`",
        "cached path, 3 vs 1 account(s)",
        "refresh storm: 3 parallel callers, grants",
        "refresh storm latency p50 / p99",
    ):
        assert label in rows, f"no '{label}' row in:\n{result.stdout}"
    # The storm's grant count is a correctness result, not a timing: one refresh for all callers.
    assert rows["refresh storm: 3 parallel callers, grants"].split(" | ")[1] == "1"


def test_graph_sendmail_bench_runs_and_prints_its_ratios() -> None:
    from tests.servers.dovecot import DOVEADM, DOVECOT

    require(DOVECOT, DOVEADM, "msmtp")
    argv = [sys.executable, str(ROOT / "bench" / "graph_sendmail.py"), "--runs", "2"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stdout + result.stderr
    for label in ("sendmail's own overhead / cached `mailtoken token`", "sendmail / msmtp -> Dovecot"):
        assert f"| {label} |" in result.stdout, result.stdout
