"""The man pages (issue 7): clean under `mandoc -T lint`, and unable to drift from the code: every command and
option of the parser is in mailtoken.1, every config key in mailtoken.toml.5, every exit code and environment
variable in mailtoken.1, and both pages ship with the package.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mailtoken import cli, config, errors
from tests.conftest import require

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
MAN = ROOT / "man"
PAGES = ("mailtoken.1", "mailtoken.toml.5")
GLOBAL_OPTIONS = {"-h", "--help", "-v", "--verbose", "--version"}


def _render(page: str) -> str:
    require("mandoc")
    out = subprocess.run(["mandoc", "-T", "ascii", page], cwd=MAN, capture_output=True, text=True, check=True).stdout
    return re.sub(".\b", "", out)  # drop the overstrike that makes bold and underline


def _section(text: str, title: str) -> str:
    match = re.search(rf"^{title}\n(.*?)(?=^[A-Z][A-Z ]+\n|\Z)", text, re.M | re.S)
    assert match, f"no {title} section"
    return match.group(1)


def _verbs() -> dict[str, argparse.ArgumentParser]:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


@pytest.mark.parametrize("page", PAGES)
def test_lint_clean(page: str) -> None:
    require("mandoc")
    # cwd=man/: mandoc resolves .Xr to a page in the current folder (the two pages cite each other) or in
    # /usr/share/man (the mail clients' pages, installed by scripts/test).
    result = subprocess.run(["mandoc", "-T", "lint", page], cwd=MAN, capture_output=True, text=True)
    # Without a mandoc.db, Debian's mandoc adds "outdated mandoc.db lacks ..." notes about the system.
    notes = [line for line in result.stderr.splitlines() if "mandoc.db" not in line]
    assert (result.returncode, result.stdout, notes) == (0, "", [])


def test_every_command_and_option_is_documented() -> None:
    text = _render("mailtoken.1")
    synopsis = " ".join(_section(text, "SYNOPSIS").split())
    commands = _section(text, "COMMANDS")
    # Each command's entry starts at the list's first indentation: "     token account".
    starts = {m.group(1): m.start() for m in re.finditer(r"^ {5}([a-z0-9]+)\b", commands, re.M)}
    ends = sorted(starts.values()) + [len(commands)]
    for verb, parser in _verbs().items():
        assert f"mailtoken [-v] {verb}" in synopsis, f"{verb} is not in the SYNOPSIS"
        assert verb in starts, f"{verb} has no entry in COMMANDS"
        entry = commands[starts[verb] : ends[ends.index(starts[verb]) + 1]]
        for action in parser._actions:
            for option in set(action.option_strings) - GLOBAL_OPTIONS:
                assert option in entry, f"'{verb} {option}' is not described in its COMMANDS entry"
                assert option in synopsis, f"'{verb} {option}' is not in the SYNOPSIS"
            for choice in action.choices or () if not action.option_strings else ():
                assert choice in entry, f"'{verb} {choice}' is not described"
    for option in GLOBAL_OPTIONS:
        assert option in text


def test_every_exit_code_and_environment_variable_is_documented() -> None:
    text = _render("mailtoken.1")
    status = _section(text, "EXIT STATUS")
    assert sorted(int(c) for c in re.findall(r"^ {5}(\d+)\s", status, re.M)) == sorted(errors.EXIT_CODES)
    environment = _section(text, "ENVIRONMENT")
    used = set()
    for source in (ROOT / "src" / "mailtoken").rglob("*.py"):
        used |= set(re.findall(r'environ(?:\.get)?[(\[]"([A-Z_]+)"', source.read_text()))
        used |= set(re.findall(r'"(MAILTOKEN_[A-Z_]+)"', source.read_text()))
    assert used, "the scan found no environment variables: has the code style changed?"
    for name in sorted(used):
        assert name in environment, f"${name} is read by the code but not in ENVIRONMENT"


def test_every_config_key_is_documented() -> None:
    source = (MAN / "mailtoken.toml.5").read_text()
    for key in config.ACCOUNT_KEYS:
        assert re.search(rf"^\.It Ic {key} No = ", source, re.M), f"config key {key} has no entry in mailtoken.toml.5"
    defaults_entry = _section(_render("mailtoken.toml.5"), "DESCRIPTION").split("The defaults table", 1)[1]
    for key in config.DEFAULT_KEYS:
        assert key in defaults_entry, f"[defaults] {key} is not listed"
    for key in config.TOP_LEVEL_KEYS:
        assert f"[{key}" in source


def test_man_pages_ship_with_the_package() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    data_files = pyproject["tool"]["setuptools"]["data-files"]
    assert (data_files["share/man/man1"], data_files["share/man/man5"]) == (
        ["man/mailtoken.1"],
        ["man/mailtoken.toml.5"],
    )
    direct_url = importlib.metadata.distribution("mailtoken").read_text("direct_url.json")
    editable = bool(direct_url and json.loads(direct_url).get("dir_info", {}).get("editable"))
    if not editable:
        # A regular install (what scripts/test does) puts them where man(1) looks for this prefix.
        for folder, page in (("man1", "mailtoken.1"), ("man5", "mailtoken.toml.5")):
            installed = Path(sys.prefix) / "share" / "man" / folder / page
            assert installed.read_text() == (MAN / page).read_text(), f"{installed} is missing or stale"
