"""Issue 11, point 2: the loopback receiver of `login --browser` under attack and under a real browser.

An idle connection (a browser's preconnect, any local process) must not hold up the real redirect; another local
user listening on the loopback family mailtoken left free must not get the code; a request with the wrong state
is answered and ignored. Headless Chromium, a real browser, signs in through the fake identity platform and the
page it lands on is screenshotted: it must say where to go next.
"""

from __future__ import annotations

import errno
import socket
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import EMAIL, IN_CI, Env, require
from tests.fakes.entra import FakeEntra
from tests.flows import Login
from tests.servers.ports import free_port

CHROMIUM = "/usr/bin/chromium"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # noqa: ANN002, ANN003
        return None


def _opener(cafile: str | None = None) -> urllib.request.OpenerDirector:
    handlers: list = [urllib.request.ProxyHandler({}), _NoRedirect()]
    if cafile:
        handlers.append(urllib.request.HTTPSHandler(context=ssl.create_default_context(cafile=cafile)))
    return urllib.request.build_opener(*handlers)


def _authorize_url(login: Login, fake: FakeEntra, timeout: float = 30) -> str:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for line in list(login.lines):
            if line.startswith(fake.base_url) and "/authorize?" in line:
                return line.strip()
        if login.proc.poll() is not None:
            break
        time.sleep(0.05)
    raise AssertionError(f"no authorize URL printed: {login.stderr}")


def _port(url: str) -> int:
    redirect = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["redirect_uri"][0]
    port = urllib.parse.urlsplit(redirect).port
    assert port
    return port


def _get(url: str, timeout: float = 10) -> tuple[int, str]:
    try:
        with _opener().open(url, timeout=timeout) as page:
            return page.status, page.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _sign_in(fake: FakeEntra, url: str, host: str = "127.0.0.1") -> tuple[int, str]:
    """The browser's part: the identity platform approves and redirects; deliver the redirect to `host`."""
    try:
        _opener(fake.ca_pem).open(url, timeout=10)
    except urllib.error.HTTPError as redirect:
        location = redirect.headers["Location"]
    else:
        raise AssertionError("the fake did not redirect")
    parts = urllib.parse.urlsplit(location)
    netloc = f"[{host}]:{parts.port}" if ":" in host else f"{host}:{parts.port}"
    return _get(urllib.parse.urlunsplit(parts._replace(netloc=netloc)))


