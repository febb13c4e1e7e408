"""Issue 11, point 1: hostile addresses and helper paths through every generator into the clients' own parsers.

Addresses are drawn from what RFC 5321/6531 allow (so the config accepts them: o'brien, sales%eu,
"a b"@example.com, UTF-8) and are full of ` $ ' " \\ % ; ( ) { } | & < > and shell payloads; the helper lives in
a folder named like one. Each generated block goes to the real parser: sh -n and sourcing, mutt and neomutt -Q,
msmtp --pretend, mpop -P, s-nail in batch mode, imapfilter's Lua, Python's ConfigParser as offlineimap3 and
getmail6 use it, and mbsync's config reader. The assertions: no command but the helper ran (nothing appeared
in the sandbox), the helper got exactly `token|xoauth2 ACCOUNT`, and the values read back are the address.
(aerc has no way to print its parsed config without a terminal session: its quoting is checked against a model
of go-ini's value parser, read from go-ini's source, in test_aerc_values_follow_go_ini.)
"""

from __future__ import annotations

import configparser
import os
import re
import shlex
import subprocess
import urllib.parse
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mailtoken import address, clientconf, config, quoting
from mailtoken.config import Account
from tests.conftest import require

# Each example runs about ten client processes: keep the count bounded (the whole file takes under 10 s).
REAL = settings(
    max_examples=int(os.environ.get("MAILTOKEN_FUZZ_EXAMPLES", "30")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
PURE = settings(max_examples=300, deadline=None, database=None)
PAYLOADS = ["$(touch pwned)", "`touch pwned`", "';touch pwned;'", '\\";touch pwned;\\"', "|touch pwned", "&touch pwned"]
ATOM_CHARS = list("`$'%{}|&#*?!~^=/+-_") + list("abcXYZ019") + ["é", "ü", "日本", "😀"]
QUOTED_CHARS = list("`$'%;(){}|&<> #@,:[]!*?") + ['\\"', "\\\\", "é", "a", "\\ "]
DOMAINS = ["example.com", "bücher.de", "a-b.example.org"]

atoms = st.lists(st.sampled_from(ATOM_CHARS), min_size=1, max_size=6).map("".join)
# Parentheses and blanks need quotes (quoted_locals); backticks, $ and braces do not.
dot_atoms = st.lists(atoms, min_size=1, max_size=3).map(".".join) | st.just("`touch${IFS}pwned`")
quoted_locals = st.lists(
    st.one_of(st.sampled_from(QUOTED_CHARS), st.sampled_from(PAYLOADS)), min_size=1, max_size=6
).map(lambda parts: '"' + "".join(parts) + '"')
locals_ = (dot_atoms | quoted_locals).filter(lambda local: len(local.encode()) <= 64)  # RFC 5321's limit
addresses = st.builds(lambda local, domain: f"{local}@{domain}", locals_, st.sampled_from(DOMAINS))


def _dot_atom(email: str) -> bool:
    return not email.startswith('"')


# --- the config keeps every such address possible, and refuses the invisible ---------------------------------


@PURE
@given(addresses)
@example("o'brien@example.com")
@example("sales%eu@example.com")
@example("\"x'$(touch p)'`touch q`\"@example.com")
def test_every_rfc_5321_address_is_accepted(email: str) -> None:
    assert address.problem(email) is None, email
    text = f'[accounts.work]\nemail = {_toml(email)}\nclient_id = "c"\nshared = [{_toml(email)}]\n'
    assert config.parse(text, "/c.toml").accounts["work"].email == email


UNSAFE = ["\u0085", "\u009b", "\u202e", "\u2066", "\u200b", "\u2028", "\x1b", "\x7f", "\n", "\ufeff"]


@PURE
@given(addresses, st.sampled_from(UNSAFE), st.sampled_from(["email", "shared"]), st.integers(0, 30))
def test_control_and_bidi_characters_are_refused_by_code_point(email: str, bad: str, key: str, at: int) -> None:
    at = min(at, len(email))
    value = email[:at] + bad + email[at:]
    if key == "email":
        text = f'[accounts.work]\nemail = {_toml(value)}\nclient_id = "c"\n'
    else:
        text = f'[accounts.work]\nemail = "ok@example.com"\nclient_id = "c"\nshared = ["a@b.org", {_toml(value)}]\n'
    with pytest.raises(config.ConfigError) as caught:
        config.parse(text, "/c.toml")
    message = caught.value.message
    assert f"/c.toml: [accounts.work] {key}: " in message and f"U+{ord(bad):04X}" in message, message
    assert address.unsafe_char(message) is None, f"the message echoes the character: {message!r}"


def test_an_unquoted_shell_payload_is_not_an_address() -> None:
    why = address.problem("x'$(touch p)'`touch q`@example.com")
    assert why and "needs quotes" in why


def _toml(value: str) -> str:
    # A TOML basic string: escape what TOML needs, keep the rest as is.
    out = value.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + "".join(c if ord(c) >= 0x20 and c != "\x7f" else f"\\u{ord(c):04x}" for c in out) + '"'


# --- the generated blocks, read by the clients -----------------------------------------------------------------


@pytest.fixture(scope="module")
def programs() -> None:
    require("sh", "mutt", "neomutt", "msmtp", "mpop", "s-nail", "imapfilter", "mbsync")


class Sandbox:
    """A folder with a fake helper (logs its argv, prints TOKEN) whose own path is hostile too."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.home = root / "home"
        self.home.mkdir()
        self.log = root / "helper.log"
        folder = root / "my $HOME's `bin` (x;y) %d"
        folder.mkdir()
        self.helper = folder / "mailtoken"
        self.helper.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$*\" >> {shlex.quote(str(self.log))}\necho TOKEN\n")
        self.helper.chmod(0o755)
        self.env = {"PATH": "/usr/bin:/bin", "HOME": str(self.home), "LC_ALL": "C.UTF-8", "TMPDIR": str(root)}
        self.before = self.listing()

    def listing(self) -> set[str]:
        return {str(p.relative_to(self.root)) for p in self.root.rglob("*")}

    def run(
        self, args: list[str], stdin: str = "", env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            args, input=stdin, capture_output=True, text=True, timeout=30, cwd=self.root, env=env or self.env
        )

    def write(self, name: str, text: str) -> Path:
        path = self.root / name
        path.write_text(text)
        path.chmod(0o600)
        return path

    def helper_calls(self) -> list[str]:
        calls = self.log.read_text().splitlines() if self.log.exists() else []
        self.log.unlink(missing_ok=True)
        return calls


def _mutt_values(output: str) -> dict[str, str]:
    values = {}
    for line in output.splitlines():
        m = re.match(r'^(?:set )?(\w+)\s?=\s?"(.*)"$', line)
        if m:
            values[m[1]] = re.sub(r"\\(.)", r"\1", m[2])
    return values


def _url_user(url: str) -> str:
    """The user of scheme://USER@host:port/..., decoded: the host part holds no @, so it ends at the last one."""
    return urllib.parse.unquote(url.partition("://")[2].rpartition("@")[0])


def _pretend(output: str) -> dict[str, str]:
    return dict(line.split(" = ", 1) for line in output.splitlines() if " = " in line)


@REAL
@given(email=addresses)
@example(email="o'brien@example.com")
@example(email="sales%eu@example.com")
@example(email='"x\'$(touch p)\'`touch q`;\\"|&<>{}"@example.com')
def test_hostile_addresses_reach_every_client_parser_intact(programs: None, tmp_path_factory, email: str) -> None:
    box = Sandbox(tmp_path_factory.mktemp("quoting"))
    acct = Account(name="work", email=email, client_id="c", imap="127.0.0.1:1", pop="127.0.0.1:1", smtp="127.0.0.1:1")
    target = clientconf.target(acct, helper=str(box.helper), hook=str(box.root / "hook %(x)s.py"))
    blocks = {
        client: clientconf.render(client, acct, helper=str(box.helper), hook=target.hook) + "\n"
        for client in clientconf.CLIENTS
    }
    token_cmd = target.command()

    # POSIX sh: parses, and the function hands curl exactly the address.
    script = box.write("curl.sh", blocks["curl"])
    assert box.run(["sh", "-n", str(script)]).returncode == 0
    sourced = box.run(
        [
            "sh",
            "-c",
            '. "$0"; curl() { printf "%s\\n" "$@" > curl.args; cat > curl.stdin; }; curl_work imaps://x/',
            str(script),
        ]
    )
    assert sourced.returncode == 0, sourced.stderr
    args = (box.root / "curl.args").read_text().splitlines()
    assert args[args.index("--user") + 1] == email
    assert (box.root / "curl.stdin").read_text() == 'oauth2-bearer = "TOKEN"\n'
    example_line = next(line for line in blocks["curl"].splitlines() if "--mail-from" in line)
    example_args = shlex.split(example_line.lstrip("# "))
    assert example_args[example_args.index("--mail-from") + 1] == email
    assert box.helper_calls() == ["token work"]
    (box.root / "curl.args").unlink()
    (box.root / "curl.stdin").unlink()

    # mutt and neomutt: single quotes, read back by -Q.
    for binary in ("mutt", "neomutt"):
        rc = box.write(f"{binary}rc", blocks[binary])
        names = ["from", "folder", "smtp_url", "imap_oauth_refresh_command", "smtp_oauth_refresh_command"]
        if binary == "mutt":
            names += ["pop_host", "pop_oauth_refresh_command"]
        result = box.run([binary, "-n", "-F", str(rc), *(a for n in names for a in ("-Q", n))])
        values = _mutt_values(result.stdout)
        assert {values[n] for n in names if n.endswith("_command")} == {token_cmd}, result
        # (mutt shows `folder` partly decoded, the other URLs as written: each decodes to the address.)
        urls = ("folder", "smtp_url", "pop_host") if binary == "mutt" else ("folder", "smtp_url")
        assert {_url_user(values[n]) for n in urls} == {email}, result
        if _dot_atom(email):
            assert values["from"] == email  # mutt re-formats a quoted local part as an RFC 5322 address

    # msmtp and mpop: the values as their own --pretend / -P print them.
    msmtprc = box.write("msmtprc", blocks["msmtp"])
    shown = _pretend(box.run(["msmtp", "--pretend", "-C", str(msmtprc), "-a", "work"]).stdout)
    assert (shown["user"], shown["passwordeval"]) == (email, token_cmd), shown
    has_patterns = any(p in email for p in ("%U", "%H", "%C", "%M", "?", "*", "["))
    assert shown["from"] == ("(not set)" if has_patterns else email)  # msmtp would expand those in `from`
    assert box.helper_calls() == ["token work"]  # --pretend runs passwordeval too
    mpoprc = box.write("mpoprc", blocks["mpop"])
    shown = _pretend(box.run(["mpop", "-P", "-C", str(mpoprc), "work"]).stdout)
    assert (shown["user"], shown["passwordeval"], shown["keep"]) == (email, token_cmd, "on"), shown
    assert shown["uidls file"] == f"{box.home}/.mpop_uidls/work"
    assert box.helper_calls() == ["token work"]  # mpop -P runs passwordeval

    # s-nail: activate the account and echo what it holds; the macro runs before each line.
    mailrc = box.write("mailrc", blocks["s-nail"])
    lines = 'account work\necho "[$from]"\necho "[$folder]"\necho "[$mta]"\necho "[$password]"\n'
    result = box.run(["s-nail", "-:u", "-#"], stdin=lines, env={**box.env, "MAILRC": str(mailrc)})
    echoed = re.findall(r"^\[(.*)\]$", result.stdout, re.M)
    assert len(echoed) == 4, result
    assert {_url_user(u) for u in echoed[1:3]} == {email} and echoed[3] == "TOKEN", result
    if echoed[0] != email:  # s-nail's own address check refuses some (quoted-pairs, a leading |) and says so
        assert "*from* / *sender*: invalid" in result.stderr, result
    assert set(box.helper_calls()) == {"token work"}

    # imapfilter: the Lua values, without connecting (os.exit skips the logout a collected account does).
    lua = box.write(
        "config.lua",
        blocks["imapfilter"] + 'local a = mailtoken_work()\nprint("[" .. a._account.username'
        ' .. "]")\nprint("[" .. a._account.oauth2 .. "]")\nos.exit(0)\n',
    )
    result = box.run(["imapfilter", "-c", str(lua)])
    assert re.findall(r"^\[(.*)\]$", result.stdout, re.M) == [email, "TOKEN"], result
    assert box.helper_calls() == ["xoauth2 work"]

    # offlineimap3: ConfigParser with its BasicInterpolation; the _eval line is Python.
    parser = configparser.ConfigParser()
    parser.read_string(blocks["offlineimap3"])
    remote = parser["Repository work-remote"]
    assert remote["remoteuser"] == email and parser["general"]["pythonfile"] == target.hook
    called = eval(remote["oauth2_access_token_eval"], {"fresh_token": lambda a, helper: (a, helper)})  # noqa: S307
    assert called == ("work", str(box.helper))

    # getmail6: RawConfigParser, and the tuple it eval()s.
    raw = configparser.RawConfigParser()
    raw.read_string(blocks["getmail6"])
    assert raw["retriever"]["username"] == email
    assert eval(raw["retriever"]["password_command"]) == tuple(target.argv())  # noqa: S307

    # mbsync: its config reader reports any syntax slip as FILE:LINE before it tries to connect.
    mbsyncrc = box.write("mbsyncrc", blocks["mbsync"])
    result = box.run(["mbsync", "-c", str(mbsyncrc), "-l", "work"])
    assert not re.search(r"mbsyncrc:\d+:", result.stdout + result.stderr), result

    expected = {"curl.sh", "muttrc", "neomuttrc", "msmtprc", "mpoprc", "mailrc", "config.lua", "mbsyncrc"}
    made = {p for p in box.listing() - box.before if not p.startswith(("home/.imapfilter", "home/.mpop_uidls"))}
    assert made <= expected | {"home/dead.letter"}, (
        f"a command ran: {made - expected}".exists() and not (box.home / "pwned").exists()
    )


def _go_ini_value(line: str) -> str:
    """go-ini's readValue with aerc's (default) options, for one-line values: github.com/go-ini/ini parser.go."""
    if line.startswith("`") and "`" in line[1:]:
        return line[1 : line.rindex("`")]
    line = line.strip()
    if "#" in line or ";" in line:
        line = line[: min(i for i in (line.find("#"), line.find(";")) if i >= 0)].strip()
    if len(line) >= 2 and line[0] == line[-1] and line[0] in "'\"":
        line = line[1:-1]
    return line


@settings(max_examples=300, deadline=None, database=None)
@given(addresses)
@example('"a#b"@example.com')
@example("a;b@example.com")
@example("'x'@example.com")
def test_aerc_values_follow_go_ini(email: str) -> None:
    """aerc cannot print its parsed accounts.conf without a terminal session: this checks the quoting against
    go-ini's value rules, modelled above from its source."""
    assert _go_ini_value(quoting.aerc(email)) == email
    command = quoting.sh_join(["/opt/my;bin #1/mailtoken", "token", "work"])
    assert _go_ini_value(quoting.aerc(command)) == command
