"""The fake Entra ID must satisfy the real msal; these tests drive it with msal where msal is the client."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msal
import pytest
import requests
from msal.exceptions import MsalServiceError

from tests.fakes.entra import BAD_CLIENT_ID, DEVICE_GRANT, FakeEntra, FakeEntraClient

CLIENT_ID = "11111111-2222-3333-4444-555555555555"
EMAIL = "alice.smith@contoso.com"
SCOPES = [
    "https://outlook.office.com/IMAP.AccessAsUser.All",
    "https://outlook.office.com/POP.AccessAsUser.All",
    "https://outlook.office.com/SMTP.Send",
]
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeEntra]:
    with FakeEntra(tmp_path / "entra") as f:
        f.add_user(EMAIL)
        yield f


def _session(ca_pem: str) -> requests.Session:
    # This machine exports REQUESTS_CA_BUNDLE, which would override verify= unless trust_env is off.
    s = requests.Session()
    s.trust_env = False
    s.verify = ca_pem
    return s


@pytest.fixture
def http(fake: FakeEntra) -> Iterator[requests.Session]:
    with _session(fake.ca_pem) as s:
        yield s


def _app(
    fake: FakeEntra, http: requests.Session, client_id: str = CLIENT_ID, tenant: str = "organizations"
) -> msal.PublicClientApplication:
    return msal.PublicClientApplication(
        client_id,
        authority=fake.authority(tenant),
        instance_discovery=False,
        token_cache=msal.SerializableTokenCache(),
        timeout=5,
        http_client=http,
    )


def _token_url(fake: FakeEntra, tenant: str = "organizations") -> str:
    return f"{fake.authority(tenant)}/oauth2/v2.0/token"


def _unb64(part: str) -> dict[str, Any]:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def _devicecode(fake: FakeEntra, http: requests.Session, **form: str) -> dict[str, Any]:
    data = {"client_id": CLIENT_ID, "scope": " ".join([*SCOPES, "offline_access", "openid", "profile"]), **form}
    return http.post(f"{fake.authority()}/oauth2/v2.0/devicecode", data=data).json()


def _poll(fake: FakeEntra, http: requests.Session, device_code: str) -> requests.Response:
    return http.post(
        _token_url(fake),
        data={"client_id": CLIENT_ID, "grant_type": DEVICE_GRANT, "device_code": device_code, "client_info": "1"},
    )


def test_discovery_satisfies_msal_and_points_back(fake: FakeEntra, http: requests.Session) -> None:
    doc = http.get(f"{fake.authority('common')}/v2.0/.well-known/openid-configuration").json()
    assert doc["token_endpoint"] == f"{fake.base_url}/common/oauth2/v2.0/token"
    assert doc["device_authorization_endpoint"] == f"{fake.base_url}/common/oauth2/v2.0/devicecode"
    assert doc["issuer"] == f"{fake.base_url}/{{tenantid}}/v2.0"
    assert http.get(doc["jwks_uri"]).json() == {"keys": []}
    _app(fake, http, tenant="contoso.com")
    assert fake.counts["discovery"] == 2
    # The certificate is also valid for the name "localhost".
    host_url = fake.base_url.replace("127.0.0.1", "localhost")
    assert http.get(f"{host_url}/consumers/v2.0/.well-known/openid-configuration").status_code == 200
    fake.missing_tenants.add("nope")
    with pytest.raises(ValueError, match="Unable to get authority configuration"):
        _app(fake, http, tenant="nope")
    assert http.get(f"{fake.base_url}/nothing/here").status_code == 404


def test_device_flow_login_refresh_and_strict_rotation(fake: FakeEntra, http: requests.Session) -> None:
    app = _app(fake, http)
    flow = app.initiate_device_flow(scopes=SCOPES)
    assert flow["verification_uri"] == f"{fake.base_url}/devicelogin"
    assert flow["user_code"] in flow["message"] and flow["verification_uri"] in flow["message"]
    assert fake.pending_user_codes() == [flow["user_code"]]
    threading.Timer(0.2, fake.approve, args=(flow["user_code"], EMAIL)).start()
    result = app.acquire_token_by_device_flow(flow)

    assert "access_token" in result, result
    assert len(result["access_token"]) == 1500
    assert fake.is_valid_access_token(result["access_token"])
    assert result["scope"].split() == SCOPES
    user = fake.user(EMAIL)
    [account] = app.get_accounts()
    assert account["username"] == EMAIL
    assert account["home_account_id"] == f"{user['oid']}.{user['tid']}"
    assert result["id_token_claims"]["aud"] == CLIENT_ID
    assert fake.counts["device_code"] >= 2  # one authorization_pending poll, then success
    assert fake.counts["devicecode"] == 1

    # A cached access token is served by msal without any request.
    before = len(fake.requests)
    assert app.acquire_token_silent(SCOPES[:1], account=account)["access_token"] == result["access_token"]
    assert len(fake.requests) == before

    refreshed = app.acquire_token_silent(SCOPES, account=account, force_refresh=True)
    assert refreshed and refreshed["access_token"] != result["access_token"]
    assert fake.counts["refresh_token"] == 1
    [refresh_req] = [r for r in fake.requests if r["form"].get("grant_type") == "refresh_token"]
    spent = refresh_req["form"]["refresh_token"]
    assert spent == result["refresh_token"]
    assert refresh_req["headers"]["x-client-sku"] == "MSAL.Python"

    replay = http.post(
        _token_url(fake),
        data={"client_id": CLIENT_ID, "grant_type": "refresh_token", "refresh_token": spent, "scope": " ".join(SCOPES)},
    )
    assert replay.status_code == 400
    body = replay.json()
    assert body["error"] == "invalid_grant" and body["error_codes"] == [70000]
    assert body["error_description"].startswith("AADSTS70000: ")
    assert "\r\nTrace ID: " in body["error_description"] and "\r\nCorrelation ID: " in body["error_description"]
    # msal kept the rotated token, so it can still refresh.
    assert "access_token" in app.acquire_token_silent(SCOPES, account=account, force_refresh=True)

    fake.strict_rotation = False
    again = http.post(
        _token_url(fake),
        data={"client_id": CLIENT_ID, "grant_type": "refresh_token", "refresh_token": spent, "scope": SCOPES[0]},
    )
    assert again.status_code == 200 and again.json()["scope"] == SCOPES[0]


def test_device_flow_errors(fake: FakeEntra, http: requests.Session) -> None:
    pending = _devicecode(fake, http)
    assert pending["interval"] == 1 and pending["expires_in"] == 900
    resp = _poll(fake, http, pending["device_code"])
    assert resp.status_code == 400
    assert resp.json()["error"] == "authorization_pending" and resp.json()["error_codes"] == [70016]

    fake.deny(pending["user_code"].replace("-", "").lower())  # user codes are matched leniently
    assert _poll(fake, http, pending["device_code"]).json()["error"] == "authorization_declined"

    fake.device_expires_in = 0
    expired = _devicecode(fake, http)
    assert _poll(fake, http, expired["device_code"]).json()["error"] == "expired_token"

    fake.device_expires_in = 900
    done = _devicecode(fake, http)
    fake.approve(done["user_code"], EMAIL)
    ok = _poll(fake, http, done["device_code"]).json()
    assert {"access_token", "refresh_token", "id_token", "client_info"} <= set(ok)
    header, claims, signature = ok["id_token"].split(".")
    assert _unb64(header)["alg"] == "none" and signature == ""
    user = fake.user(EMAIL)
    assert _unb64(claims)["preferred_username"] == EMAIL and _unb64(claims)["tid"] == user["tid"]
    assert _unb64(ok["client_info"]) == {"uid": user["oid"], "utid": user["tid"]}
    assert _poll(fake, http, done["device_code"]).json()["error"] == "invalid_grant"  # single use
    assert _poll(fake, http, "no-such-code").json()["error"] == "bad_verification_code"

    bad = _devicecode(fake, http, client_id=BAD_CLIENT_ID)
    assert bad["error"] == "unauthorized_client" and bad["error_codes"] == [700016]
    mixed = _devicecode(fake, http, scope=f"{SCOPES[0]} https://graph.microsoft.com/Mail.Read")
    assert mixed["error"] == "invalid_scope"

    fake.inject("aadsts", error="slow_down", code=70016)
    assert _poll(fake, http, pending["device_code"]).json()["error"] == "slow_down"
    assert fake.counts["token_errors"] == 6  # devicecode errors are not token errors


def test_auto_approve_device_flow_answers_first_poll(fake: FakeEntra, http: requests.Session) -> None:
    fake.auto_approve = "bob@fabrikam.com"  # unknown users are added on the fly
    app = _app(fake, http)
    result = app.acquire_token_by_device_flow(app.initiate_device_flow(scopes=SCOPES))
    # The first poll is answered: one device-code request at /token, not a wait of one interval or more.
    assert "access_token" in result
    assert app.get_accounts()[0]["username"] == "bob@fabrikam.com"
    assert fake.counts["device_code"] == 1 and fake.counts["token_errors"] == 0


def _authorize(http: requests.Session, url: str) -> dict[str, str]:
    resp = http.get(url, allow_redirects=False)
    assert resp.status_code == 302, resp.text
    location = urllib.parse.urlsplit(resp.headers["Location"])
    return {k: v[0] for k, v in urllib.parse.parse_qs(location.query).items()}


@pytest.mark.filterwarnings("ignore:response_mode:UserWarning")  # msal nudges towards form_post
def test_auth_code_flow_with_pkce(fake: FakeEntra, http: requests.Session) -> None:
    app = _app(fake, http)
    redirect = "http://localhost:8765"
    flow = app.initiate_auth_code_flow(SCOPES, redirect_uri=redirect)
    # Without a signed-in user the authorize endpoint shows a page instead of redirecting.
    assert http.get(flow["auth_uri"], allow_redirects=False).status_code == 200

    fake.auto_approve = EMAIL
    auth_response = _authorize(http, flow["auth_uri"])
    assert auth_response["state"] == flow["state"]
    result = app.acquire_token_by_auth_code_flow(flow, auth_response)
    assert "access_token" in result, result
    sent_nonce = urllib.parse.parse_qs(urllib.parse.urlsplit(flow["auth_uri"]).query)["nonce"][0]
    assert result["id_token_claims"]["nonce"] == sent_nonce
    assert app.get_accounts()[0]["username"] == EMAIL
    assert fake.counts["authorization_code"] == 1

    replay = http.post(
        _token_url(fake),
        data={
            "client_id": CLIENT_ID,
            "grant_type": "authorization_code",
            "code": auth_response["code"],
            "redirect_uri": redirect,
            "code_verifier": flow["code_verifier"],
        },
    ).json()
    assert replay["error"] == "invalid_grant" and replay["error_codes"] == [54005]

    flow2 = app.initiate_auth_code_flow(SCOPES, redirect_uri=redirect)
    auth2 = _authorize(http, flow2["auth_uri"])
    flow2["code_verifier"] = "x" * 43
    wrong = app.acquire_token_by_auth_code_flow(flow2, auth2)
    assert wrong["error"] == "invalid_grant" and wrong["error_codes"] == [501481]

    # form_post answers an auto-submitting form carrying the code and state.
    page = http.get(flow2["auth_uri"] + "&response_mode=form_post", allow_redirects=False)
    assert page.status_code == 200 and 'name="code"' in page.text and flow2["state"] in page.text

    # Without auto_approve, fake_user=EMAIL (or login_hint) signs in a known user.
    fake.auto_approve = None
    flow3 = app.initiate_auth_code_flow(SCOPES, redirect_uri=redirect, login_hint=EMAIL)
    auth3 = _authorize(http, flow3["auth_uri"] + "&fake_user=1")
    assert "access_token" in app.acquire_token_by_auth_code_flow(flow3, auth3)


def test_injected_faults(fake: FakeEntra, http: requests.Session) -> None:
    url, data = _token_url(fake), {"client_id": CLIENT_ID, "grant_type": "refresh_token", "refresh_token": "x"}

    fake.inject("status", count=2, status=503, retry_after=7)
    fake.inject("status", status=429, body="slow down")
    for _ in range(2):
        resp = http.post(url, data=data)
        assert resp.status_code == 503 and resp.headers["Retry-After"] == "7"
        assert resp.json()["error"] == "temporarily_unavailable" and resp.json()["error_codes"] == [90033]
    resp = http.post(url, data=data)
    assert (resp.status_code, resp.text) == (429, "slow down")

    fake.inject("aadsts", code=50173, suberror="bad_token", description="Revoked.")
    body = http.post(url, data=data).json()
    assert body["error"] == "invalid_grant" and body["suberror"] == "bad_token"
    assert body["error_description"].startswith("AADSTS50173: Revoked.\r\n")

    fake.inject("aadsts", code=700016, error="unauthorized_client")  # table texts need no details
    assert http.post(url, data=data).json()["error_description"].startswith("AADSTS700016: Application with")

    fake.inject("nonjson")
    resp = http.post(url, data=data)
    assert resp.status_code == 200 and resp.text == "<html>oops"

    fake.inject("truncated")
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        http.post(url, data=data)
    fake.inject("truncated", honest_length=True)
    resp = http.post(url, data=data)
    assert resp.status_code == 200
    with pytest.raises(ValueError):
        resp.json()

    fake.inject("close")
    with pytest.raises(requests.exceptions.ConnectionError):
        http.post(url, data=data)

    fake.inject("hang", seconds=30)  # stop() must not wait for it
    with pytest.raises(requests.exceptions.ReadTimeout):
        http.post(url, data=data, timeout=0.3)

    # The queue is empty again: a normal answer (this refresh token is unknown).
    assert http.post(url, data=data).json()["error_codes"] == [9002313]
    fake.response_delay = 0.3
    t0 = time.monotonic()
    http.post(url, data=data)
    assert time.monotonic() - t0 >= 0.3
    assert fake.counts["token_errors"] == 11  # the hung request is still asleep, so not counted yet
    with pytest.raises(ValueError):
        fake.inject("explode")


def _auto_login(fake: FakeEntra, http: requests.Session) -> tuple[msal.PublicClientApplication, dict[str, Any]]:
    fake.auto_approve = EMAIL
    app = _app(fake, http)
    app.acquire_token_by_device_flow(app.initiate_device_flow(scopes=SCOPES))
    [account] = app.get_accounts()
    return app, account


def test_msal_raises_on_5xx_and_memoises_it(fake: FakeEntra, http: requests.Session) -> None:
    app, account = _auto_login(fake, http)
    fake.inject("status", status=503)
    with pytest.raises(MsalServiceError):
        app.acquire_token_silent(SCOPES, account=account, force_refresh=True)
    # msal's throttling cache replays the 503 (60 s without Retry-After) without asking the server.
    with pytest.raises(MsalServiceError):
        app.acquire_token_silent(SCOPES, account=account, force_refresh=True)
    assert fake.counts["refresh_token"] == 1


def test_truncated_answer_after_a_real_grant_loses_the_rotated_token(fake: FakeEntra, http: requests.Session) -> None:
    app, account = _auto_login(fake, http)
    fake.inject("truncated")
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        app.acquire_token_silent(SCOPES, account=account, force_refresh=True)
    result = app.acquire_token_silent_with_error(SCOPES, account=account, force_refresh=True)
    assert result["error"] == "invalid_grant" and result["error_codes"] == [70000]


def test_revoke_and_client_mismatch(fake: FakeEntra, http: requests.Session) -> None:
    fake.auto_approve = EMAIL
    first = _devicecode(fake, http)
    tokens = _poll(fake, http, first["device_code"]).json()
    other = http.post(
        _token_url(fake),
        data={"client_id": "someone-else", "grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
    ).json()
    assert other["error"] == "invalid_grant"

    app = _app(fake, http)
    app.acquire_token_by_device_flow(app.initiate_device_flow(scopes=SCOPES))
    [account] = app.get_accounts()
    fake.revoke(EMAIL)
    result = app.acquire_token_silent_with_error(SCOPES, account=account, force_refresh=True)
    assert result["error"] == "invalid_grant" and result["error_codes"] == [50173]
    # Access tokens stay valid until they expire, as at Entra.
    assert fake.is_valid_access_token(tokens["access_token"])


def test_introspection(fake: FakeEntra, http: requests.Session) -> None:
    fake.auto_approve = EMAIL
    assert fake.introspect_url.startswith("http://127.0.0.1:")
    access = _poll(fake, http, _devicecode(fake, http)["device_code"]).json()["access_token"]
    post = http.post(fake.introspect_url, data={"token": access, "client_id": "dovecot"}).json()
    assert post["active"] is True and post["username"] == EMAIL and post["scope"] == "mail"
    assert post["exp"] == int(fake.issued_access_tokens[access]["exp"])
    bearer = http.get(fake.introspect_url, headers={"Authorization": f"Bearer {access}"}).json()
    assert bearer["active"] is True
    assert http.post(fake.introspect_url, data={"token": "forged"}).json() == {"active": False}

    fake.token_lifetime = 1
    short = _poll(fake, http, _devicecode(fake, http)["device_code"]).json()
    assert short["expires_in"] == 1
    time.sleep(1.1)
    assert http.post(fake.introspect_url, data={"token": short["access_token"]}).json() == {"active": False}
    assert not fake.is_valid_access_token(short["access_token"])
    assert fake.counts["introspect"] == 4


def test_fifty_concurrent_clients(fake: FakeEntra) -> None:
    fake.auto_approve = EMAIL
    errors: list[BaseException] = []
    results: list[int] = []

    def client() -> None:
        try:
            with _session(fake.ca_pem) as s:  # a fresh TLS handshake per client
                for _ in range(3):
                    dc = _devicecode(fake, s)
                    tokens = _poll(fake, s, dc["device_code"]).json()
                    r = s.post(
                        _token_url(fake),
                        data={
                            "client_id": CLIENT_ID,
                            "grant_type": "refresh_token",
                            "refresh_token": tokens["refresh_token"],
                        },
                    )
                    results.append(r.status_code)
        except BaseException as exc:  # collected so the main thread can report it
            errors.append(exc)

    threads = [threading.Thread(target=client) for _ in range(50)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors[:3]
    assert results == [200] * 150
    assert fake.counts["refresh_token"] == 150
    assert time.monotonic() - t0 < 10


def test_standalone_subprocess(tmp_path: Path) -> None:
    state = tmp_path / "sub"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.fakes.entra",
            "--state-dir",
            str(state),
            "--token-lifetime",
            "600",
            "--no-strict-rotation",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    try:
        info_path = state / "fake.json"
        deadline = time.monotonic() + 15
        while not info_path.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "fake did not start"
            time.sleep(0.05)
        info = json.loads(info_path.read_text())
        client = FakeEntraClient(info["control_url"])
        with _session(info["ca_pem"]) as http:
            app = msal.PublicClientApplication(
                CLIENT_ID,
                authority=f"{info['base_url']}/organizations",
                instance_discovery=False,
                http_client=http,
                timeout=5,
            )
            flow = app.initiate_device_flow(scopes=SCOPES)
            assert client.pending_user_codes() == [flow["user_code"]]
            client.approve(flow["user_code"], EMAIL)
            result = app.acquire_token_by_device_flow(flow)
            assert result["expires_in"] == 600
            assert http.post(info["introspect_url"], data={"token": result["access_token"]}).json()["active"]
            counts = client.counts()
            assert counts["device_code"] == 1 and counts["devicecode"] == 1 and counts["introspect"] == 1

            client.set(token_lifetime=5)
            client.inject("status", status=502)
            token_url = f"{info['base_url']}/organizations/oauth2/v2.0/token"
            assert http.post(token_url, data={"grant_type": "refresh_token"}).status_code == 502
            client.revoke(EMAIL)
            client.reset_counts()
            assert client.counts()["token_errors"] == 0
            with pytest.raises(ValueError, match="not settable"):
                client.set(base_url="x")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        assert not info_path.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
