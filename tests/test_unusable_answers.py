"""What a misbehaving identity platform or network can do to a refresh, and what mailtoken must do then.

Issue 11 points 3 (one deadline), 5 (no proxy for loopback), 6 (no redirects), 7 (a rotated grant is never
lost to a malformed answer; every unusable answer is one temporary rule; bounded answers), 8 (a sign-in is
saved under the account lock), and issue 12's trust store (SSL_CERT_FILE). Each test failed before its fix.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import EMAIL, Env
from tests.fakes.entra import FakeEntra
from tests.test_idp_faults import assert_failed, grant, rejected_mark

BOB = "bob@contoso.com"


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[Env, FakeEntra]]:
    """A signed-in account against a strict-rotation fake: a spent refresh token is refused."""
    env = Env(tmp_path)
    with FakeEntra(tmp_path / "fake") as fake:
        fake.add_user(EMAIL)
        fake.add_user(BOB)
        env.vars["REQUESTS_CA_BUNDLE"] = fake.ca_pem
        env.add_account(authority=fake.authority())
        fake.auto_approve = EMAIL
        assert env.run("login", "work").returncode == 0
        fake.auto_approve = None
        yield env, fake


# --- 7: a rotated grant is saved before the rest of the answer is judged ---------------------------------------


@pytest.mark.parametrize(
    "fields, needle",
    [
        ({"expires_in": "soon"}, "lifetime (expires_in) that is not a number"),
        ({"expires_in": -1}, "lifetime (expires_in) out of range"),
        ({"access_token": "abc\ndef"}, "characters no token has"),
        ({"access_token": ""}, "holds no access token"),
    ],
)
def test_a_rotated_grant_beside_an_unusable_token_is_kept_and_the_call_is_temporary(
    world: tuple[Env, FakeEntra], fields: dict[str, Any], needle: str
) -> None:
    env, fake = world
    env.age_record(expires_in=-5)
    before = grant(env)
    fake.inject("mangle", fields=fields)
    assert_failed(env.run("token", "work"), 75, needle, "try again")
    assert grant(env) != before, "the answer's new refresh token must be in the store"
    assert not rejected_mark(env).exists()
    # Strict rotation: the old refresh token is spent, so only the saved new one can make this work.
    again = env.run("token", "work")
    assert again.returncode == 0, again.stderr
    assert fake.is_valid_access_token(again.stdout.strip())


def test_json_nested_too_deeply_is_temporary_and_the_cached_token_is_served(world: tuple[Env, FakeEntra]) -> None:
    env, fake = world
    cached = env.run("token", "work").stdout
    deep = "[" * 100_000 + "]" * 100_000
    env.age_record(expires_in=600)
    fake.inject("status", status=200, body=deep, content_type="application/json")
    served = env.run("token", "work")
    assert (served.returncode, served.stdout) == (0, cached), served.stderr
    env.age_record(expires_in=-5)
    fake.inject("status", status=200, body=deep, content_type="application/json")
    assert_failed(env.run("token", "work"), 75, "try again")


def test_a_huge_answer_is_refused_without_reading_it_all(world: tuple[Env, FakeEntra]) -> None:
    env, fake = world
    env.age_record(expires_in=-5)
    fake.inject("status", status=400, body=json.dumps({"error": "x" * (5 << 20)}), content_type="application/json")
    line = assert_failed(env.run("token", "work"), 75, "larger than 1 MiB")
    assert len(line) < 300


def test_a_long_error_field_is_cut_in_the_message(world: tuple[Env, FakeEntra]) -> None:
    env, fake = world
    env.age_record(expires_in=-5)
    body = json.dumps({"error": "e" * 500_000, "error_description": "d" * 500_000})
    fake.inject("status", status=400, body=body, content_type="application/json")
    result = env.run("-v", "token", "work")
    assert result.returncode == 75, result.stderr
    assert len(result.stderr) < 5000, "neither the line nor -v's detail may echo the whole answer"


# --- 6: no redirects of requests that carry secrets ---------------------------------------------------------------


class _Recorder(http.server.ThreadingHTTPServer):
    """A plain-http server on loopback that records what reaches it (a proxy, or a redirect's target)."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
                recorder.seen.append(f"{self.command} {self.path} {dict(self.headers)} {body}")
                self.send_response(502)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_POST = do_GET

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server_port}"
        threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.shutdown()
        self.server_close()


@pytest.fixture
def recorder() -> Iterator[_Recorder]:
    server = _Recorder()
    yield server
    server.close()


def test_a_redirect_of_the_token_request_is_not_followed(world: tuple[Env, FakeEntra], recorder: _Recorder) -> None:
    env, fake = world
    env.age_record(expires_in=-5)
    before = grant(env)
    fake.inject("redirect", location=recorder.url + "/steal")
    assert_failed(env.run("token", "work"), 75, "redirect", "never follows")
    assert recorder.seen == [], "the refresh token must not be re-sent to the redirect's target"
    assert grant(env) == before
    assert env.run("token", "work").returncode == 0, "the grant still works"