def _need_ipv6_loopback() -> None:
    """The squatter tests need ::1; without it no one can listen there, and they cannot run (CI: a failure)."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError as exc:
        (pytest.fail if IN_CI else pytest.skip)(f"no IPv6 loopback here ({exc.strerror})")


@pytest.fixture
def browser_login(env: Env, fake: FakeEntra):
    env.add_account(authority=fake.authority())
    fake.auto_approve = EMAIL
    started: list[Login] = []

    def start(*args: str) -> Login:
        login = Login(env, "work", "--browser", *args)
        started.append(login)
        return login

    yield start
    for login in started:
        if login.proc.poll() is None:
            login.proc.kill()
            login.proc.wait(10)


def test_an_idle_connection_does_not_hold_up_the_browsers_answer(browser_login, fake: FakeEntra) -> None:
    login = browser_login("--timeout", "20")
    port = _port(_authorize_url(login, fake))
    # A preconnect that never sends, and a request line that never ends (slowloris).
    idle = socket.create_connection(("127.0.0.1", port))
    partial = socket.create_connection(("127.0.0.1", port))
    partial.sendall(b"GET /?code=")
    try:
        time.sleep(0.5)
        status, page = _sign_in(fake, _authorize_url(login, fake))
        assert status == 200 and "signed in" in page, page
        assert login.wait(15) == 0, login.stderr
    finally:
        idle.close()
        partial.close()
    assert fake.counts["authorization_code"] == 1


@pytest.mark.parametrize("address", ["::1", "::"])
def test_no_one_else_can_listen_on_the_redirects_port(browser_login, fake: FakeEntra, address: str) -> None:
    """The redirect says localhost: a browser may go to 127.0.0.1 or to [::1]. Both are held while waiting."""
    _need_ipv6_loopback()
    login = browser_login("--timeout", "20")
    url = _authorize_url(login, fake)
    port = _port(url)
    for family, host in ((socket.AF_INET6, address), (socket.AF_INET, "127.0.0.1"), (socket.AF_INET, "0.0.0.0")):
        squatter = socket.socket(family, socket.SOCK_STREAM)
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            with pytest.raises(OSError) as refused:
                squatter.bind((host, port))
                squatter.listen()
            assert refused.value.errno == errno.EADDRINUSE
        finally:
            squatter.close()
    # The answer arrives whichever family the browser picks.
    status, page = _sign_in(fake, url, host="::1")
    assert status == 200 and "signed in" in page, page
    assert login.wait(15) == 0, login.stderr


def test_a_fixed_port_taken_on_the_other_family_is_refused_before_sign_in(env: Env, fake: FakeEntra) -> None:
    _need_ipv6_loopback()
    port = free_port()
    squatter = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    squatter.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    squatter.bind(("::1", port))
    squatter.listen()
    squatter.settimeout(0.5)
    received: list[bytes] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = squatter.accept()
            except OSError:
                continue
            with conn:
                received.append(conn.recv(65536))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        env.add_account(authority=fake.authority(), extra=f'redirect_uri = "http://localhost:{port}"\n')
        fake.auto_approve = EMAIL
        result = env.run("login", "work", "--browser", "--timeout", "10", timeout=30)
    finally:
        stop.set()
        thread.join(5)
        squatter.close()
    assert result.returncode == 64, result.stderr
    assert f"cannot listen on [::1]:{port}" in result.stderr and "another program listens there" in result.stderr
    assert "/authorize?" not in result.stderr, "no sign-in may start whose answer could go to the squatter"
    assert not received
    assert fake.counts["authorize"] == 0


def test_a_request_with_a_wrong_state_is_answered_and_ignored(browser_login, fake: FakeEntra) -> None:
    login = browser_login("--timeout", "20")
    url = _authorize_url(login, fake)
    base = f"http://127.0.0.1:{_port(url)}/"
    for query, want in (("?error=access_denied", 400), ("?code=stolen&state=forged", 400), ("favicon.ico", 404)):
        status, page = _get(base + query)
        assert status == want, (query, status, page)
        assert "Traceback" not in page
    status, page = _get(base + "?error=x")
    assert status == 400 and "ignored" in page and "still waiting" in page
    assert login.proc.poll() is None, f"a foreign request ended the sign-in: {login.stderr}"
    status, page = _sign_in(fake, url)
    assert status == 200 and "signed in" in page
    assert login.wait(15) == 0, login.stderr
    assert fake.counts["authorization_code"] == 1


def _chromium_wrapper(env: Env, tmp_path: Path) -> tuple[str, Path, Path, Path]:
    """A BROWSER command (webbrowser appends the URL) running headless Chromium, saving the page it ends on."""
    shot, dom, done = tmp_path / "page.png", tmp_path / "page.html", tmp_path / "chromium.rc"
    profile = tmp_path / "chromium-profile"
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic",
        "--disable-breakpad",
        "--disable-default-apps",
        "--disable-extensions",
        "--no-proxy-server",
        # Trusting the fake identity platform's throwaway CA is not what this test is about.
        "--ignore-certificate-errors",
        f"--user-data-dir={profile}",
        "--window-size=900,500",
        f"--screenshot={shot}",
        "--dump-dom",
    ]
    wrapper = tmp_path / "chromium-browser"
    wrapper.write_text(
        f'#!/bin/sh\n{CHROMIUM} {" ".join(flags)} "$1" > "{dom}" 2> "{tmp_path / "chromium.log"}"\necho $? > "{done}"\n'
    )
    wrapper.chmod(0o755)
    return str(wrapper), shot, dom, done


def test_headless_chromium_signs_in_and_is_told_where_to_go_next(env: Env, fake: FakeEntra, tmp_path: Path) -> None:
    require(CHROMIUM)
    env.add_account(authority=fake.authority())
    fake.auto_approve = EMAIL
    browser, shot, dom, done = _chromium_wrapper(env, tmp_path)
    result = env.run("login", "work", "--browser", "--timeout", "60", env={"BROWSER": browser}, timeout=90)
    assert result.returncode == 0, result.stderr
    assert "signed in as alice@contoso.com" in result.stderr
    end = time.monotonic() + 30
    while not done.exists() and time.monotonic() < end:
        time.sleep(0.1)
    assert done.exists(), "chromium did not finish"
    page = dom.read_text()
    assert "work is signed in as alice@contoso.com" in page, page
    assert "close this tab and go back to the terminal" in page, page
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 2000
    assert fake.counts["authorization_code"] == 1
