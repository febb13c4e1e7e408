"""`mailtoken man`: open the man pages of this installation, wherever the installer put them.

pip puts them under the environment's share/man, which man(1) searches only for a few prefixes: /usr, /usr/local,
~/.local, and a venv's when its bin/ is on PATH. pipx before 1.5 (Debian 12 ships 1.1) leaves them inside its own
venv, out of man's sight. Rather than write into the user's folders on some first run (and leave files behind
after `pipx uninstall`), mailtoken finds its own pages through the files its installer recorded.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ..errors import NotInstalled
from . import Result

PAGES = {"mailtoken": ("man1", "mailtoken.1"), "mailtoken.toml": ("man5", "mailtoken.toml.5")}


def _candidates() -> list[Path]:
    """share/man folders that may hold this installation's pages, most specific first."""
    import importlib.metadata

    found = []
    # The distribution beside this very package (not some other mailtoken on sys.path): its RECORD lists the pages.
    site = str(Path(__file__).resolve().parents[2])
    for dist in importlib.metadata.distributions(name="mailtoken", path=[site]):
        for file in dist.files or ():
            if file.name == "mailtoken.1" and file.parent.name == "man1":
                found.append(Path(os.path.normpath(str(dist.locate_file(file)))).parent.parent)
    found.append(Path(sys.prefix) / "share" / "man")  # RECORD-less installs: Debian's package, most distributions
    return found


def _installed(page: str) -> Path | None:
    section, name = PAGES[page]
    for root in _candidates():
        for candidate in (root / section / name, root / section / (name + ".gz")):
            if candidate.is_file():
                return candidate
    return None


def _not_installed(page: str) -> NotInstalled:
    return NotInstalled(
        f"the {page} man page is not installed with this mailtoken ({sys.prefix}); "
        f"read it online or in a source checkout with 'man -l man/{PAGES[page][1]}'"
    )


def page_path(page: str) -> Path:
    installed = _installed(page)
    if installed is not None:
        return installed
    # An editable install (a developer's) gets no data files: the checkout it runs from has the page.
    checkout = Path(__file__).resolve().parents[3]
    if (checkout / "pyproject.toml").is_file() and (checkout / "man" / PAGES[page][1]).is_file():
        return checkout / "man" / PAGES[page][1]
    raise _not_installed(page)


def man_dir() -> Path:
    """The folder holding man1/ and man5/, for MANPATH (a checkout's flat man/ would not do)."""
    installed = _installed("mailtoken")
    if installed is None:
        raise _not_installed("mailtoken")
    return installed.parent.parent


def run(page: str, path_only: bool) -> Result:
    """`--path`: the folder for MANPATH; else hand the terminal to man(1) with the page (never returns)."""
    if path_only:
        return Result(stdout=str(man_dir()))
    path = str(page_path(page))
    try:
        # A path with a slash is read as a file by man-db, mandoc and macOS's man alike.
        os.execvp("man", ["man", path])
    except OSError:
        raise NotInstalled(f"no man program to show {path}: install man-db or mandoc, or read the file") from None
