"""A whole-command deadline: token commands must never hang a mail client, whatever the network does."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager

from .errors import DeadlineExceeded


class Deadline:
    """`seconds` from `since` (a time.monotonic() value; default now)."""

    def __init__(self, seconds: float, *, since: float | None = None) -> None:
        self.seconds = seconds
        self.end = (time.monotonic() if since is None else since) + seconds

    @classmethod
    def for_command(cls, seconds: float) -> Deadline:
        """The one deadline of a whole command, counted from the process's start (fast.cached.STARTED): time
        the cached path spent waiting for another process's refresh is not given again."""
        from .fast.cached import STARTED

        return cls(seconds, since=STARTED)

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


# Deferred while a rotated grant is on its way to disk: the deadline's alarm, and the polite ways to stop a
# process (systemd's SIGTERM, Ctrl-C, a closed terminal). Only SIGKILL (and power loss) can cut a save short.
_HELD = {signal.SIGALRM, signal.SIGTERM, signal.SIGINT, signal.SIGHUP} if hasattr(signal, "SIGHUP") else set()


def hold() -> None:
    """Defer the alarm and termination signals until `release()`: the caller holds something it must not lose.

    A provider calls it as soon as the identity platform's answer is in: from then on that answer may carry a
    rotated refresh token, and dropping it (because the deadline fired a moment later) would cost a sign-in.
    """
    if _HELD and hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_BLOCK, _HELD)


def release() -> None:
    """End `hold()`. An alarm that came due meanwhile is dropped: the work it would have cut short is done."""
    if not (_HELD and hasattr(signal, "pthread_sigmask")):  # pragma: no cover
        return
    if signal.SIGALRM in signal.sigpending():
        signal.sigwait({signal.SIGALRM})
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _HELD)


@contextmanager
def critical() -> Iterator[None]:
    """Hold the deadline's alarm while a grant is being saved: a half-done save is worse than a late one."""
    hold()
    try:
        yield
    finally:
        release()
