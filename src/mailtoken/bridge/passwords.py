"""Local passwords for devices (`mailtoken serve passwd/revoke/list`) and their verification by the bridge.

Each device NAME has a random password, shown once, and stored only as a salted scrypt hash in one 0600 JSON
file in the state folder. scrypt is slow on purpose (~0.5 s, 128 MiB): so the bridge runs it once per device
and process, then remembers that (device hash, password) verified as an HMAC under a key that exists only in
this process's memory. Later logins cost one HMAC. Revoking or replacing a device changes its stored hash,
which no remembered HMAC matches. A wrong password never deletes anything.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .. import paths
from ..errors import ConfigError, StoreUnavailable, UsageError
from ..fast import fsutil

if TYPE_CHECKING:
    from filelock import FileLock

# OWASP's scrypt floor (N=2^17, r=8, p=1) needs 128 MiB: above OpenSSL's default 32 MiB cap, hence maxmem.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 1 << 17, 8, 1
_MAXMEM_SLACK = 1 << 20
MAX_N = 1 << 20  # refuse parameters from the file that would need more than 1 GiB
PASSWORD_BYTES = 18  # 24 URL-safe characters: printers' password fields take about 32
FORMAT = 1
# Growing delay per source address after wrong passwords: 1, 2, 4 ... up to 30 s; forgotten after an hour.
DELAY_BASE, DELAY_MAX, DELAY_FORGET = 1.0, 30.0, 3600.0


def path() -> str:
    return os.path.join(paths.state_dir(), "serve", "passwords.json")


@dataclass(frozen=True)
class Device:
    name: str
    account: str
    created: int
    salt: bytes
    hash: bytes
    n: int
    r: int
    p: int
    hint: bytes | None = None  # 4 bytes of SHA-256 of the password: which device to scrypt (see _hint)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=32, maxmem=128 * n * r * p + _MAXMEM_SLACK
    )


def _hint(password: str) -> bytes:
    """A 32-bit fingerprint, so a login runs scrypt for its own device only, not for every device of the
    account (and for none on most wrong passwords). It tells a thief of the file 32 of a random password's 144
    bits: guessing stays out of reach."""
    return hashlib.sha256(b"mailtoken serve hint\0" + password.encode("utf-8", "surrogatepass")).digest()[:4]


def _load(file: str) -> dict[str, Device]:
    try:
        raw = fsutil.read_private(file)
    except PermissionError as exc:
        raise StoreUnavailable(str(exc)) from None
    if raw is None:
        return {}
    try:
        data = json.loads(raw)
        devices = {}
        for name, d in data["devices"].items():
            dev = Device(
                name=name,
                account=str(d["account"]),
                created=int(d["created"]),
                salt=base64.b64decode(d["salt"]),
                hash=base64.b64decode(d["hash"]),
                n=int(d["n"]),
                r=int(d["r"]),
                p=int(d["p"]),
                hint=base64.b64decode(d["hint"]) if "hint" in d else None,
            )
            if not (2 <= dev.n <= MAX_N and dev.r * dev.p <= 64):
                raise ValueError("scrypt parameters out of range")
            devices[name] = dev
        return devices
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(
            f"{file}: not a mailtoken password file ({type(exc).__name__}); remove it and rerun "
            "'mailtoken serve passwd' for each device"
        ) from None


def _save(file: str, devices: dict[str, Device]) -> None:
    data = {
        "format": FORMAT,
        "devices": {
            d.name: {
                "account": d.account,
                "created": d.created,
                "salt": base64.b64encode(d.salt).decode(),
                "hash": base64.b64encode(d.hash).decode(),
                "n": d.n,
                "r": d.r,
                "p": d.p,
                **({"hint": base64.b64encode(d.hint).decode()} if d.hint else {}),
            }
            for d in devices.values()
        },
    }
    fsutil.atomic_write(file, json.dumps(data, indent=1).encode())


def _valid_name(name: str) -> bool:
    return 0 < len(name) <= 64 and all(c.isalnum() or c in "._-@+" for c in name) and name.isascii()


def _locked(file: str) -> FileLock:
    from filelock import FileLock

    fsutil.ensure_private_dir(os.path.dirname(file))
    return FileLock(file + ".lock", timeout=30)


def create(name: str, account: str) -> str:
    """A new password for device NAME (replacing its old one); returns it. Only the hash is stored."""
    if not _valid_name(name):
        raise UsageError(f"'{name}' is not a device name (letters, digits, . _ - @ +; at most 64)")
    password = secrets.token_urlsafe(PASSWORD_BYTES)
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    file = path()
    with _locked(file):
        devices = _load(file)
        devices[name] = Device(
            name, account, int(time.time()), salt, digest, SCRYPT_N, SCRYPT_R, SCRYPT_P, _hint(password)
        )
        _save(file, devices)
    return password


def revoke(name: str) -> bool:
    file = path()
    with _locked(file):
        devices = _load(file)
        if name not in devices:
            return False
        del devices[name]
        _save(file, devices)
    return True


def listing() -> list[Device]:
    return sorted(_load(path()).values(), key=lambda d: d.name)


class Verifier:
    """The bridge's check of local passwords: scrypt once per device and process, an HMAC from memory after."""

    def __init__(self, file: str | None = None) -> None:
        self.file = file or path()
        self._key = secrets.token_bytes(32)  # never leaves this process: a memory dump is what it trades
        self._known: set[bytes] = set()
        self._devices: dict[str, Device] = {}
        self._stamp: tuple[int, int, int] | None = None
        self._load_lock = threading.Lock()
        # At most two scrypt computations at once (128 MiB each): a flood of logins cannot take the memory.
        self._slow = asyncio.Semaphore(2)
        self._failures: dict[str, tuple[int, float]] = {}
        self._inflight: dict[bytes, asyncio.Lock] = {}

    def devices(self) -> dict[str, Device]:
        """The file's devices, re-read when it changed (so `serve revoke` takes effect without a restart)."""
        try:
            st = os.stat(self.file)
            stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = None
        with self._load_lock:
            if stamp != self._stamp:
                self._devices = _load(self.file) if stamp else {}
                self._stamp = stamp
            return self._devices

    def _mac(self, dev: Device, password: str) -> bytes:
        return hmac.new(self._key, dev.hash + b"\0" + password.encode("utf-8", "surrogatepass"), "sha256").digest()

    async def check(self, account: str, password: str) -> str | None:
        """The name of the device of ACCOUNT whose password this is, or None."""
        candidates = [d for d in self.devices().values() if d.account == account]
        for dev in candidates:
            if self._mac(dev, password) in self._known:
                return dev.name
        if len(password) > 1024:
            return None
        hint = _hint(password)
        for dev in (d for d in candidates if d.hint is None or d.hint == hint):
            mac = self._mac(dev, password)
            # Single flight: a burst of logins with one password costs one scrypt, not one each.
            lock = self._inflight.setdefault(mac, asyncio.Lock())
            try:
                async with lock:
                    if mac in self._known:
                        return dev.name
                    async with self._slow:
                        digest = await asyncio.to_thread(_scrypt, password, dev.salt, dev.n, dev.r, dev.p)
            finally:
                if not lock.locked() and self._inflight.get(mac) is lock:
                    del self._inflight[mac]
            if hmac.compare_digest(digest, dev.hash):
                self._known.add(mac)
                return dev.name
        return None

    # -- per-source delay ----------------------------------------------------------------------------------

    def delay_for(self, source: str) -> float:
        """How long to hold a wrong-password reply to SOURCE: doubles with each recent failure."""
        count, last = self._failures.get(source, (0, 0.0))
        if time.monotonic() - last > DELAY_FORGET:
            count = 0
        return min(DELAY_MAX, DELAY_BASE * (2 ** min(count, 10))) if count else DELAY_BASE

    def failed(self, source: str) -> float:
        delay = self.delay_for(source)
        count, last = self._failures.get(source, (0, 0.0))
        if time.monotonic() - last > DELAY_FORGET:
            count = 0
        self._failures[source] = (count + 1, time.monotonic())
        if len(self._failures) > 10_000:  # bounded: forget the oldest half
            for key, _ in sorted(self._failures.items(), key=lambda kv: kv[1][1])[:5_000]:
                del self._failures[key]
        return delay

    def succeeded(self, source: str) -> None:
        self._failures.pop(source, None)
