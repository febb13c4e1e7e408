"""Real programs that call a sendmail (issue 14): git send-email, mutt, s-nail, PHP's mail(), bsd-mailx, each
pointed at `mailtoken sendmail` and checked at the fake Graph byte for byte.

Each caller runs a small wrapper that keeps a copy of what the caller wrote and the arguments it passed, then
execs `mailtoken sendmail work`: the test compares what Graph received with that copy (CRLF line ends, Bcc
fields replaced by one listing the envelope-only recipients) and checks the delivered copy has no Bcc.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests import graphenv
from tests.conftest import EMAIL, MAILTOKEN, Env, require
from tests.fakes.graph import FakeGraph
from tests.graphenv import crlf

graph, sender = graphenv.graph, graphenv.sender  # fixtures
NAME = "Zoë Ångström"


@pytest.fixture
def wrapper(sender: Env) -> Path:
    """A sendmail path for callers that take one program: copies stdin and argv aside, execs mailtoken."""
    seen = sender.root / "seen"
    seen.mkdir()
    script = sender.root / "mailtoken-sendmail-work"
    script.write_text(
        "#!/bin/sh\n"
        # s-nail runs its mta with HOME from the password database: say where this test's user lives.
        f'export HOME="{sender.home}" XDG_RUNTIME_DIR="{sender.runtime}"\n'
        f'n="{seen}/$$"\n'
        'printf "%s\\n" "$@" > "$n.argv"\n'
        f'tee "$n.eml" | exec "{MAILTOKEN}" sendmail work "$@"\n'
    )
    script.chmod(0o755)
    return script


def _captured(sender: Env) -> list[tuple[list[str], bytes]]:
    seen = sorted((sender.root / "seen").glob("*.eml"), key=lambda p: p.stat().st_mtime_ns)
    return [(p.with_suffix(".argv").read_text().splitlines(), p.read_bytes()) for p in seen]


def _expected(written: bytes, hidden: list[str]) -> bytes:
    """What Graph must get for what the caller wrote: Bcc fields out, one Bcc for `hidden`, CRLF ends."""
    data = crlf(written)
    head, sep, body = data.partition(b"\r\n\r\n")
    fields = re.split(rb"\r\n(?![ \t])", head)
    kept = [f for f in fields if not f.lower().startswith(b"bcc:")]
    if hidden:
        kept.append(b"Bcc: " + ", ".join(hidden).encode())
    return b"\r\n".join(kept) + sep + body


def _check(sent, written: bytes, recipients: list[str], hidden: list[str]) -> None:
    assert sorted(a.lower() for a in sent.recipients) == sorted(recipients)
    assert sent.mime == _expected(written, hidden)
    assert b"\r\nbcc:" not in sent.delivered.lower().partition(b"\r\n\r\n")[0]
    for address in hidden:
        assert address.encode() not in sent.delivered


def test_git_send_email_series_of_three_with_cc_bcc_and_non_ascii_names(
    sender: Env, graph: FakeGraph, wrapper: Path, tmp_path: Path
) -> None:
    require("git", "/usr/lib/git-core/git-send-email")
    repo = tmp_path / "repo"
    git_env = {**sender.vars, "GIT_AUTHOR_NAME": NAME, "GIT_COMMITTER_NAME": NAME}
    git_env.update(GIT_AUTHOR_EMAIL=EMAIL, GIT_COMMITTER_EMAIL=EMAIL, GIT_CONFIG_NOSYSTEM="1")

    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=repo, env=git_env, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return out.stdout

    repo.mkdir()
    git("init", "-q")
    for n in range(1, 4):
        (repo / f"f{n}.txt").write_text(f"Änderung {n}\n")
        git("add", ".")
        git("commit", "-q", "-m", f"Schritt {n}: café")
    patches = git("format-patch", "-3", "-o", str(tmp_path / "out")).split()
    out = subprocess.run(
        [
            "git",
            "-c",
            f"sendemail.sendmailCmd={wrapper}",
            "send-email",
            "--confirm=never",
            "--suppress-cc=all",
            f"--from={NAME} <{EMAIL}>",
            "--to=Bob Müller <bob@fabrikam.com>",
            "--cc=carol@fabrikam.com",
            "--bcc=hidden@fabrikam.com",
            *patches,
        ],
        cwd=repo,
        env=git_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    calls = _captured(sender)
    assert len(calls) == 3 and len(graph.sent) == 3
    for (argv, written), sent in zip(calls, graph.sent, strict=True):
        assert "-i" in argv and "hidden@fabrikam.com" in argv
        _check(
            sent, written, ["bob@fabrikam.com", "carol@fabrikam.com", "hidden@fabrikam.com"], ["hidden@fabrikam.com"]
        )
        assert b"Schritt" in sent.mime and "Änderung".encode() in sent.mime


def test_mutt_batch_send_with_sendmail(sender: Env, graph: FakeGraph, wrapper: Path, tmp_path: Path) -> None:
    require("mutt")
    rc = tmp_path / "muttrc"
    rc.write_text(
        f'set sendmail="{wrapper}"\nset from="{EMAIL}"\nset realname="{NAME}"\nset use_from=yes\n'
        'set charset="utf-8"\nset send_charset="utf-8"\nset copy=no\nset record=""\nset write_bcc=no\n'
    )
    out = subprocess.run(
        [
            "mutt",
            "-n",
            "-F",
            str(rc),
            "-s",
            "Grüße aus Köln",
            "-c",
            "carol@fabrikam.com",
            "-b",
            "hidden@fabrikam.com",
            "--",
            "bob@fabrikam.com",
        ],
        input="Hallo, schöne Grüße.\n".encode(),
        env={**sender.vars, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"},
        capture_output=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    [(argv, written)] = _captured(sender)
    [sent] = graph.sent
    assert argv[0] == "--"  # mutt passes only recipients to a $sendmail of its own (no -oi)
    _check(sent, written, ["bob@fabrikam.com", "carol@fabrikam.com", "hidden@fabrikam.com"], ["hidden@fabrikam.com"])
    assert "schöne".encode() in sent.mime or b"sch=C3=B6ne" in sent.mime


def test_s_nail_with_mta(sender: Env, graph: FakeGraph, wrapper: Path) -> None:
    require("s-nail")
    out = subprocess.run(
        [
            "s-nail",
            "-:/",
            "-S",
            f"mta={wrapper}",
            "-S",
            "sendwait",
            "-S",
            "ttycharset=utf-8",
            "-S",
            "sendcharsets=utf-8",
            "-S",
            "expandaddr",
            "-r",
            f"{NAME} <{EMAIL}>",
            "-s",
            "Grüße",
            "-c",
            "carol@fabrikam.com",
            "-b",
            "hidden@fabrikam.com",
            "bob@fabrikam.com",
        ],
        input="Hallo, schöne Grüße.\n".encode(),
        env={**sender.vars, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"},
        capture_output=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    [(argv, written)] = _captured(sender)
    [sent] = graph.sent
    assert "-i" in argv
    _check(sent, written, ["bob@fabrikam.com", "carol@fabrikam.com", "hidden@fabrikam.com"], ["hidden@fabrikam.com"])


def test_php_mail_with_sendmail_path(sender: Env, graph: FakeGraph, wrapper: Path) -> None:
    require("php")
    code = (
        'exit(mail("bob@fabrikam.com", "=?UTF-8?B?" . base64_encode("Grüße") . "?=", "Hallo, schöne Grüße.\\n", '
        '"From: ' + EMAIL + "\\r\\nCc: carol@fabrikam.com\\r\\nBcc: hidden@fabrikam.com\\r\\n"
        'Content-Type: text/plain; charset=utf-8") ? 0 : 1);'
    )
    out = subprocess.run(
        ["php", "-n", "-d", f"sendmail_path={wrapper} -t -i", "-r", code],
        env=sender.vars,
        capture_output=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    [(argv, written)] = _captured(sender)
    [sent] = graph.sent
    assert argv == ["-t", "-i"] and b"Bcc: hidden@fabrikam.com" in written
    _check(sent, written, ["bob@fabrikam.com", "carol@fabrikam.com", "hidden@fabrikam.com"], ["hidden@fabrikam.com"])
    assert "schöne".encode() in sent.mime


def test_bsd_mailx_mail_s_as_cron_uses_it(sender: Env, graph: FakeGraph, wrapper: Path, tmp_path: Path) -> None:
    require("bsd-mailx")
    rc = tmp_path / "mailrc"
    rc.write_text(f"set sendmail={wrapper}\n")
    out = subprocess.run(
        [
            "bsd-mailx",
            "-s",
            "cron: backup done",
            "-c",
            "carol@fabrikam.com",
            "-b",
            "hidden@fabrikam.com",
            "bob@fabrikam.com",
        ],
        input=b"backup finished: 3 files\n",
        env={**sender.vars, "MAILRC": str(rc)},
        capture_output=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    [(argv, written)] = _captured(sender)
    [sent] = graph.sent
    # mailx writes no From: sendmail adds the account's, as an MTA adds the user's.
    assert sent.mime.startswith(b"From: " + EMAIL.encode() + b"\r\n")
    sent.mime = sent.mime.split(b"\r\n", 1)[1]
    _check(sent, written, ["bob@fabrikam.com", "carol@fabrikam.com", "hidden@fabrikam.com"], ["hidden@fabrikam.com"])
    assert sent.mailbox == EMAIL and b"Bcc: hidden@fabrikam.com" in written
