"""The bridge's Graph upstream (graph/upstream.py): submit() answers 250 only after Graph's 202, else 451 or
55x with the reason. Run in a subprocess as the signed-in user, against the fake Graph and the real msal."""

from __future__ import annotations

import json
import subprocess
import sys

from tests import graphenv
from tests.conftest import EMAIL, Env
from tests.fakes.graph import FakeGraph

graph, sender = graphenv.graph, graphenv.sender  # fixtures
SCRIPT = """
import asyncio, json, sys
from mailtoken import config
from mailtoken.graph import upstream
acct = config.load().account("work")
print(json.dumps(asyncio.run(upstream.submit(acct, sys.stdin.buffer.read(), sys.argv[1], sys.argv[2:]))))
"""
MESSAGE = b"From: alice@contoso.com\r\nTo: bob@fabrikam.com\r\nSubject: printer scan\r\n\r\nscan attached\r\n"


def _submit(env: Env, data: bytes, *recipients: str) -> tuple[bool, int, str]:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, EMAIL, *recipients], input=data, capture_output=True, env=env.vars, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return tuple(json.loads(out.stdout))  # type: ignore[return-value]


def test_submit_answers_250_after_graph_accepts(sender: Env, graph: FakeGraph) -> None:
    ok, code, text = _submit(sender, MESSAGE, "bob@fabrikam.com", "archive@fabrikam.com")
    assert (ok, code) == (True, 250) and text.startswith("2.0.0")
    [sent] = graph.sent
    assert sorted(sent.recipients) == ["archive@fabrikam.com", "bob@fabrikam.com"] and b"archive" not in sent.delivered


def test_submit_answers_451_on_a_temporary_failure_and_550_on_send_as_denied(sender: Env, graph: FakeGraph) -> None:
    graph.inject("status", count=50, status=503, retry_after=1)
    ok, code, text = _submit(sender, MESSAGE, "bob@fabrikam.com")
    assert (ok, code) == (False, 451) and text.startswith("4.3.0") and "503" in text
    with graph._lock:
        graph._faults.clear()
    ok, code, text = _submit(sender, MESSAGE.replace(b"From: alice", b"From: ceo"), "bob@fabrikam.com")
    assert (ok, code) == (False, 550) and "ErrorSendAsDenied" in text and graph.sent == []
