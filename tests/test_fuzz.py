"""Issue 5, promise 6: bad input. Property-based tests over config files and command lines.

Whatever the config holds (random TOML, wrong types, unknown keys, unicode, huge values) and wherever it is
(missing, unreadable, a folder, not UTF-8, too big), and whatever the command line says, mailtoken exits with a
usage or config error (64/78) and one line naming the file, the account and the key: never a traceback, never
an internal error (70). Account names cannot lead a path out of mailtoken's folders.
"""

from __future__ import annotations

import datetime
import math
import os
import shutil
import stat
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import tomlkit
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mailtoken import config, errors
from mailtoken.fast import cached, locations
from tests.conftest import CLIENT_ID, EMAIL, IN_CI, MAILTOKEN, Env
from tests.fakes.entra import FakeEntra

RUNS: Counter[str] = Counter()
PATH = "/home/u/.config/mailtoken/config.toml"
VALID_NAME_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._@+-"
PURE = settings(max_examples=200, deadline=None, database=None)
CLI = settings(
    max_examples=30,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def one_line(exc: errors.MailtokenError) -> str:
    line = errors.format_error(exc)
    assert "\n" not in line and "\r" not in line, f"not one line: {line!r}"
    return line


# --- strategies -----------------------------------------------------------------------------------------------

scalars = st.one_of(
    st.text(max_size=40),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
    st.booleans(),
    st.datetimes(timezones=st.none() | st.just(datetime.timezone.utc)),
    st.dates(),
    st.sampled_from(["", "x" * 2049, "é" * 3000, "line\nbreak", "nul\x00", "tab\there", "\u2028", "🙂" * 10]),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
account_names = st.one_of(
    st.text(alphabet=VALID_NAME_CHARS, min_size=1, max_size=70),
    st.text(min_size=0, max_size=20),
    st.sampled_from(["..", "../x", "a/b", "-rf", ".hidden", "x" * 65, "work\n", "ümlaut", "a b", "con"]),
)
keys = st.one_of(st.sampled_from(sorted(config.ACCOUNT_KEYS)), st.text(max_size=20))


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    accounts = draw(st.dictionaries(account_names, st.dictionaries(keys, values, max_size=6) | values, max_size=3))
    doc: dict[str, Any] = {"accounts": accounts} if draw(st.booleans()) else {}
    doc.update(draw(st.dictionaries(st.text(max_size=10), values, max_size=2)))
    return doc


def dumps(doc: dict[str, Any]) -> str | None:
    try:
        return tomlkit.dumps(doc)
    except Exception:  # tomlkit cannot write everything (e.g. some keys); such documents are skipped
        return None


# --- config.parse: pure, fast, many examples ------------------------------------------------------------------


@PURE
@given(st.one_of(documents().map(dumps), st.text(max_size=300)))
@example("a = " + "[" * 3000 + "]" * 3000)  # nesting deep enough to exhaust tomllib's recursion
@example("[accounts.work]\n" + '"key\\nwith a line break" = 1\n')
@example('[accounts."../../etc"]\nemail = "a@b.c"\nclient_id = "x"\n')
@example("[accounts]\nwork = 1\n")
@example("accounts = 1\n")
def test_any_config_text_gives_a_config_or_one_config_error(text: str | None) -> None:
    if text is None:
        return
    RUNS["config.parse (random TOML and text)"] += 1
    try:
        cfg = config.parse(text, PATH)
    except errors.ConfigError as exc:
        assert one_line(exc).startswith(f"mailtoken: {PATH}") or PATH in exc.message
        return
    for name in cfg.accounts:
        assert locations.valid_account_name(name)


def valid_account(draw: st.DrawFn) -> dict[str, Any]:
    local = draw(st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789._-", min_size=1, max_size=12))
    table: dict[str, Any] = {"email": f"{local}@contoso.com", "client_id": CLIENT_ID}
    if draw(st.booleans()):
        table["tenant"] = draw(st.sampled_from(["common", "organizations", "consumers", "contoso.com"]))
    if draw(st.booleans()):
        table["store"] = draw(st.sampled_from(config.STORES))
    return table


STR_KEYS = sorted(
    k
    for k, t in config.ACCOUNT_KEYS.items()
    if t is str and k not in getattr(config, "DEFAULT_KEYS", ()) and k not in getattr(config, "_MULTI_TYPE_KEYS", ())
)


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, str, str | None, str | None]:
    """A valid config with one fault; returns (text, kind, account, key) of what must be named."""
    name = draw(st.text(alphabet=VALID_NAME_CHARS, min_size=1, max_size=64).filter(locations.valid_account_name))
    table = valid_account(draw)
    doc: dict[str, Any] = {"accounts": {name: table}}
    kind = draw(st.sampled_from(["unknown-key", "wrong-type", "bad-value", "missing", "top-level"]))
    key: str | None
    if kind == "unknown-key":
        key = draw(st.text(min_size=1, max_size=30).filter(lambda k: k not in config.ACCOUNT_KEYS))
        table[key] = draw(scalars)
    elif kind == "wrong-type":
        key = draw(st.sampled_from(STR_KEYS))
        table[key] = draw(
            st.one_of(
                st.integers(),
                st.booleans(),
                st.floats(allow_nan=False),
                st.lists(st.integers(), max_size=2),
                st.dates(),
                st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
            )
        )
    elif kind == "bad-value":
        key = draw(st.sampled_from([k for k in STR_KEYS if k not in ("client_secret",)]))
        table[key] = draw(
            st.one_of(
                st.text(min_size=1, max_size=10).map(lambda t: t + "\x01"),
                st.integers(min_value=config.MAX_VALUE_CHARS + 1, max_value=50_000).map(lambda n: "y" * n),
                st.sampled_from(["a\nb", "tab\tbed", "\x7f"]),
            )
        )
    elif kind == "missing":
        key = draw(st.sampled_from(config.REQUIRED_KEYS))
        del table[key]
    else:
        key = draw(st.text(min_size=1, max_size=20).filter(lambda k: k not in config.TOP_LEVEL_KEYS))
        doc[key] = draw(scalars)
        name = None  # type: ignore[assignment]
    text = dumps(doc)
    if text is None:
        return draw(mutated())
    return text, kind, name, key


@PURE
@given(mutated())
def test_a_config_fault_is_named_by_file_account_and_key(case: tuple[str, str, str | None, str | None]) -> None:
    text, kind, name, key = case
    RUNS["config.parse (one fault in a valid config)"] += 1
    with pytest.raises(errors.ConfigError) as info:
        config.parse(text, PATH)
    line = one_line(info.value)
    message = info.value.message
    assert PATH in message
    if name is not None:
        assert f"[accounts.{name}]" in message, f"{kind}: account not named: {line}"
    assert key is not None and key in message, f"{kind}: key {key!r} not named: {line}"


# --- account names and paths ----------------------------------------------------------------------------------


@PURE
@given(st.text(max_size=80))
@example("..")
@example("../../etc/passwd")
@example("a/../../b")
@example("work\x00")
def test_a_valid_account_name_stays_inside_its_folder(name: str) -> None:
    RUNS["account names (path containment)"] += 1
    folder = "/state/mailtoken/grants"
    if not locations.valid_account_name(name):
        return
    for suffix in (".token", ".json", ".lock", ".rescue.json", ".rejected", ".wait"):
        path = os.path.join(folder, name + suffix)
        assert os.path.dirname(os.path.normpath(path)) == folder
        assert os.path.basename(path) == name + suffix and not name.startswith(".")


# --- option values: both parsers, one rule (issue 11, point 10) ------------------------------------------------

ODD_NUMBERS = ["²", "¹⁰", "١", "inf", "-inf", "nan", "1e309", "1_0", " 5", "0", "-1", "1e999", "99999999999999999999"]
number_text = st.one_of(st.sampled_from(ODD_NUMBERS), st.text(max_size=12), st.floats().map(repr))


@PURE
@given(st.sampled_from(["token", "xoauth2", "oauthbearer"]), st.sampled_from(["--timeout", "--port"]), number_text)
@example("token", "--timeout", "²")
@example("oauthbearer", "--port", "²")
def test_the_cached_path_takes_only_option_values_it_can_use(verb: str, option: str, value: str) -> None:
    """What the cached path's _parse accepts must convert: a crash there is a traceback on the cached path."""
    RUNS["cached-path option values"] += 1
    opts = cached._parse([verb, "work", option, value])
    if opts is None or option[2:] not in opts:
        return
    if option == "--timeout":
        assert math.isfinite(float(opts["timeout"])) and 0 < float(opts["timeout"]) <= 86400
    else:
        assert 0 < int(opts["port"]) < 65536


def test_odd_numbers_in_options_are_usage_errors(signed_in: Env, fake: FakeEntra) -> None:
    """`--timeout ²` was a traceback (exit 1) and `--timeout inf` an OverflowError (70): both parsers say 64."""
    cases = [["token", "work", "--timeout", v] for v in ("²", "inf", "1e309", "nan", "0", "١")]
    cases += [["xoauth2", "work", "--timeout=inf"], ["oauthbearer", "work", "--port", "²"]]
    cases += [["oauthbearer", "work", "--port", "99999999999999999999"], ["login", "work", "--timeout", "inf"]]
    cases += [["refresh", "--timeout", "1e309"], ["test", "work", "--timeout", "inf"]]
    for record in ("fresh", "stale"):
        if record == "stale":
            signed_in.age_record("work")
        for argv in cases:
            RUNS["odd option values (subprocess)"] += 1
            result = signed_in.run(*argv, timeout=60)
            check_failure(result, argv)
            assert result.returncode == 64, f"{argv} ({record} record): {result.returncode} {result.stderr}"
            option = "--port" if "--port" in argv else "--timeout"
            assert result.stderr.startswith(f"mailtoken: argument {option}: "), result.stderr
    assert fake.counts["refresh_token"] == 0, "a usage error must come before any refresh"


# --- the loopback receiver of login --browser (issue 11, point 2) -----------------------------------------------

query_values = st.one_of(st.text(max_size=20), st.sampled_from(["", "forged", "x" * 5000, "%00", "\u202e", "a&b=c"]))
queries = st.dictionaries(
    st.sampled_from(["code", "error", "state", "error_description", "session_state", "iss", "x"]), query_values
)
request_lines = st.one_of(
    queries.map(lambda q: f"GET /?{urllib.parse.urlencode(q)} HTTP/1.1".encode()),
    st.binary(max_size=200).filter(lambda b: b"\n" not in b),
    st.sampled_from([b"GET / HTTP/1.1", b"POST /?code=x HTTP/1.1", b"GET /favicon.ico HTTP/1.0", b"GET", b""]),
)


def test_no_request_but_the_right_one_ends_the_browsers_wait(env: Env, fake: FakeEntra) -> None:
    """Random requests (queries with and without code, error and a forged state; garbage) are each answered and
    ignored; the real redirect still signs in afterwards."""
    import re
    import socket
    import ssl
    import urllib.request

    from tests.flows import Login

    env.add_account(authority=fake.authority())
    fake.auto_approve = EMAIL
    login = Login(env, "work", "--browser", "--timeout", "120")
    try:
        end = time.monotonic() + 30
        while not any("/authorize?" in line for line in login.lines) and time.monotonic() < end:
            time.sleep(0.05)
        url = next(line.strip() for line in login.lines if "/authorize?" in line)
        port = int(re.search(r"redirect_uri=http%3A%2F%2Flocalhost%3A(\d+)", url).group(1))

        @settings(max_examples=60, deadline=None, database=None)
        @given(request_lines)
        def probe(line: bytes) -> None:
            RUNS["loopback requests"] += 1
            with socket.create_connection(("127.0.0.1", port), timeout=15) as conn:
                conn.sendall(line + b"\r\nHost: localhost\r\n\r\n")
                answer = conn.recv(65536)
            # Answered (an error page; http.server answers a garbled line HTTP/0.9-style, without headers) or
            # closed; never the page of a sign-in.
            assert b" 200 " not in answer.split(b"\r\n", 1)[0] and b"signed in" not in answer, answer[:300]
            assert login.proc.poll() is None, f"a foreign request ended the sign-in: {login.stderr}"

        probe()
        context = ssl.create_default_context(cafile=fake.ca_pem)
        try:
            urllib.request.build_opener(
                urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context), _NoRedirect()
            ).open(url, timeout=10)
        except urllib.error.HTTPError as redirect:
            location = redirect.headers["Location"].replace("//localhost:", "//127.0.0.1:")
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(location, timeout=10) as page:
            assert page.status == 200
        assert login.wait(30) == 0, login.stderr
    finally:
        if login.proc.poll() is None:
            login.proc.kill()
            login.proc.wait(10)
    assert fake.counts["authorization_code"] == 1


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # noqa: ANN002, ANN003
        return None


# --- through the installed command ----------------------------------------------------------------------------


def closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def offline(env: Env) -> Env:
    """A valid config (account 'work', nothing signed in) whose identity platform refuses connections."""
    env.add_account(authority=f"https://127.0.0.1:{closed_port()}/organizations")
    return env


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir()}


