"""Microsoft's national clouds, personal accounts and shared mailboxes (issue 6).

The clouds are data (providers/catalog.toml): each preset gives the authority host, the scope resource and the
mail hosts. The scope resource is checked end to end (what the fake Entra is asked for); the hosts through
`mailtoken config`. Nothing here talks to Microsoft.
"""

from __future__ import annotations

import json

import pytest

from mailtoken import providers
from mailtoken.providers import entra
from tests.conftest import CLIENT_ID, EMAIL, Env
from tests.fakes.entra import FakeEntra
from tests.test_client_credentials import APP_ID, MAILBOX, SECRET

CLOUDS = {
    # cloud: (authority host, delegated scope resource, app-only resource, IMAP host, SMTP host)
    "global": (
        "https://login.microsoftonline.com",
        "https://outlook.office.com",
        "https://outlook.office365.com",
        "outlook.office365.com",
        "smtp.office365.com",
    ),
    "usgov": (
        "https://login.microsoftonline.us",
        "https://outlook.office365.us",
        "https://outlook.office365.us",
        "outlook.office365.us",
        "smtp.office365.us",
    ),
    "usgov-dod": (
        "https://login.microsoftonline.us",
        "https://outlook.office365.us",
        "https://outlook.office365.us",
        "outlook-dod.office365.us",
        "outlook-dod.office365.us",
    ),
    "china": (
        "https://login.chinacloudapi.cn",
        "https://partner.outlook.cn",
        "https://partner.outlook.cn",
        "imap.partner.outlook.cn",
        "smtp.partner.outlook.cn",
    ),
}


@pytest.mark.parametrize("cloud", sorted(CLOUDS))
def test_cloud_presets(cloud: str) -> None:
    authority, resource, app_resource, imap, smtp = CLOUDS[cloud]
    data = providers.cloud("microsoft", cloud)
    assert data["authority_host"] == authority
    assert data["resource"] == resource and data["app_resource"] == app_resource
    assert data["imap"] == f"{imap}:993" and data["pop"].endswith(":995") and data["smtp"] == f"{smtp}:587"
    assert data.get("unverified", False) == (cloud == "china"), "only China's hosts are unverified"


@pytest.mark.parametrize("cloud", sorted(CLOUDS))
def test_cloud_authority_and_hosts_from_the_preset(env: Env, cloud: str) -> None:
    authority, _, _, imap, smtp = CLOUDS[cloud]
    env.write_config(
        f'[accounts.gov]\nemail = "{EMAIL}"\nclient_id = "{CLIENT_ID}"\ntenant = "contoso.onmicrosoft.com"\n'
        f'cloud = "{cloud}"\n'
    )
    from mailtoken import config

    acct = config.load(str(env.config_path)).account("gov")
    assert entra.authority_for(acct) == f"{authority}/contoso.onmicrosoft.com"
    out = env.run("config", "msmtp", "gov")
    assert out.returncode == 0, out.stderr
    assert f"host {smtp}" in out.stdout
    assert f"Host {imap}" in env.run("config", "mbsync", "gov").stdout
    assert ("not verified" in out.stdout) == (cloud == "china")


@pytest.mark.parametrize("cloud", ["usgov", "china"])
def test_cloud_scope_resource_end_to_end(env: Env, fake: FakeEntra, cloud: str) -> None:
    """A signed-in user asks for the cloud's resource; an app asks for its /.default."""
    _, resource, app_resource, _, _ = CLOUDS[cloud]
    fake.auto_approve = EMAIL
    env.add_account(authority=fake.authority(), extra=f'cloud = "{cloud}"\n')
    login = env.run("login", "work")
    assert login.returncode == 0, login.stderr
    devicecode = next(r for r in fake.requests if r["path"].endswith("/devicecode"))["form"]
    assert f"{resource}/IMAP.AccessAsUser.All" in devicecode["scope"].split()
    assert f"{resource}/SMTP.Send" in devicecode["scope"].split()

    secret_file = env.root / "secret"
    secret_file.write_text(SECRET)
    fake.client_secrets[APP_ID] = SECRET
    env.write_config(
        env.config_path.read_text() + f'\n[accounts.app]\nemail = "{MAILBOX}"\nclient_id = "{APP_ID}"\n'
        f'flow = "client_credentials"\ncloud = "{cloud}"\nauthority = "{fake.authority("contoso.com")}"\n'
        f'client_secret_cmd = ["cat", "{secret_file}"]\n'
    )
    assert env.run("token", "app").returncode == 0
    app = next(r for r in fake.requests if r.get("form", {}).get("grant_type") == "client_credentials")
    assert app["form"]["scope"] == f"{app_resource}/.default"


def test_unknown_cloud_is_a_config_error(env: Env) -> None:
    env.write_config(f'[accounts.x]\nemail = "{EMAIL}"\nclient_id = "{CLIENT_ID}"\ncloud = "usgovv"\n')
    out = env.run("token", "x")
    assert out.returncode == 78
    assert "unknown cloud 'usgovv' (did you mean 'usgov'?)" in out.stderr


def test_personal_account_with_the_consumers_tenant(env: Env, fake: FakeEntra) -> None:
    """Outlook.com and Hotmail: tenant = "consumers" (through the fake's consumers authority)."""
    personal = "someone@outlook.com"
    fake.auto_approve = personal
    env.add_account(authority=fake.authority("consumers"), email=personal, extra="")
    env.write_config(env.config_path.read_text().replace('tenant = "organizations"', 'tenant = "consumers"'))
    login = env.run("login", "work")
    assert login.returncode == 0, login.stderr
    assert f"signed in as {personal}" in login.stderr
    assert any(r["path"].startswith("/consumers/") for r in fake.requests)
    token = env.run("token", "work")
    assert token.returncode == 0 and fake.is_valid_access_token(token.stdout.strip())
    assert json.loads(env.run("status", "--json").stdout)["accounts"][0]["username"] == personal


def test_shared_mailboxes(env: Env, fake: FakeEntra) -> None:
    """Sign in as yourself; the shared mailbox's address is the SASL user, with your token."""
    fake.auto_approve = EMAIL
    env.add_account(authority=fake.authority(), extra='shared = ["team@contoso.com", "sales@contoso.com"]\n')
    assert env.run("login", "work").returncode == 0
    token = env.run("token", "work").stdout.strip()
    raw = env.run("xoauth2", "work", "--user", "team@contoso.com", "--raw")
    assert raw.stdout == f"user=team@contoso.com\x01auth=Bearer {token}\x01\x01\n"

    # `mailtoken config` writes one block per mailbox, each with the signed-in user's token command.
    msmtp = env.run("config", "msmtp", "work")
    assert msmtp.returncode == 0, msmtp.stderr
    for name, user in (("work", EMAIL), ("work-team", "team@contoso.com"), ("work-sales", "sales@contoso.com")):
        assert f"account {name}\nhost " in msmtp.stdout and f"user {user}\n" in msmtp.stdout
    assert msmtp.stdout.count(" token work\n") == 3
    mbsync = env.run("config", "mbsync", "work").stdout
    assert "IMAPAccount work-team\n" in mbsync and "User team@contoso.com\n" in mbsync
    assert "Channel work-sales\n" in mbsync

    env.write_config(env.config_path.read_text().replace('"sales@contoso.com"', '"not an address"'))
    bad = env.run("token", "work")
    assert bad.returncode == 78 and "shared: 'not an address' is not an email address" in bad.stderr
