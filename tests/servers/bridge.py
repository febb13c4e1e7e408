"""Run the real `mailtoken serve` for a test or a benchmark: its [[serve]] tables, device passwords, its log.

    with BridgeProcess(env, [listener("smtp", port, upstream=...)]) as bridge:
        password = bridge.password("printer")   # via `mailtoken serve passwd`, before start() or after
        ...
        assert "auth ok" in bridge.log()

The process is started with the user's environment (Env.vars) and stopped by its PID (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field

from tests.conftest import Env
from tests.servers.ports import free_port, wait_listening


@dataclass
class ServeTable:
    protocol: str
    port: int = field(default_factory=free_port)
    host: str = "127.0.0.1"
    account: str = "work"
    upstream: str | None = None
    upstream_tls: str | None = None
    local_tls: str | None = None
    allow: list[str] | None = None
    extra: dict[str, object] = field(default_factory=dict)

    def toml(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        lines = ["[[serve]]", f'protocol = "{self.protocol}"', f'listen = "{host}:{self.port}"']
        lines.append(f'account = "{self.account}"')
        for key in ("upstream", "upstream_tls", "local_tls"):
            value = getattr(self, key)
            if value is not None:
                lines.append(f'{key} = "{value}"')
        if self.allow is not None:
            lines.append("allow = [" + ", ".join(f'"{a}"' for a in self.allow) + "]")
        for key, value in self.extra.items():
            lines.append(f"{key} = " + ("true" if value is True else "false" if value is False else repr(value)))
        return "\n".join(lines) + "\n"


class BridgeProcess:
    def __init__(self, env: Env, tables: list[ServeTable], extra_env: dict[str, str] | None = None) -> None:
        self.env = env
        self.tables = tables
        self.extra_env = extra_env or {}
        self.proc: subprocess.Popen[str] | None = None
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self.describe_in_config()

    def describe_in_config(self) -> None:
        """Make the user's config hold this bridge's [[serve]] tables (a module-wide user: replacing another
        test's), as `mailtoken config` reads them."""
        text = self.env.config_path.read_text()
        if "[[serve]]" in text:
            text = text[: text.index("[[serve]]")]
        self.env.write_config(text.rstrip("\n") + "\n\n" + "".join(t.toml() for t in self.tables))

    def password(self, name: str = "device", account: str = "work") -> str:
        result = self.env.run("serve", "passwd", name, "--account", account)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    def start(self, wait: bool = True, tries: int = 3) -> BridgeProcess:
        for attempt in range(tries):
            self.proc = self.env.popen("serve", env=self.extra_env, start_new_session=True)
            threading.Thread(target=self._read, daemon=True).start()
            if not wait:
                return self
            try:
                for table in self.tables:
                    alive = lambda: self.proc is not None and self.proc.poll() is None  # noqa: E731
                    wait_listening(table.host, table.port, 20, alive=alive)
                return self
            except (RuntimeError, TimeoutError) as exc:
                code = self.proc.poll() if self.proc is not None else None
                self.stop()
                if code == 75 and attempt < tries - 1:
                    # Exit 75: a port was taken between free_port() and the bind (parallel test workers make
                    # that likely): the same tables on fresh ports.
                    for table in self.tables:
                        if table.host == "127.0.0.1":
                            table.port = free_port()
                    self.describe_in_config()
                    continue
                raise AssertionError(f"mailtoken serve did not start: {exc}\n{self.log()}") from None
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._lock:
                self._lines.append(line.rstrip("\n"))

    def log(self) -> str:
        with self._lock:
            return "\n".join(self._lines)

    def wait_log(self, text: str, timeout: float = 15.0) -> str:
        end = time.monotonic() + timeout
        while True:
            with self._lock:
                for line in self._lines:
                    if text in line:
                        return line
            if time.monotonic() > end:
                raise AssertionError(f"no {text!r} in the bridge's log:\n{self.log()}")
            time.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        time.sleep(0.05)  # let the reader thread take the last lines
        return proc.returncode

    def __enter__(self) -> BridgeProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
