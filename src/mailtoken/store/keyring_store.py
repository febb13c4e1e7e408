"""The grant in the OS keyring through `keyring` (Secret Service, macOS Keychain, Windows Credential Manager).

keyring is imported here only: importing it and detecting a backend costs over 100 ms.
"""

from __future__ import annotations

import contextlib
import hashlib
from typing import Any

from ..errors import StoreUnavailable

SERVICE = "mailtoken"
# Windows Credential Manager caps a secret at 2560 bytes of UTF-16; larger grants are split.
CHUNKED_BACKENDS = {"keyring.backends.Windows.WinVaultKeyring": 1200}
_FIX = (
    'set store = "file" for this account, or run mailtoken where the keyring is reachable '
    "(a desktop session; for cron/systemd pass DBUS_SESSION_BUS_ADDRESS)"
)


def _backend_name(kr: Any) -> str:
    return f"{type(kr).__module__}.{type(kr).__name__}"


class KeyringStore:
    name = "keyring"

    def __init__(self, chunk_chars: int | None = None) -> None:
        self._kr: Any = None
        self._chunk_chars = chunk_chars

    def _keyring(self) -> Any:
        if self._kr is not None:
            return self._kr
        try:
            import keyring
            import keyring.backends.chainer
            import keyring.backends.fail
        except ImportError:  # pragma: no cover - keyring is a dependency
            raise StoreUnavailable(f"the keyring module is not installed: {_FIX}") from None
        try:
            kr = keyring.get_keyring()
        except Exception as exc:  # keyring's detection raises anything its backends raise
            raise StoreUnavailable(f"keyring backend failed to load ({type(exc).__name__}): {_FIX}") from None
        if isinstance(kr, keyring.backends.fail.Keyring) or type(kr).__module__ == "keyring.backends.null":
            raise StoreUnavailable(f"no keyring backend is usable (no Secret Service on D-Bus?): {_FIX}")
        if isinstance(kr, keyring.backends.chainer.ChainerBackend) and not kr.backends:
            raise StoreUnavailable(f"no keyring backend is usable (no Secret Service on D-Bus?): {_FIX}")
        self._kr = kr
        return kr

    def describe(self, account: str | None = None) -> str:
        try:
            return f"keyring ({_backend_name(self._keyring())})"
        except StoreUnavailable:
            return "keyring (unavailable)"

    def _guard(self, what: str, fn: Any) -> Any:
        from keyring.errors import KeyringLocked

        try:
            return fn()
        except KeyringLocked:
            raise StoreUnavailable(
                "the keyring is locked: unlock it (log in to your desktop session, or unlock the 'login' "
                "collection with your keyring tool) and retry"
            ) from None
        except Exception as exc:
            # Backend errors can be anything (D-Bus, Secret Service prompts); their text never holds our secret
            # but may be long: keep the type and the first line.
            first = str(exc).splitlines()[0][:160] if str(exc) else ""
            msg = f"the keyring failed to {what} ({type(exc).__name__}{': ' + first if first else ''})"
            if "unlock" in first.lower() or "locked" in first.lower():
                msg += ": unlock the keyring and retry"
            else:
                msg += f": {_FIX}"
            raise StoreUnavailable(msg) from None

    def check(self) -> None:
        kr = self._keyring()
        # A read proves the collection is reachable and unlocked; detection alone does not.
        self._guard("read", lambda: kr.get_password(SERVICE, "mailtoken-probe"))

    def _limit(self) -> int | None:
        if self._chunk_chars is not None:
            return self._chunk_chars
        return CHUNKED_BACKENDS.get(_backend_name(self._keyring()))

    def load(self, account: str) -> str | None:
        kr = self._keyring()
        head: str | None = self._guard("read", lambda: kr.get_password(SERVICE, account))
        if head is None or not head.startswith("chunks "):
            return head
        _, gen, count, digest = head.split(" ")
        parts = [
            self._guard("read", lambda i=i: kr.get_password(SERVICE, f"{account}#{gen}.{i}")) for i in range(int(count))
        ]
        if any(p is None for p in parts):
            raise StoreUnavailable(f"the keyring holds an incomplete grant for {account}", account=account)
        blob = "".join(p for p in parts if p is not None)
        if hashlib.sha256(blob.encode()).hexdigest()[:16] != digest:
            raise StoreUnavailable(f"the keyring holds a corrupt grant for {account}", account=account)
        return blob

    def save(self, account: str, blob: str) -> None:
        kr = self._keyring()
        limit = self._limit()
        old = self._guard("read", lambda: kr.get_password(SERVICE, account))
        gen = None
        if limit is None or len(blob) <= limit:
            self._guard("write", lambda: kr.set_password(SERVICE, account, blob))
        else:
            # New chunks under a new generation first, then one write of the head switches to them: a crash
            # at any point leaves a complete grant, the old or the new.
            gen = hashlib.sha256(blob.encode()).hexdigest()[:8]
            chunks = [blob[i : i + limit] for i in range(0, len(blob), limit)]
            for i, chunk in enumerate(chunks):
                self._guard("write", lambda i=i, chunk=chunk: kr.set_password(SERVICE, f"{account}#{gen}.{i}", chunk))
            digest = hashlib.sha256(blob.encode()).hexdigest()[:16]
            self._guard("write", lambda: kr.set_password(SERVICE, account, f"chunks {gen} {len(chunks)} {digest}"))
        if old and old.startswith("chunks ") and old.split(" ")[1] != gen:
            self._delete_chunks(account, old)

    def _delete_chunks(self, account: str, head: str) -> None:
        kr = self._keyring()
        _, gen, count, _ = head.split(" ")
        for i in range(int(count)):
            # Already gone, or the backend refuses: garbage, not a lost grant.
            with contextlib.suppress(Exception):
                kr.delete_password(SERVICE, f"{account}#{gen}.{i}")

    def delete(self, account: str) -> bool:
        kr = self._keyring()
        head = self._guard("read", lambda: kr.get_password(SERVICE, account))
        if head is None:
            return False
        if head.startswith("chunks "):
            self._delete_chunks(account, head)
        self._guard("delete", lambda: kr.delete_password(SERVICE, account))
        return True
