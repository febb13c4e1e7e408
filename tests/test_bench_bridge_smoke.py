"""bench/bridge.py runs end to end with tiny counts (issue 13). No timing is asserted: this only proves the
benchmark works, so its figures can be reproduced with one command. emailproxy is not a test dependency: its
column stays empty here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import require
from tests.servers.dovecot import DOVEADM, DOVECOT

ROOT = Path(__file__).resolve().parent.parent


def test_bridge_bench_runs_and_prints_its_rows(tmp_path: Path) -> None:
    require(DOVECOT, DOVEADM)
    argv = [sys.executable, str(ROOT / "bench" / "bridge.py"), "--emailproxy", str(tmp_path / "no-emailproxy")]
    argv += ["--runs", "2", "--noops", "20", "--mbytes", "1", "--burst", "5", "--idle", "20"]
    argv += ["--quiet", "0.5"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = {line.split(" | ")[0].lstrip("| "): line for line in result.stdout.splitlines() if line.startswith("| ")}
    for label in (
        "connect → authenticated, median (ms)",
        "NOOP round trip, median of 20 (ms)",
        "FETCH of a 1 MB mailbox, median of 3 (MB/s)",
        "burst of 5 connects, greeted within 1 s (count)",
        "bridge (20 asked)",
    ):
        assert label in rows, f"no '{label}' row in:\n{result.stdout}"
    # Correctness, not timing: every IDLE session was held.
    assert rows["bridge (20 asked)"].split(" | ")[1] == "20", rows["bridge (20 asked)"]
