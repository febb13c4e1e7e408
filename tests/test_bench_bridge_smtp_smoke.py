"""bench/bridge_smtp.py runs end to end with tiny counts (issue 13). No timing is asserted: this only proves the
benchmark works, and that parallel submissions through one bridge share one refresh grant."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import require
from tests.servers.dovecot import DOVECOT

ROOT = Path(__file__).resolve().parent.parent


def test_smtp_bridge_bench_runs_and_prints_its_rows() -> None:
    require(DOVECOT)
    argv = [sys.executable, str(ROOT / "bench" / "bridge_smtp.py"), "--runs", "2", "--mbytes", "1", "--parallel", "5"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "connect -> authenticated" in result.stdout and "1 MB submission" in result.stdout
    assert "5 parallel submissions, token due" in result.stdout and "1 refresh grant(s)" in result.stdout
    assert "failed submissions" not in result.stdout
