"""Private files and folders: atomic writes (temp file, fsync, rename), 0600 files, 0700 folders.

Stdlib only: the record writer shares it with the hot path's reader, so the writers import what they need
(tempfile, contextlib) inside themselves: at module level they would cost every cached call.
"""

from __future__ import annotations

import os
import stat

FILE_MODE = 0o600
DIR_MODE = 0o700


def _create_missing(path: str) -> None:
    """Create `path` and any missing parents as 0700, whatever the umask; folders that exist are left alone."""
    import contextlib

    missing = []
    head = os.path.abspath(path)
    while not os.path.isdir(head):
        missing.append(head)
        parent = os.path.dirname(head)
        if parent == head:
            break
        head = parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):
            os.mkdir(folder, DIR_MODE)
        # mkdir's mode is masked by the umask; chmod is not.
        os.chmod(folder, DIR_MODE)


def ensure_private_dir(path: str) -> None:
    """Create `path` and any missing parents as 0700, whatever the umask; refuse a foreign or open folder."""
    _create_missing(path)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise NotADirectoryError(f"{path} is not a folder")
    if st.st_uid != os.getuid():
        raise PermissionError(f"{path} is owned by another user (uid {st.st_uid})")
    if st.st_mode & 0o077:
        os.chmod(path, DIR_MODE)


def write_users_file(path: str, data: bytes) -> None:
    """Replace a file the user owns and places (the config): through a symlink to its target, atomically, 0600.

    The folder is the user's (a dotfiles repository, $HOME): only the folders created here are made 0700.
    """
    _atomic_write(os.path.realpath(path), data, private_folder=False)


def atomic_write(path: str, data: bytes) -> None:
    """Replace `path` with `data` so that a reader or a crash sees the old or the new file, never a part."""
    _atomic_write(path, data, private_folder=True)


def replace_file(path: str, data: bytes, mode: int) -> None:
    """atomic_write for a file that is not a secret (a systemd unit: `mode` 0644) in a folder the caller made."""
    _atomic_write(path, data, private_folder=None, mode=mode)


def _atomic_write(path: str, data: bytes, private_folder: bool | None, mode: int = FILE_MODE) -> None:
    """The one atomic writer: a fresh temp file (mkstemp: O_EXCL|O_NOFOLLOW, so never a planted symlink or
    another's file) in the target's folder, `mode` set explicitly, fsync, rename, fsync of the folder.
    The folder: made private (True), its missing parts made 0700 (False), or left as it is (None)."""
    import contextlib
    import tempfile

    folder = os.path.dirname(os.path.abspath(path))
    if private_folder:
        ensure_private_dir(folder)
    elif private_folder is not None:
        _create_missing(folder)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f"{_TMP_PREFIX}{os.getpid()}-", suffix="~")
    try:
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(folder)
    _sweep(folder)


_TMP_PREFIX = ".tmp-"


def _sweep(folder: str) -> None:
    """Remove temp files that writers killed mid-write left behind (named .tmp-PID-*~; that PID is gone)."""
    import contextlib

    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        if not (name.startswith(_TMP_PREFIX) and name.endswith("~")):
            continue
        pid = name[len(_TMP_PREFIX) :].partition("-")[0]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(folder, name))
        except OSError:
            pass  # alive (another user's, or not ours to signal): leave it


def _fsync_dir(folder: str) -> None:
    # The rename is durable only once the folder's entry is on disk.
    try:
        dfd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def read_private(path: str) -> bytes | None:
    """Read a file we wrote; None if missing. Refuse one that others can read or that someone else owns."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return None
    except PermissionError:
        raise PermissionError(f"{path} cannot be read ({_why_denied(path)})") from None
    try:
        st = os.fstat(fd)
        if st.st_uid != os.getuid():
            raise PermissionError(f"{path} is owned by another user (uid {st.st_uid}); refusing to read it")
        if st.st_mode & 0o077:
            raise PermissionError(
                f"{path} is readable by others (mode {stat.S_IMODE(st.st_mode):04o}); "
                f"refusing to read it: run 'chmod 600 {path}' if you trust its contents, or delete it"
            )
        chunks = []
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _why_denied(path: str) -> str:
    """Why opening `path` for reading was refused, with what to do: said once, for every file read here."""
    try:
        st = os.lstat(path)
    except PermissionError:
        folder = os.path.dirname(os.path.abspath(path))
        return f"permission denied: a folder above it, like {folder}, may not be entered: check their modes"
    except OSError:
        return "permission denied"
    if st.st_uid != os.getuid():
        return f"permission denied: it is owned by another user (uid {st.st_uid})"
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o400:
        return f"permission denied although its mode is {mode:04o}: an ACL or a security module refuses it"
    return f"permission denied: its mode is {mode:04o}: run 'chmod 600 {path}' if you trust its contents, or delete it"


def remove(path: str) -> bool:
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True