def check_failure(result: subprocess.CompletedProcess[str], argv: list[str]) -> None:
    shown = " ".join(repr(a) for a in argv)
    assert result.returncode != 70, f"internal error for {shown}: {result.stderr}"
    assert "Traceback" not in result.stderr, shown
    if result.returncode != 0:
        assert result.stdout == "", shown
        # -v adds "debug:" and "detail:" lines; the error itself is one line.
        lines = [
            ln for ln in result.stderr.splitlines() if not ln.startswith(("mailtoken: debug:", "mailtoken: detail:"))
        ]
        assert len(lines) == 1 and lines[0].startswith("mailtoken: "), f"{shown}: {result.stderr!r}"


VERBS = ["token", "xoauth2", "oauthbearer", "login", "logout", "status", "add", "refresh", "config", "test"]
arg_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=30)
args = st.one_of(
    arg_text,
    st.sampled_from(
        [
            "work",
            "--timeout",
            "-1",
            "nan",
            "1e999",
            "--user",
            "--host",
            "--port",
            "99999",
            "--raw",
            "-v",
            "--json",
            "--browser",
            "--device",
            "--",
            "-",
            "--timeout=0",
            "../work",
            "work/../work",
        ]
    ),
)


@CLI
@given(st.lists(args, max_size=5), st.sampled_from([*VERBS, None]))
@example(["work", "\nmailtoken: work: ok"], "token")
@example(["--timeout", "nan"], "token")
@example(["unrecognised\nsecond line"], "status")
def test_any_command_line_fails_cleanly(offline: Env, argv: list[str], verb: str | None) -> None:
    RUNS["command lines (subprocess)"] += 1
    full = [verb, *argv] if verb else argv
    before = files_under(offline.root)
    result = offline.run(*full, timeout=60)
    check_failure(result, full)
    if full and full[0] not in VERBS and full[0] not in ("-h", "--help", "--version", "-v", "--verbose"):
        assert result.returncode == 64, f"{full!r}: {result.returncode} {result.stderr}"
    created = files_under(offline.root) - before
    outside = [
        f
        for f in created
        if not f.startswith(("home/.local/state/mailtoken/", "run/mailtoken/", "home/.config/mailtoken/"))
    ]
    assert not outside, f"{full!r} wrote outside mailtoken's folders: {outside}"


