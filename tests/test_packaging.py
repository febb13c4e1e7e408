"""Install and package as the README says (issue 12): its install blocks run verbatim in an empty HOME on this
Debian 12, the sdist and the wheel carry what users and packagers expect, and the Debian package builds
lintian-clean and runs. pipx and pip fetch mailtoken's dependencies from PyPI (the only network these tests use).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import mailtoken
from tests.conftest import Env, require

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
VERSION = mailtoken.__version__
SKIP_IN_COPY = {".git", ".venv", "node_modules", "build", "dist", ".pybuild", "__pycache__", ".pytest_cache"}
# Debian's own tools and interpreter: a pyenv shim or our venv on PATH would change what is tested.
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def _tree_copy(dest: Path) -> Path:
    """The source tree as a user would have it (no venv, no build output), so installs don't write into ours."""

    def ignore(folder: str, names: list[str]) -> set[str]:
        return {n for n in names if n in SKIP_IN_COPY or n.endswith(".egg-info")}

    shutil.copytree(ROOT, dest, ignore=ignore, symlinks=True)
    return dest


def _readme_block(marker: str) -> list[str]:
    text = (ROOT / "README.md").read_text()
    match = re.search(rf"<!-- tested: {marker} -->\n```sh\n(.*?)```", text, re.S)
    assert match, f"README.md has no sh block marked 'tested: {marker}'"
    return [line for line in match.group(1).splitlines() if line.strip()]


@pytest.fixture(scope="module")
def pip_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One pip download cache for this module's installs, outside their HOMEs: the second install of the same
    dependencies need not fetch them again."""
    return tmp_path_factory.mktemp("pip-cache")


def _clean_home(tmp_path: Path, pip_cache: Path) -> dict[str, str]:
    """A new user's environment: an empty HOME, the system PATH without ~/.local/bin, no venv, no pipx settings."""
    home = tmp_path / "home"
    home.mkdir()
    return {
        "HOME": str(home),
        "PATH": SYSTEM_PATH,
        "LANG": "C.UTF-8",
        "USE_EMOJI": "0",
        "TERM": "dumb",
        "PIP_CACHE_DIR": str(pip_cache),
    }


