"""Shared set-up for the Graph sending tests: the fake Graph beside the fake Entra, and a signed-in account."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import EMAIL, Env
from tests.fakes.entra import FakeEntra
from tests.fakes.graph import FakeGraph

SHARED = "team@contoso.com"


@pytest.fixture
def graph(tmp_path: Path, env: Env, fake: FakeEntra) -> Iterator[FakeGraph]:
    with FakeGraph(tmp_path / "graph", fake) as server:
        # One bundle trusts both fakes, as the system store trusts both real services.
        bundle = tmp_path / "cas.pem"
        bundle.write_text(Path(fake.ca_pem).read_text() + Path(server.ca_pem).read_text())
        env.vars["REQUESTS_CA_BUNDLE"] = str(bundle)
        yield server


def add_graph_account(env: Env, fake: FakeEntra, graph: FakeGraph, extra: str = "") -> None:
    env.add_account(authority=fake.authority(), extra=f'send = "graph"\ngraph_url = "{graph.url}"\n{extra}')


def sign_in(env: Env, fake: FakeEntra) -> str:
    fake.auto_approve = EMAIL
    result = env.run("login", "work")
    fake.auto_approve = None
    assert result.returncode == 0, result.stderr
    fake.reset_counts()
    return result.stderr


@pytest.fixture
def sender(env: Env, fake: FakeEntra, graph: FakeGraph) -> Env:
    add_graph_account(env, fake, graph)
    sign_in(env, fake)
    return env


def crlf(data: bytes) -> bytes:
    return re.sub(rb"(?<!\r)\n", b"\r\n", data)
