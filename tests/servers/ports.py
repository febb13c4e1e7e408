"""Free TCP ports on 127.0.0.1, chosen at run time."""

from __future__ import annotations

import socket
import time


def free_port(host: str = "127.0.0.1") -> int:
    # Bind-and-release: another process could take the port before the server binds it, but tests on one
    # machine rarely race, and a taken port fails loudly at startup.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_listening(host: str, port: int, timeout: float, alive=lambda: True) -> None:
    end = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            if not alive():
                raise RuntimeError(f"server for {host}:{port} exited during startup") from None
            if time.monotonic() > end:
                raise TimeoutError(f"nothing listens on {host}:{port} after {timeout:g} s") from None
            time.sleep(0.05)
