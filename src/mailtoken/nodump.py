"""No core dump of a process that holds secrets (issue 11, point 11).

A crash with `ulimit -c unlimited` used to leave a core file in the working directory holding the refresh token
several times. The full CLI (every refresh and sign-in goes through it) calls `forbid()` first: RLIMIT_CORE 0
stops a core file, and PR_SET_DUMPABLE 0 also stops one piped to a handler (systemd-coredump, apport: the
kernel does not apply RLIMIT_CORE to a pipe: fs/coredump.c, "core limits are irrelevant to pipes") and keeps
other processes of the user from attaching with ptrace. Programs mailtoken starts (the browser, notify_cmd)
are dumpable again after exec: only the soft limit changes, so they may raise it.

The cached path does not call it: it holds only the access token it prints, and ctypes costs ~2 ms.
"""

from __future__ import annotations

import sys

_PR_SET_DUMPABLE = 4  # <linux/prctl.h>


def forbid() -> None:
    try:
        import resource

        _soft, hard = resource.getrlimit(resource.RLIMIT_CORE)
        resource.setrlimit(resource.RLIMIT_CORE, (0, hard))
    except (ImportError, ValueError, OSError):  # pragma: no cover - no resource module (Windows)
        pass
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
        except (ImportError, OSError, AttributeError):  # pragma: no cover - no libc prctl
            pass
