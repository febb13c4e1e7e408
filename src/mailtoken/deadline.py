"""A whole-command deadline: token commands must never hang a mail client, whatever the network does."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager

from .errors import DeadlineExceeded


class Deadline:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def remaining(self) -> float:
        return max(0.0, self.end - time.monotonic())

    @contextmanager
    def enforced(self, account: str | None = None) -> Iterator[None]:
        """Raise DeadlineExceeded in the main thread when time is up, even inside a blocking read."""
        if not hasattr(signal, "setitimer"):  # pragma: no cover - Windows: network timeouts only
            yield
            return

        def expire(signum: int, frame: object) -> None:
            raise DeadlineExceeded(
                f"gave up after {self.seconds:g} s (--timeout): the identity platform or another mailtoken "
                "did not answer in time: try again later",
                account=account,
            )

        previous = signal.signal(signal.SIGALRM, expire)
        signal.setitimer(signal.ITIMER_REAL, max(self.remaining(), 0.001))
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


@contextmanager
def critical() -> Iterator[None]:
    """Hold the deadline's alarm while a grant is being saved: a half-done save is worse than a late one."""
    if not hasattr(signal, "pthread_sigmask"):  # pragma: no cover
        yield
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGALRM})
