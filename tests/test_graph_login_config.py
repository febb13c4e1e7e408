"""Graph sending's sign-in and settings (issue 14): one browser sign-in consents to both resources, each
token request names one; the keys are checked; national clouds' Graph hosts come from the catalog; parallel
sends with a stale Graph token cause one refresh."""

from __future__ import annotations

import re
import subprocess
import time

import pytest

from mailtoken import config
from mailtoken.errors import ConfigError
from mailtoken.graph import scopes
from tests import graphenv
from tests.conftest import EMAIL, MAILTOKEN, Env
from tests.fakes.entra import FakeEntra
from tests.fakes.graph import FakeGraph
from tests.graphenv import add_graph_account
from tests.test_cli_browser_login import _follow_as_browser

graph, sender = graphenv.graph, graphenv.sender  # fixtures
BASE = 'email = "a@contoso.com"\nclient_id = "x"\n'


def test_browser_login_consents_to_graph_in_the_same_sign_in(env: Env, fake: FakeEntra, graph: FakeGraph) -> None:
    add_graph_account(env, fake, graph)
    fake.auto_approve = EMAIL
    proc = env.popen("login", "work", "--browser", "--timeout", "30")
    seen: list[str] = []
    browser = _follow_as_browser(fake, proc, seen)
    assert proc.wait(60) == 0, "".join(seen)
    browser.join(5)
    assert "one more code" not in "".join(seen) and fake.counts["devicecode"] == 0
    authorize = next(r for r in fake.requests if r["path"].endswith("/authorize"))["query"]["scope"].split()
    assert "https://outlook.office.com/SMTP.Send" in authorize and "https://graph.microsoft.com/Mail.Send" in authorize
    redeem = next(r for r in fake.requests if r["form"].get("grant_type") == "authorization_code")["form"]
    assert not any("graph.microsoft.com" in s for s in redeem["scope"].split())  # one resource per token request
    graph_refresh = [r["form"]["scope"] for r in fake.requests if r["form"].get("grant_type") == "refresh_token"]
    assert len(graph_refresh) == 1 and "https://graph.microsoft.com/Mail.Send" in graph_refresh[0]
    out = subprocess.run(
        [MAILTOKEN, "sendmail", "work", "bob@fabrikam.com"],
        input=b"To: bob@fabrikam.com\n\nhi\n",
        capture_output=True,
        env=env.vars,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ('send = "imap"\n', "send: must be"),
        ('send = "graph"\ngraph_url = "http://graph.example.org/v1.0"\n', "graph_url: must be an https URL"),
        ("graph_large = true\n", 'only used with send = "graph"'),
        ('send = "graph"\ngraph_large = "yes"\n', "graph_large: must be a bool"),
    ],
)
def test_bad_graph_keys_are_refused_naming_the_key(extra: str, words: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(words)):
        config.parse(f"[accounts.work]\n{BASE}{extra}", "/c.toml")


def test_send_is_a_microsoft_key() -> None:
    text = f'[accounts.g]\nprovider = "google"\n{BASE}client_secret = "s"\nsend = "graph"\n'
    with pytest.raises(ConfigError, match="not used by provider 'google'"):
        config.parse(text, "/c.toml")


@pytest.mark.parametrize(
    ("cloud", "host"),
    [
        ("global", "https://graph.microsoft.com"),
        ("usgov", "https://graph.microsoft.us"),
        ("usgov-dod", "https://dod-graph.microsoft.us"),
        ("china", "https://microsoftgraph.chinacloudapi.cn"),
    ],
)
def test_national_clouds_send_to_their_own_graph(cloud: str, host: str) -> None:
    acct = config.parse(
        f'[accounts.w]\n{BASE}cloud = "{cloud}"\nsend = "graph"\nshared = ["t@contoso.com"]\n', "/c.toml"
    ).account("w")
    assert scopes.api_url(acct) == f"{host}/v1.0"
    assert scopes.delegated(acct) == [f"{host}/Mail.Send", f"{host}/Mail.Send.Shared"]


def test_parallel_sends_with_a_stale_graph_token_refresh_once(sender: Env, fake: FakeEntra, graph: FakeGraph) -> None:
    rec = sender.record_dir / "work~graph.token"
    rec.write_text(re.sub(r"refresh \d+", f"refresh {int(time.time()) - 1}", rec.read_text()))
    procs = [
        subprocess.Popen(
            [MAILTOKEN, "sendmail", "work", "-t"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=sender.vars,
        )
        for _ in range(5)
    ]
    results = [p.communicate(b"To: bob@fabrikam.com\nSubject: n\n\nhi\n", timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0] * 5, results
    assert fake.counts["refresh_token"] == 1 and len(graph.sent) == 5


def test_refresh_keeps_the_graph_token_fresh_too(sender: Env, fake: FakeEntra) -> None:
    before = (sender.record_dir / "work~graph.token").read_text()
    out = sender.run("refresh", "work", "--min-validity", "2h")  # longer than the fake's 1 h tokens
    assert out.returncode == 0, out.stderr
    after = (sender.record_dir / "work~graph.token").read_text()
    assert after != before and fake.counts["refresh_token"] == 2  # the mail token, then the Graph token
    token = after.split("token ", 1)[1].split("\n", 1)[0]
    assert fake.issued_access_tokens[token]["scope"] == "https://graph.microsoft.com/Mail.Send"