@CLI
@given(st.one_of(documents().map(dumps), st.binary(max_size=200).map(lambda b: b.decode("latin-1"))))
def test_any_config_file_fails_cleanly_through_the_command(env: Env, text: str | None) -> None:
    if text is None:
        return
    RUNS["config files (subprocess)"] += 1
    env.write_config(text)
    result = env.run("token", "work", timeout=60)
    check_failure(result, ["token", "work"])
    try:
        config.parse(text, str(env.config_path))
    except errors.ConfigError:
        assert result.returncode == 78
        assert str(env.config_path) in result.stderr
        return
    assert result.returncode in (78, 77), result.stderr  # 'work' is not in it, or not signed in


@pytest.mark.parametrize(
    "kind",
    ["missing", "folder", "not-utf8", "too-big", "symlink-loop", "unreadable", "odd-name"],
)
def test_config_file_faults(env: Env, tmp_path: Path, kind: str) -> None:
    RUNS["config file faults"] += 1
    path = tmp_path / "conf" / "config.toml"
    path.parent.mkdir()
    needle = {
        "missing": "no config file at",
        "folder": "is a folder, not a config file",
        "not-utf8": "not UTF-8 text",
        "too-big": "larger than 1 MiB",
        "symlink-loop": "cannot be read",
        "unreadable": "cannot be read (permission denied)",
        "odd-name": "not a valid account name",
    }[kind]
    account = "work"
    if kind == "folder":
        path.mkdir()
    elif kind == "not-utf8":
        path.write_bytes(b'[accounts.work]\nemail = "\xff\xfe"\n')
    elif kind == "too-big":
        path.write_text("# " + "x" * (1 << 20) + "\n")
    elif kind == "symlink-loop":
        path.symlink_to(path)
    elif kind == "odd-name":
        env.config_path = path
        env.add_account(authority="https://127.0.0.1:9/organizations")
        account = "../../../etc/passwd"
    elif kind == "unreadable":
        path.write_text('[accounts.work]\nemail = "a@b.c"\nclient_id = "x"\n')
        path.chmod(0)
        if os.geteuid() == 0:
            return _unreadable_as_nobody(env, needle)
    before = files_under(env.root)
    result = env.run("token", account, env={"MAILTOKEN_CONFIG": str(path)})
    check_failure(result, ["token", account])
    assert result.returncode in (64, 78), result.stderr
    assert needle in result.stderr, result.stderr
    if kind != "odd-name":
        assert str(path) in result.stderr
    assert files_under(env.root) == before, "a failed call must not create files"
    # Nothing lands outside the folders, whatever the name.
    assert not any(".." in p or "passwd" in p for p in files_under(env.root))