def _run_block(
    lines: list[str], cwd: Path, env: dict[str, str], tmp_path: Path, login: bool = False
) -> subprocess.CompletedProcess[str]:
    """Each line in bash -e, in order. `sudo apt install PKG…` checks that the packages are installed instead of
    running apt (the test command installs them; apt here would contend for dpkg's lock with other runs)."""
    script = tmp_path / "block.sh"
    prelude = (
        "sudo() {\n"
        '  [ "$1 $2" = "apt install" ] || { echo "unexpected sudo $*" >&2; return 1; }\n'
        "  shift 2\n"
        '  for p in "$@"; do dpkg-query -W -f=\'${Status}\\n\' "$p" | grep -q "install ok installed" '
        '|| { echo "$p is not installed" >&2; return 1; }; done\n'
        "}\n"
        "set -ex\n"
    )
    script.write_text(prelude + "\n".join(lines) + "\n")
    return subprocess.run(
        ["bash", *(["-l"] if login else []), str(script)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        stdin=subprocess.DEVNULL,
    )


def _login_shell(env: dict[str, str], command: str) -> subprocess.CompletedProcess[str]:
    """A new terminal after the install: a login bash reading the startup files that `pipx ensurepath` edited."""
    return subprocess.run(
        ["bash", "-lc", command], env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL
    )


@pytest.mark.integration
def test_readme_debian_pipx_install_works_in_a_clean_home(tmp_path: Path, pip_cache: Path) -> None:
    require("pipx", "man", "/usr/bin/python3")
    env = _clean_home(tmp_path, pip_cache)
    lines = _readme_block("debian-pipx")
    assert lines[0] == "sudo apt install pipx" and lines[-1] == "pipx install .", "the block's order changed"
    src = _tree_copy(tmp_path / "src")
    result = _run_block(lines, src, env, tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # "in a new terminal": a login shell, which reads the startup files `pipx ensurepath` edited.
    result = _run_block(_readme_block("debian-pipx-new-terminal"), tmp_path, env, tmp_path, login=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.startswith(f"mailtoken {VERSION}\n")
    # `mailtoken man` showed the page (man writes plain text when stdout is no terminal).
    assert re.search(r"^NAME\n\s+mailtoken\b", result.stdout, re.M), result.stdout[-2000:]

    home = Path(env["HOME"])
    launcher = home / ".local" / "bin" / "mailtoken"
    assert launcher.is_symlink(), "pipx did not link the launcher into ~/.local/bin"
    script = launcher.resolve()
    first, rest = script.read_text().split("\n", 1)
    assert first == f"#!{script.parent / 'python'}", "pipx's pip did not rewrite the launcher to its venv"
    assert "import re" not in rest and "from mailtoken.__main__ import main" in rest

    # A new terminal finds the command (ensurepath) and, with the README's MANPATH line, `man mailtoken`.
    found = _login_shell(env, "command -v mailtoken && mailtoken --version")
    assert found.returncode == 0 and found.stdout.split() == [str(launcher), "mailtoken", VERSION], found
    pages = _login_shell(env, 'export MANPATH="$(mailtoken man --path):" && man -w mailtoken mailtoken.toml')
    assert pages.returncode == 0, pages.stderr
    assert [Path(p).name for p in pages.stdout.split()] == ["mailtoken.1", "mailtoken.toml.5"]
    assert all(Path(p).is_relative_to(home / ".local") for p in pages.stdout.split())

    # Nothing outside pipx's own folders: after `pipx uninstall` no mailtoken file is left in HOME.
    removed = subprocess.run(["pipx", "uninstall", "mailtoken"], env=env, capture_output=True, text=True, timeout=120)
    assert removed.returncode == 0, removed.stderr
    left = sorted(home.rglob("*mailtoken*"))
    assert left == [], left


@pytest.mark.integration
def test_readme_plain_venv_install_works_in_a_clean_home(tmp_path: Path, pip_cache: Path) -> None:
    require("/usr/bin/python3")
    env = _clean_home(tmp_path, pip_cache)
    src = _tree_copy(tmp_path / "src")
    result = _run_block(_readme_block("venv"), src, env, tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == f"mailtoken {VERSION}"
    venv = Path(env["HOME"]) / ".local" / "share" / "mailtoken" / "venv"
    shebang = (venv / "bin" / "mailtoken").read_text().split("\n", 1)[0]
    assert shebang in (f"#!{venv}/bin/python", f"#!{venv}/bin/python3"), f"pip did not rewrite it: {shebang}"
    man = subprocess.run(
        [str(Path(env["HOME"]) / ".local" / "bin" / "mailtoken"), "man", "--path"], env=env, capture_output=True
    )
    assert man.stdout.decode().strip() == str(venv / "share" / "man"), "the symlinked launcher finds its venv's pages"
    for shared in ("bash-completion/completions/mailtoken.bash", "systemd/user/mailtoken-refresh.timer"):
        assert (venv / "share" / shared).is_file(), shared


# --- artifacts --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """`python -m build` on a copy of the tree, offline: the test venv has the build backend."""
    tmp = tmp_path_factory.mktemp("dist")
    src = _tree_copy(tmp / "src")
    out = tmp / "out"
    result = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(src)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (wheel,) = out.glob("*.whl")
    (sdist,) = out.glob("*.tar.gz")
    return {"wheel": wheel, "sdist": sdist}


def test_twine_accepts_the_sdist_and_the_wheel(dists: dict[str, Path]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", str(dists["wheel"]), str(dists["sdist"])],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("PASSED") == 2, result.stdout


def test_wheel_carries_the_launcher_man_pages_completions_and_units(dists: dict[str, Path]) -> None:
    assert dists["wheel"].name == f"mailtoken-{VERSION}-py3-none-any.whl", "the version comes from mailtoken/__init__"
    data = f"mailtoken-{VERSION}.data"
    with zipfile.ZipFile(dists["wheel"]) as whl:
        names = set(whl.namelist())
        launcher = whl.read(f"{data}/scripts/mailtoken").decode()
        metadata = whl.read(f"mailtoken-{VERSION}.dist-info/METADATA").decode()
    for path in (
        "share/man/man1/mailtoken.1",
        "share/man/man5/mailtoken.toml.5",
        "share/bash-completion/completions/mailtoken.bash",
        "share/zsh/site-functions/_mailtoken",
        "share/fish/vendor_completions.d/mailtoken.fish",
        "share/systemd/user/mailtoken-refresh.service",
        "share/systemd/user/mailtoken-refresh.timer",
    ):
        assert f"{data}/data/{path}" in names, f"the wheel lacks {path}"
    # "#!python" is what installers rewrite; an entry point would make pip generate its `import re` wrapper.
    assert launcher.startswith("#!python\n")
    assert f"mailtoken-{VERSION}.dist-info/entry_points.txt" not in names
    assert f"\nVersion: {VERSION}\n" in metadata
    assert "mailtoken/providers/catalog.toml" in names


def test_sdist_carries_tests_contrib_and_the_packaging(dists: dict[str, Path]) -> None:
    with tarfile.open(dists["sdist"]) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    for path in (
        "bin/mailtoken",
        "tests/test_packaging.py",
        "tests/fakes/entra.py",
        "tests/oidc/package-lock.json",
        "contrib/msmtp",
        "contrib/completions/_mailtoken",
        "contrib/packaging/arch/PKGBUILD",
        "contrib/packaging/homebrew/mailtoken.rb",
        "debian/control",
        "debian/rules",
        "scripts/test",
        "scripts/build-deb",
        "bench/bench.py",
        "man/mailtoken.1",
    ):
        assert any(n == path or n.startswith(path + "/") for n in names), f"the sdist lacks {path}"
    assert not any("node_modules" in n or "__pycache__" in n for n in names)


def test_every_recipe_carries_the_one_version() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in pyproject["project"] and "version" in pyproject["project"]["dynamic"]
    changelog = (ROOT / "debian" / "changelog").read_text().split("\n", 1)[0]
    assert changelog.startswith(f"mailtoken ({VERSION}) "), changelog
    pkgbuild = (ROOT / "contrib" / "packaging" / "arch" / "PKGBUILD").read_text()
    assert f"\npkgver={VERSION}\n" in pkgbuild
    formula = (ROOT / "contrib" / "packaging" / "homebrew" / "mailtoken.rb").read_text()
    assert f'version "{VERSION}"' in formula
    for recipe in (pkgbuild, formula):
        assert "Not tested" in recipe.split("\n\n", 1)[0], "an untestable recipe must say so in its header"


# --- the Debian package ---------------------------------------------------------------------------------------


@pytest.mark.integration
def test_debian_package_builds_lintian_clean_and_runs(tmp_path: Path, signed_in: Env) -> None:
    require("dpkg-buildpackage", "lintian", "dh_python3", "/usr/bin/python3", "man")
    build = subprocess.run(
        ["bash", str(ROOT / "scripts" / "build-deb"), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    deb = Path(build.stdout.strip().splitlines()[-1])
    assert deb.name == f"mailtoken_{VERSION}_all.deb"

    fields = subprocess.run(["dpkg-deb", "-f", str(deb), "Depends"], capture_output=True, text=True, check=True)
    # The floors of pyproject's dependencies, carried over by dh_python3 (debian/py3dist-overrides names them all).
    overrides = dict(line.split()[:2] for line in (ROOT / "debian" / "py3dist-overrides").read_text().splitlines())
    overrides = {name.lower(): package.rstrip(";") for name, package in overrides.items()}
    floors = pyproject_dependencies()
    assert {"msal", "filelock"} <= {name for name, _ in floors}
    for name, floor in floors:
        assert name in overrides, f"debian/py3dist-overrides lacks {name}"
        assert f"{overrides[name]} (>= {floor})" in fields.stdout, fields.stdout

    root = tmp_path / "root"
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    launcher = root / "usr" / "bin" / "mailtoken"
    assert launcher.read_text().startswith("#!/usr/bin/python3\n")
    # The package's own files on Debian's python3; its dependencies, which Debian 12 has too old, from our venv.
    site = next(Path(sys.prefix, "lib").glob("python3*/site-packages"))
    env = {**signed_in.vars, "PATH": SYSTEM_PATH, "PYTHONPATH": f"{root}/usr/lib/python3/dist-packages:{site}"}
    version = subprocess.run(["/usr/bin/python3", str(launcher), "--version"], env=env, capture_output=True, text=True)
    assert version.stdout == f"mailtoken {VERSION}\n", version.stderr
    cached = subprocess.run(["/usr/bin/python3", str(launcher), "token", "work"], env=env, capture_output=True)
    assert cached.returncode == 0 and cached.stdout == signed_in.run("token", "work").stdout.encode()

    for page, title in (("man1/mailtoken.1.gz", "MAILTOKEN(1)"), ("man5/mailtoken.toml.5.gz", "MAILTOKEN.TOML(5)")):
        shown = subprocess.run(
            ["man", "-l", str(root / "usr/share/man" / page)],
            env={"PATH": SYSTEM_PATH, "MANPAGER": "cat", "LANG": "C.UTF-8"},
            capture_output=True,
            text=True,
        )
        assert shown.returncode == 0 and shown.stdout.startswith(title), shown.stderr
    service = (root / "usr/lib/systemd/user/mailtoken-refresh.service").read_text()
    assert "\nExecStart=/usr/bin/mailtoken refresh --all\n" in service
    for path in (
        "usr/share/bash-completion/completions/mailtoken",
        "usr/share/zsh/vendor-completions/_mailtoken",
        "usr/share/fish/vendor_completions.d/mailtoken.fish",
    ):
        assert (root / path).is_file(), path


def pyproject_dependencies() -> list[tuple[str, str]]:
    """(name, minimum) of each runtime dependency with a floor, e.g. ("msal", "1.28"), markers or not."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    floors = [re.fullmatch(r"([A-Za-z0-9_.-]+)>=([0-9.]+)(;.*)?", d) for d in deps]
    return [(m.group(1).lower(), m.group(2)) for m in floors if m]


def test_python_m_mailtoken_and_the_launcher_run_the_same_code(signed_in: Env) -> None:
    via_module = subprocess.run(
        [sys.executable, "-m", "mailtoken", "token", "work"], env=signed_in.vars, capture_output=True, text=True
    )
    assert via_module.returncode == 0 and via_module.stdout == signed_in.run("token", "work").stdout
    assert signed_in.run("--version").stdout == f"mailtoken {VERSION}\n"
    assert os.access(Path(sys.executable).parent / "mailtoken", os.X_OK)


def test_man_verb_finds_this_installations_pages_and_says_when_man_is_missing(env: Env, tmp_path: Path) -> None:
    direct_url = importlib.metadata.distribution("mailtoken").read_text("direct_url.json") or "{}"
    if json.loads(direct_url).get("dir_info", {}).get("editable"):
        # An editable install gets no data files: the pages come from the checkout, which has no man1/ for MANPATH.
        pages, folder = ROOT / "man", env.run("man", "--path")
        assert folder.returncode == 69 and "man page is not installed" in folder.stderr, folder.stderr
        page = pages / "mailtoken.1"
    else:
        pages = Path(sys.prefix) / "share" / "man"
        assert env.run("man", "--path").stdout == f"{pages}\n"
        page = pages / "man1" / "mailtoken.1"
    shown = env.run("man", "mailtoken.toml", env={**env.vars, "MANPAGER": "cat", "PAGER": "cat"})
    assert shown.returncode == 0 and shown.stdout.startswith("MAILTOKEN.TOML(5)"), shown.stderr
    empty = tmp_path / "no-programs"
    empty.mkdir()
    missing = env.run("man", env={**env.vars, "PATH": str(empty)})
    assert missing.returncode == 69 and missing.stdout == ""
    assert missing.stderr == f"mailtoken: no man program to show {page}: install man-db or mandoc, or read the file\n"