def test_the_stdlib_engines_exchange_follows_no_redirect_either(recorder: _Recorder) -> None:
    """The one HTTP layer (providers/http.py), as providers/oauth2.py calls it, against loopback servers."""
    from mailtoken.errors import TemporaryFailure
    from mailtoken.providers import http as layer

    class Redirecting(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            self.send_response(307)
            self.send_header("Location", recorder.url + "/token")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    origin = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirecting)
    threading.Thread(target=origin.serve_forever, args=(0.05,), daemon=True).start()
    try:
        with pytest.raises(TemporaryFailure, match="redirect"):
            layer.exchange(
                "work",
                f"http://127.0.0.1:{origin.server_port}/token",
                5,
                {"grant_type": "refresh_token", "refresh_token": "secret-rt"},
                {"Authorization": "Basic c2VjcmV0"},
                family="generic",
            )
    finally:
        origin.shutdown()
        origin.server_close()
    assert recorder.seen == []


# --- 5: never a proxy for this machine ---------------------------------------------------------------------------


def test_requests_for_loopback_never_go_through_a_proxy(
    recorder: _Recorder, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from mailtoken.errors import TemporaryFailure
    from mailtoken.providers import http as layer

    class Token(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = b'{"access_token": "at", "expires_in": 60, "refresh_token": "rt2"}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    endpoint = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Token)
    threading.Thread(target=endpoint.serve_forever, args=(0.05,), daemon=True).start()
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, recorder.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    try:
        for host in ("127.0.0.1", "localhost"):
            url = f"http://{host}:{endpoint.server_port}/token"
            status, doc, _retry, rotated = layer.exchange("work", url, 5, {"refresh_token": "rt1"}, family="generic")
            assert (status, doc["access_token"], rotated) == (200, "at", "rt2")
        assert recorder.seen == [], "a proxy must never see a loopback provider's secrets"
        # The control: a host that is not this machine does go to the proxy (which answers 502 here).
        with pytest.raises(TemporaryFailure):
            layer.exchange("work", "http://login.example.invalid/token", 5, {"x": "y"}, family="generic")
        assert len(recorder.seen) == 1 and "login.example.invalid" in recorder.seen[0]
    finally:
        endpoint.shutdown()
        endpoint.server_close()


# --- 8: a sign-in is saved under the account lock ------------------------------------------------------------------


def test_a_login_during_a_slow_refresh_is_not_overwritten_by_it(world: tuple[Env, FakeEntra]) -> None:
    env, fake = world
    env.age_record(expires_in=-5)
    fake.inject("hang", seconds=6, then="answer")  # the refresh's answer comes after the login has finished
    refresher = env.popen("token", "work")
    time.sleep(1.0)
    fake.auto_approve = BOB
    login = env.run("login", "work")
    assert login.returncode == 0, login.stderr
    assert refresher.wait(60) == 0
    refresher.communicate()
    assert BOB.encode() in grant(env) and EMAIL.encode() not in grant(env), "the newer sign-in must win"
    state = json.loads((env.state_dir / "accounts" / "work.json").read_text())
    assert state["username"] == BOB


# --- 3: one deadline ------------------------------------------------------------------------------------------------


def test_a_caller_waiting_for_another_refresh_keeps_its_own_timeout(world: tuple[Env, FakeEntra]) -> None:
    env, fake = world
    env.age_record(expires_in=-5)
    fake.inject("hang", seconds=25, then="answer")
    first = env.popen("token", "work")
    time.sleep(1.0)
    started = time.monotonic()
    second = env.run("token", "work", "--timeout", "4")
    elapsed = time.monotonic() - started
    assert second.returncode == 75, second.stderr
    # Before the fix the lock wait and then a fresh 4 s deadline took about twice as long.
    assert elapsed < 7, f"--timeout 4 took {elapsed:.1f} s"
    first.kill()
    first.communicate()


def test_the_offlineimap_hook_in_a_worker_thread_is_bounded_against_a_trickle(world: tuple[Env, FakeEntra]) -> None:
    env, fake = world
    env.age_record(expires_in=-5)
    fake.inject("trickle", seconds=1.0)
    code = (
        "import threading, time\n"
        "from mailtoken.offlineimap import fresh_token\n"
        "out = {}\n"
        "def work():\n"
        "    try:\n"
        "        out['token'] = str(fresh_token('work', timeout=5))\n"
        "    except Exception as exc:\n"
        "        out['error'] = type(exc).__name__\n"
        "t = threading.Thread(target=work, daemon=True)\n"
        "started = time.monotonic(); t.start(); t.join(40)\n"
        "print('alive' if t.is_alive() else 'done', round(time.monotonic() - started), sorted(out))\n"
    )
    result = env.python(code, timeout=60)
    assert result.returncode == 0, result.stderr
    state, seconds, keys = result.stdout.split(" ", 2)
    assert state == "done", f"the worker thread was still hung after {seconds} s"
    assert int(seconds) <= 15


# --- issue 12: the operating system's trust store ------------------------------------------------------------------


def test_a_ca_given_only_by_ssl_cert_file_is_trusted_by_msal(tmp_path: Path) -> None:
    env = Env(tmp_path)
    with FakeEntra(tmp_path / "fake") as fake:
        fake.add_user(EMAIL)
        env.vars.pop("REQUESTS_CA_BUNDLE", None)
        env.vars["SSL_CERT_FILE"] = fake.ca_pem
        env.add_account(authority=fake.authority())
        fake.auto_approve = EMAIL
        login = env.run("login", "work")
        assert login.returncode == 0, login.stderr
        del env.vars["SSL_CERT_FILE"]
        env.age_record(expires_in=-5)
        untrusted = env.run("token", "work")
        # The control: without it the same server is refused, with a message that names the fix.
        assert untrusted.returncode == 75
        assert "certificate verify failed" in untrusted.stderr and "SSL_CERT_FILE" in untrusted.stderr
        assert "try again later" not in untrusted.stderr