def _unreadable_as_nobody(env: Env, needle: str) -> None:
    """root reads any file: run mailtoken as nobody, on a 0600 root-owned config in a folder nobody may enter."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        (pytest.fail if IN_CI else pytest.skip)("setpriv (util-linux) is needed to test as non-root")
    top = Path(tempfile.mkdtemp(prefix="mailtoken-unreadable-"))
    try:
        top.chmod(0o755)
        path = top / "config.toml"
        path.write_text('[accounts.work]\nemail = "a@b.c"\nclient_id = "x"\n')
        path.chmod(0o600)
        home = top / "nobody"
        home.mkdir(mode=0o777)
        home.chmod(0o777)
        result = subprocess.run(
            [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", MAILTOKEN, "token", "work"],
            capture_output=True,
            text=True,
            timeout=60,
            env={**env.vars, "HOME": str(home), "XDG_RUNTIME_DIR": "", "MAILTOKEN_CONFIG": str(path)},
            stdin=subprocess.DEVNULL,
        )
        check_failure(result, ["token", "work"])
        assert result.returncode == 78 and needle in result.stderr and str(path) in result.stderr, result.stderr
    finally:
        shutil.rmtree(top, ignore_errors=True)


def test_umask_does_not_matter_for_the_config_written_by_add(env: Env) -> None:
    RUNS["config file faults"] += 1
    result = env.run("add", "work", "--email", "a@contoso.com", "--client-id", CLIENT_ID, umask=0)
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(env.config_path.stat().st_mode) == 0o600


@pytest.fixture(scope="module", autouse=True)
def _report() -> Any:
    yield
    print(f"\nfuzz examples run: {dict(RUNS)} (total {sum(RUNS.values())})")
