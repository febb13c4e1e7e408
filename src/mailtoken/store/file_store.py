"""The grant in a 0600 file under the state folder, for machines without a usable keyring."""

from __future__ import annotations

import os

from .. import paths
from ..errors import StoreUnavailable
from ..fast import fsutil


class FileStore:
    name = "file"

    def __init__(self, folder: str | None = None) -> None:
        self.folder = folder or paths.grants_dir()

    def _path(self, account: str) -> str:
        return os.path.join(self.folder, account + ".json")

    def describe(self) -> str:
        return f"file {self.folder}{os.sep}<account>.json (mode 0600)"

    def check(self) -> None:
        try:
            fsutil.ensure_private_dir(self.folder)
        except OSError as exc:
            raise StoreUnavailable(f"file store {self.folder} is not usable: {exc}") from None

    def load(self, account: str) -> str | None:
        try:
            data = fsutil.read_private(self._path(account))
        except PermissionError as exc:
            raise StoreUnavailable(str(exc), account=account) from None
        except OSError as exc:
            raise StoreUnavailable(f"cannot read {self._path(account)}: {exc.strerror}", account=account) from None
        return None if data is None else data.decode("utf-8")

    def save(self, account: str, blob: str) -> None:
        try:
            fsutil.atomic_write(self._path(account), blob.encode("utf-8"))
        except OSError as exc:
            raise StoreUnavailable(
                f"cannot write {self._path(account)}: {exc.strerror or exc}", account=account
            ) from None

    def delete(self, account: str) -> bool:
        return fsutil.remove(self._path(account))
