"""Benchmark of mailtoken against its floor and its peers, run in one go on one interpreter; prints a markdown table.

    .venv/bin/python bench/bench.py [--runs 30] [--storm 50] [--accounts 1,10,100,1000] [--check]

What it measures (issues 3 and 7), against a fake identity platform (tests/fakes/entra.py, standalone) and an
account signed in through the device flow, all in a temporary HOME:
- the cached `mailtoken token` against `python -c pass` on the same interpreter (the floor: mailtoken's own
  launcher, bin/mailtoken, imports nothing before our package), against `python -c "import re"` (what pip's
  console-script wrapper costs before it imports anything, the floor of an entry-point launcher), and against
  mutt_oauth2.py's cached path (Debian's mutt ships it; given a gpg-encrypted token file as its README says).
  Commands are interleaved (A B C, A B C, ...) and each ratio is the median of the per-round ratios: a shared,
  noisy machine drifts, pairs do not;
- the cached path with 1, 10, 100 and 1000 accounts in the config (it must stay flat);
- a refresh storm: N parallel callers on an expired token: grants counted at the fake, p50/p99 latency against a
  single refresh;
- peak RSS of each cached path (wait4's ru_maxrss).
Timing is never asserted in the test suite (tests/test_bench_smoke.py only proves this runs).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # for tests.fakes.entra's client

from tests.fakes.entra import FakeEntraClient  # noqa: E402

EMAIL = "bench@contoso.com"
CLIENT_ID = "11111111-2222-3333-4444-555555555555"
MUTT_OAUTH2 = Path("/usr/share/doc/mutt/examples/mutt_oauth2.py")
GNU_TIME = "/usr/bin/time"
TARGETS = {"floor": 1.25, "re": 1.15, "mutt": 5.0, "flat": 1.1}


class Bench:
    def __init__(self, root: Path, runs: int) -> None:
        self.root, self.runs = root, runs
        self.python = sys.executable
        self.mailtoken = str(Path(sys.executable).parent / "mailtoken")
        if not os.access(self.mailtoken, os.X_OK):
            sys.exit(f"bench: no console script at {self.mailtoken}: run this with the venv's python")
        home, run = root / "home", root / "run"
        for folder in (home, run):
            folder.mkdir(mode=0o700)
        self.env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("XDG_", "MAILTOKEN_", "DBUS_", "PYTHON", "http_", "https_", "HTTP_", "HTTPS_"))
        }
        self.env.update(HOME=str(home), XDG_RUNTIME_DIR=str(run), NO_PROXY="*", GNUPGHOME=str(root / "gnupg"))
        self.config = home / ".config" / "mailtoken" / "config.toml"
        self.records = run / "mailtoken"
        self.fake_proc: subprocess.Popen[bytes] | None = None
        self.fake: FakeEntraClient
        self.authority = ""

    # --- setup ------------------------------------------------------------------------------------------

    def start_fake(self) -> None:
        state = self.root / "fake"
        argv = [self.python, "-m", "tests.fakes.entra", "--state-dir", str(state), "--user", EMAIL]
        argv += ["--auto-approve", EMAIL]
        self.fake_proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        info = state / "fake.json"
        deadline = time.monotonic() + 60
        while not info.exists():
            if self.fake_proc.poll() is not None or time.monotonic() > deadline:
                sys.exit("bench: the fake identity platform did not start")
            time.sleep(0.05)
        data = json.loads(info.read_text())
        self.env["REQUESTS_CA_BUNDLE"] = data["ca_pem"]
        self.authority = data["base_url"] + "/organizations"
        self.fake = FakeEntraClient(data["control_url"])

    def stop(self) -> None:
        if self.fake_proc is not None:
            self.fake_proc.terminate()
            self.fake_proc.wait(30)
        if (self.root / "gnupg").exists() and shutil.which("gpgconf"):
            # Only the agent of our own GNUPGHOME.
            subprocess.run(["gpgconf", "--kill", "gpg-agent"], env=self.env, capture_output=True)

    def write_config(self, path: Path, names: list[str]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        block = '[accounts.{}]\nemail = "{}"\nclient_id = "{}"\nauthority = "{}"\nstore = "file"\n\n'
        path.write_text("".join(block.format(n, EMAIL, CLIENT_ID, self.authority) for n in names))

    def mt(self, *args: str, config: Path | None = None) -> subprocess.CompletedProcess[str]:
        env = {**self.env, "MAILTOKEN_CONFIG": str(config or self.config)}
        result = subprocess.run([self.mailtoken, *args], env=env, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            sys.exit(f"bench: mailtoken {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
        return result

    def setup_mutt(self, token: str) -> list[str] | None:
        """mutt_oauth2.py with a gpg-encrypted token file holding a valid access token, as its README says."""
        if not MUTT_OAUTH2.exists() or not shutil.which("gpg"):
            return None
        gnupg = Path(self.env["GNUPGHOME"])
        gnupg.mkdir(mode=0o700)
        uid = "mailtoken bench <bench@example.invalid>"
        gpg = ["gpg", "--batch", "--quiet", "--pinentry-mode", "loopback", "--passphrase", ""]
        subprocess.run([*gpg, "--quick-gen-key", uid, "future-default", "default", "never"], env=self.env, check=True)
        expires = (datetime.datetime.now() + datetime.timedelta(hours=1)).isoformat()
        data = {"registration": "microsoft", "authflow": "devicecode", "email": EMAIL, "access_token": token}
        data.update(access_token_expiration=expires, refresh_token="unused")
        tokenfile = self.root / "mutt.token"
        encrypt = [*gpg, "--trust-model", "always", "--encrypt", "--recipient", "bench@example.invalid"]
        sealed = subprocess.run(encrypt, input=json.dumps(data).encode(), env=self.env, capture_output=True, check=True)
        tokenfile.write_bytes(sealed.stdout)
        tokenfile.chmod(0o600)
        argv = [self.python, str(MUTT_OAUTH2), str(tokenfile)]
        for attempt in range(3):
            # The first decryption starts gpg-agent, which a loaded machine may not manage in gpg's time limit.
            out = subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=60)
            if out.stdout.strip() == token:
                return argv
            time.sleep(1 + attempt)
        sys.exit(f"bench: mutt_oauth2.py did not print the token: {(out.stdout + out.stderr).strip()[-500:]}")

    # --- measuring --------------------------------------------------------------------------------------

    def spawn(self, argv: list[str], env: dict[str, str], out: str = os.devnull) -> int:
        actions = [
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
            (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0),
        ]
        return os.posix_spawn(argv[0], argv, env, file_actions=actions)

    def once(self, argv: list[str], env: dict[str, str]) -> float:
        """Wall seconds of one run."""
        start = time.perf_counter()
        pid = self.spawn(argv, env)
        _, status, _usage = os.wait4(pid, 0)
        wall = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status) != 0:
            sys.exit(f"bench: {' '.join(argv)} failed with status {os.waitstatus_to_exitcode(status)}")
        return wall

    def peak_rss(self, argv: list[str], env: dict[str, str], runs: int = 5) -> float | None:
        """Median peak RSS in MiB, through GNU time: a child of this (large) process would inherit its peak."""
        if not os.access(GNU_TIME, os.X_OK):
            return None
        report = self.root / "rss.txt"
        peaks = []
        for _ in range(runs):
            subprocess.run([GNU_TIME, "-f", "%M", "-o", str(report), *argv], env=env, capture_output=True, check=True)
            peaks.append(int(report.read_text().split()[-1]))
        return statistics.median(peaks) / 1024

    def interleaved(self, commands: dict[str, tuple[list[str], dict[str, str]]]) -> dict[str, list[float]]:
        """Run each command once per round, rotating the order, for self.runs rounds (after a warm-up round)."""
        names = list(commands)
        results: dict[str, list[float]] = {n: [] for n in names}
        for name in names:
            self.once(*commands[name])  # page cache, pyc, gpg-agent
        for r in range(self.runs):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                results[name].append(self.once(*commands[name]))
        return results

    def make_stale(self, account: str) -> None:
        path = self.records / f"{account}.token"
        text = re.sub(r"refresh \d+", f"refresh {int(time.time()) - 1}", path.read_text())
        with open(path, "w") as fh:  # in place: keeps the 0600 file
            fh.write(text)

    def storm(self, callers: int) -> tuple[list[float], int, int]:
        """`callers` parallel `token` calls on an expired token: latencies, grants made, distinct answers."""
        self.make_stale("work")
        self.fake.reset_counts()
        env = {**self.env, "MAILTOKEN_CONFIG": str(self.config)}
        outs = [str(self.root / f"storm-{i}.out") for i in range(callers)]
        started: dict[int, tuple[float, str]] = {}
        for out in outs:
            t = time.perf_counter()
            started[self.spawn([self.mailtoken, "token", "work"], env, out)] = (t, out)
        latencies = []
        while len(latencies) < callers:
            pid, status, _ = os.wait4(-1, 0)
            if pid not in started:
                continue
            latencies.append(time.perf_counter() - started[pid][0])
            if os.waitstatus_to_exitcode(status) != 0:
                sys.exit(f"bench: a storm caller failed with status {os.waitstatus_to_exitcode(status)}")
        answers = {Path(out).read_text() for out in outs}
        return latencies, self.fake.counts()["refresh_token"], len(answers)


def _median_ratio(a: list[float], b: list[float]) -> float:
    return statistics.median(x / y for x, y in zip(a, b, strict=True))


def _ms(samples: list[float]) -> str:
    return f"{statistics.median(samples) * 1000:.1f} ms"


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        models = re.findall(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        cpu = models[0] if models else cpu
    except OSError:
        pass
    try:
        distro = re.search(r'^PRETTY_NAME="?([^"\n]+)', Path("/etc/os-release").read_text(), re.M)
        system = distro.group(1) if distro else platform.platform()
    except OSError:
        system = platform.platform()
    return f"{cpu}, {os.cpu_count()} CPUs, {system}, Python {platform.python_version()}"


def run(args: argparse.Namespace) -> int:
    rows: list[tuple[str, str, str, str]] = []
    verdicts: list[bool] = []

    def row(what: str, value: str, target: str = "", ok: bool | None = None) -> None:
        rows.append((what, value, target, "" if ok is None else ("ok" if ok else "MISSED")))
        if ok is not None:
            verdicts.append(ok)

    with tempfile.TemporaryDirectory(prefix="mailtoken-bench-") as tmp:
        bench = Bench(Path(tmp), args.runs)
        try:
            bench.start_fake()
            sizes = [int(n) for n in args.accounts.split(",")]
            bench.write_config(bench.config, ["work"])
            bench.mt("login", "work")
            token = bench.mt("token", "work").stdout.strip()
            env = {**bench.env, "MAILTOKEN_CONFIG": str(bench.config)}
            commands: dict[str, tuple[list[str], dict[str, str]]] = {
                "floor": ([bench.python, "-c", "pass"], env),
                "re": ([bench.python, "-c", "import re"], env),
                "mailtoken": ([bench.mailtoken, "token", "work"], env),
            }
            mutt = None if args.no_mutt else bench.setup_mutt(token)
            if mutt:
                commands["mutt"] = (mutt, env)
            res = bench.interleaved(commands)
            ratio = _median_ratio(res["mailtoken"], res["floor"])
            re_ratio = _median_ratio(res["mailtoken"], res["re"])
            row("`python -c pass` (floor)", _ms(res["floor"]))
            row('`python -c "import re"` (what a pip console-script wrapper costs)', _ms(res["re"]))
            row("cached `mailtoken token`", _ms(res["mailtoken"]))
            floor_ok = ratio <= TARGETS["floor"]
            row("cached `mailtoken token` / floor", f"{ratio:.2f}×", f"≤ {TARGETS['floor']}×", floor_ok)
            re_ok = re_ratio <= TARGETS["re"]
            row('cached `mailtoken token` / `python -c "import re"`', f"{re_ratio:.2f}×", f"≤ {TARGETS['re']}×", re_ok)
            if mutt:
                speedup = _median_ratio(res["mutt"], res["mailtoken"])
                mutt_ok = speedup >= TARGETS["mutt"]
                row("mutt_oauth2.py cached path (gpg token file)", _ms(res["mutt"]))
                row("mutt_oauth2.py / cached `mailtoken token`", f"{speedup:.1f}×", f"≥ {TARGETS['mutt']:g}×", mutt_ok)
            else:
                row("mutt_oauth2.py cached path", "not measured (needs mutt's example and gpg)")
            rss = {name: bench.peak_rss(*cmd) for name, cmd in commands.items()}
            if rss["floor"] is None:
                row("peak RSS", f"not measured (needs GNU time at {GNU_TIME})")
            else:
                row("peak RSS: floor / cached `mailtoken token`", f"{rss['floor']:.1f} / {rss['mailtoken']:.1f} MiB")
                if mutt:
                    row("peak RSS: mutt_oauth2.py (its python; gpg not counted)", f"{rss['mutt']:.1f} MiB")

            # Config size: each size gets its own config file and its own signed-in account.
            scaled: dict[str, tuple[list[str], dict[str, str]]] = {"floor": commands["floor"]}
            for n in sizes:
                path = bench.root / f"config-{n}.toml"
                bench.write_config(path, [f"n{n}"] + [f"filler{i:04d}" for i in range(1, n)])
                bench.mt("login", f"n{n}", config=path)
                scaled[f"n{n}"] = ([bench.mailtoken, "token", f"n{n}"], {**bench.env, "MAILTOKEN_CONFIG": str(path)})
            res_n = bench.interleaved(scaled)
            per_size = {n: _median_ratio(res_n[f"n{n}"], res_n["floor"]) for n in sizes}
            text = ", ".join(f"{n}: {per_size[n]:.2f}×" for n in sizes)
            row("cached path / floor by accounts in config", text)
            flat = per_size[sizes[-1]] / per_size[sizes[0]]
            label = f"cached path, {sizes[-1]} vs {sizes[0]} account(s)"
            row(label, f"{flat:.2f}×", f"≤ {TARGETS['flat']}×", flat <= TARGETS["flat"])

            singles = []
            for _ in range(args.single):
                bench.make_stale("work")
                singles.append(bench.once([bench.mailtoken, "token", "work"], env))
            single = statistics.median(singles)
            latencies: list[float] = []
            grants, answers = [], []
            for _ in range(args.storm_rounds):
                lat, made, distinct = bench.storm(args.storm)
                latencies += lat
                grants.append(made)
                answers.append(distinct)
            row("single refresh (expired token, one caller)", f"{single * 1000:.0f} ms")
            storm_ok = all(g == 1 for g in grants) and all(a == 1 for a in answers)
            row(f"refresh storm: {args.storm} parallel callers, grants", " / ".join(map(str, grants)), "1", storm_ok)
            p50, p99 = _pct(latencies, 50), _pct(latencies, 99)
            row(
                "refresh storm latency p50 / p99",
                f"{p50 * 1000:.0f} / {p99 * 1000:.0f} ms ({p50 / single:.1f}× / {p99 / single:.1f}× single)",
            )
        finally:
            bench.stop()

    today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    print(f"Measured {today} on {machine()}; {args.runs} interleaved rounds, median of per-round ratios.\n")
    print("| measurement | result | target | verdict |")
    print("|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    return 1 if args.check and not all(verdicts) else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=30, help="interleaved rounds per comparison (default 30)")
    p.add_argument("--accounts", default="1,10,100,1000", help="config sizes, smallest first (default 1,10,100,1000)")
    p.add_argument("--storm", type=int, default=50, help="parallel callers in a refresh storm (default 50)")
    p.add_argument("--storm-rounds", type=int, default=3, help="storms to run (default 3)")
    p.add_argument("--single", type=int, default=5, help="single refreshes to time (default 5)")
    p.add_argument("--no-mutt", action="store_true", help="skip mutt_oauth2.py")
    p.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = p.parse_args(argv)
    if args.runs < 1 or args.storm < 1 or args.storm_rounds < 1 or args.single < 1:
        p.error("counts must be at least 1")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
