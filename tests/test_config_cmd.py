"""Issue 4: `mailtoken config CLIENT ACCOUNT`. contrib/ is the generator's output for a sample account, and the
generated blocks are fed to the real clients, so neither can drift from what works."""

from __future__ import annotations

import difflib
import os
import subprocess

import pytest

from mailtoken import clientconf
from tests.conftest import BIN_DIR, CLIENT_ID, EMAIL, MAILTOKEN, Env, require
from tests.servers import drivers
from tests.servers.stack import MailStack

MS_GLOBAL = ("outlook.office365.com:993", "outlook.office365.com:995", "smtp.office365.com:587")


@pytest.mark.parametrize("client", clientconf.CLIENTS)
def test_contrib_is_the_generated_block(client: str) -> None:
    """Set MAILTOKEN_WRITE_CONTRIB=1 to rewrite contrib/ after changing the generator (then review the diff)."""
    expected = drivers.contrib_text(client)
    path = drivers.CONTRIB / drivers.CONTRIB_FILES[client]
    if os.environ.get("MAILTOKEN_WRITE_CONTRIB") == "1":
        path.write_text(expected)
    actual = path.read_text()
    diff = "".join(difflib.unified_diff(actual.splitlines(True), expected.splitlines(True), str(path), "generator"))
    assert actual == expected, diff


def _config(env: Env, *args: str) -> str:
    result = env.run("config", *args)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout


def _add(env: Env, name: str, **keys: str) -> None:
    extra = "".join(f'{k} = "{v}"\n' for k, v in keys.items())
    existing = env.config_path.read_text() if env.config_path.exists() else ""
    env.write_config(f'{existing}\n[accounts.{name}]\nemail = "{EMAIL}"\nclient_id = "{CLIENT_ID}"\n{extra}')


def test_blocks_call_the_helper_by_absolute_path(env: Env) -> None:
    _add(env, "work")
    for client in clientconf.CLIENTS:
        text = _config(env, client, "work")
        calls = (
            f"{MAILTOKEN} token work",
            f"{MAILTOKEN} xoauth2 work",
            f'"{MAILTOKEN}", "token", "work"',
            f'"work", helper="{MAILTOKEN}"',
        )
        assert any(call in text for call in calls), (client, text)
        hosts = [h for h in MS_GLOBAL if h.split(":")[0] in text]
        assert hosts, (client, text)
        assert "office365.us" not in text and "outlook.cn" not in text
    offlineimap = _config(env, "offlineimap", "work")  # the alias
    import mailtoken.offlineimap

    assert f"pythonfile = {os.path.abspath(mailtoken.offlineimap.__file__)}\n" in offlineimap
    assert f'oauth2_access_token_eval = fresh_token("work", helper="{MAILTOKEN}")' in offlineimap


@pytest.mark.parametrize(
    ("keys", "imap", "smtp", "note"),
    [
        ({"cloud": "usgov"}, "outlook.office365.us:993", "smtp.office365.us:587", None),
        ({"cloud": "usgov-dod"}, "outlook-dod.office365.us:993", "outlook-dod.office365.us:587", None),
        # The authority alone tells the cloud; two clouds share this one, so the block says how to pick the other.
        (
            {"authority": "https://login.microsoftonline.us/contoso.onmicrosoft.us"},
            "outlook.office365.us:993",
            "smtp.office365.us:587",
            'set cloud = "usgov-dod"',
        ),
        (
            {"authority": "https://login.chinacloudapi.cn/contoso.partner.onmschina.cn"},
            "imap.partner.outlook.cn:993",
            "smtp.partner.outlook.cn:587",
            "not verified",
        ),
    ],
)
def test_national_cloud_hosts(env: Env, keys: dict[str, str], imap: str, smtp: str, note: str | None) -> None:
    _add(env, "gov", **keys)
    for client in ("neomutt", "aerc", "curl"):
        text = _config(env, client, "gov")
        assert imap in text and smtp in text, text
        assert "office365.com" not in text, text
        if note:
            assert note in text.splitlines()[0], text
    msmtp = _config(env, "msmtp", "gov")
    host, port = smtp.split(":")
    assert f"\nhost {host}\nport {port}\n" in msmtp


def test_usage_errors(env: Env) -> None:
    _add(env, "work")
    bad = env.run("config", "thunderbird", "work")
    assert bad.returncode == 64 and bad.stdout == ""
    assert "unknown client 'thunderbird' (known: msmtp, mbsync, neomutt" in bad.stderr
    missing = env.run("config", "msmtp", "nosuch")
    assert missing.returncode == 78 and "no account 'nosuch'" in missing.stderr


# --- the generated blocks, fed to the clients ----------------------------------------------------------------


def _generated_user(stack: MailStack, name: str) -> tuple[Env, str]:
    """A user whose PATH lacks the venv: the blocks must reach the helper by its absolute path."""
    env = stack.user(f"gen-{name}")
    env.vars["PATH"] = os.pathsep.join(p for p in env.vars["PATH"].split(os.pathsep) if p != str(BIN_DIR))
    return env, name


def _block(env: Env, client: str) -> str:
    text = _config(env, client, "work")
    assert MAILTOKEN in text
    return text


def test_generated_msmtp(mailstack: MailStack) -> None:
    require("msmtp")
    env, _ = _generated_user(mailstack, "msmtp")
    assert drivers.msmtp_send(mailstack, env, _block(env, "msmtp")).method == "XOAUTH2"


def test_generated_mbsync(mailstack: MailStack) -> None:
    require("mbsync")
    env, _ = _generated_user(mailstack, "mbsync")
    assert drivers.mbsync_sync(mailstack, env, _block(env, "mbsync")).method == "XOAUTH2"


def test_generated_neomutt(mailstack: MailStack) -> None:
    require("neomutt", "tmux")
    env, _ = _generated_user(mailstack, "neomutt")
    block = _block(env, "neomutt")
    assert drivers.mutt_open(mailstack, env, "neomutt", block).method == "XOAUTH2"
    assert drivers.mutt_send(mailstack, env, "neomutt", block).method == "XOAUTH2"


def test_generated_mutt(mailstack: MailStack) -> None:
    require("mutt", "tmux")
    env, _ = _generated_user(mailstack, "mutt")
    block = _block(env, "mutt")
    assert drivers.mutt_open(mailstack, env, "mutt", block, pop=True).method == "XOAUTH2"
    assert drivers.mutt_send(mailstack, env, "mutt", block).method == "XOAUTH2"


def test_generated_offlineimap(mailstack: MailStack) -> None:
    """With a stale token, so the hook must run the helper the block names (offlineimap's Python has no msal)."""
    require("offlineimap")
    env, _ = _generated_user(mailstack, "offlineimap")
    env.age_record()
    refreshes = mailstack.fake.counts["refresh_token"]
    assert drivers.offlineimap_sync(mailstack, env, _block(env, "offlineimap3")).method == "XOAUTH2"
    assert mailstack.fake.counts["refresh_token"] == refreshes + 1


def test_generated_getmail(mailstack: MailStack) -> None:
    require("getmail")
    env, _ = _generated_user(mailstack, "getmail")
    assert drivers.getmail_fetch(mailstack, env, _block(env, "getmail6")).method == "XOAUTH2"


def test_generated_aerc(mailstack: MailStack) -> None:
    require("aerc", "tmux")
    env, _ = _generated_user(mailstack, "aerc")
    imap, smtp = drivers.aerc_open_and_send(mailstack, env, _block(env, "aerc"))
    assert (imap.method, smtp.method) == ("XOAUTH2", "XOAUTH2")


def test_generated_curl(mailstack: MailStack) -> None:
    require("curl")
    env, _ = _generated_user(mailstack, "curl")
    logins = drivers.curl_all(mailstack, env, _block(env, "curl"))
    assert {login.service for login in logins.values()} == {"imap", "pop3", "submission"}


def test_other_providers_and_own_hosts(env: Env) -> None:
    """Hosts are data: Google's from the catalog, and an account's own imap/pop/smtp keys over any catalog's."""
    _add(env, "gmail", provider="google", client_secret="not-secret-for-desktop-apps")
    text = _config(env, "mutt", "gmail")
    assert "@imap.gmail.com:993/" in text and "@smtp.gmail.com:587/" in text and "@pop.gmail.com:995/" in text
    _add(env, "own", imap="mail.example.org:1993", smtp="smtp.example.org:2587")
    text = _config(env, "curl", "own")
    assert "imaps://mail.example.org:1993/" in text and "pop3s://outlook.office365.com:995/" in text
    assert "smtp://smtp.example.org:2587'" in text


# --- issue 15: mpop, s-nail, imapfilter ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("keys", "imap", "pop", "smtp"),
    [
        ({}, ("outlook.office365.com", 993), ("outlook.office365.com", 995), ("smtp.office365.com", 587)),
        ({"cloud": "usgov"}, ("outlook.office365.us", 993), ("outlook.office365.us", 995), ("smtp.office365.us", 587)),
        (
            {"authority": "https://login.chinacloudapi.cn/contoso.partner.onmschina.cn"},
            ("imap.partner.outlook.cn", 993),
            ("pop3.partner.outlook.cn", 995),
            ("smtp.partner.outlook.cn", 587),
        ),
        (
            {"provider": "google", "client_secret": "not-secret-for-desktop-apps"},
            ("imap.gmail.com", 993),
            ("pop.gmail.com", 995),
            ("smtp.gmail.com", 587),
        ),
        (
            {
                "provider": "generic",
                "issuer": "https://id.example.org",
                "scopes": "!",
                "imap": "mail.example.org:1993",
                "smtp": "mail.example.org:2587",
            },
            ("mail.example.org", 1993),
            ("mail.example.org", 995),
            ("mail.example.org", 2587),
        ),
    ],
)
def test_mpop_s_nail_and_imapfilter_take_their_hosts_from_the_catalog(
    env: Env, keys: dict[str, str], imap: tuple[str, int], pop: tuple[str, int], smtp: tuple[str, int]
) -> None:
    scopes = keys.pop("scopes", None)
    _add(env, "acct", **keys)
    if scopes:  # a TOML list, which _add cannot write
        env.write_config(env.config_path.read_text() + 'scopes = ["openid", "offline_access"]\n')
    mpop = _config(env, "mpop", "acct")
    assert f"\nhost {pop[0]}\nport {pop[1]}\n" in mpop and f"passwordeval {MAILTOKEN} token acct\n" in mpop
    s_nail = _config(env, "s-nail", "acct")
    assert f"@{imap[0]}:{imap[1]}\n" in s_nail and f"@{smtp[0]}:{smtp[1]}\n" in s_nail
    assert f"  vput ! password {MAILTOKEN} token acct\n" in s_nail
    lua = _config(env, "imapfilter", "acct")
    assert f'    server = "{imap[0]}",\n    port = {imap[1]},\n' in lua
    assert f'mailtoken_xoauth2("{MAILTOKEN} xoauth2 acct")' in lua


def test_generated_mpop(mailstack: MailStack) -> None:
    require("mpop")
    from tests.servers.more_drivers import mpop_fetch

    env, _ = _generated_user(mailstack, "mpop")
    login, _ = mpop_fetch(mailstack, env, _block(env, "mpop"))
    assert login.method == "XOAUTH2"


def test_generated_s_nail(mailstack: MailStack) -> None:
    require("s-nail")
    from tests.servers.more_drivers import snail_list, snail_send

    env, _ = _generated_user(mailstack, "s-nail")
    block = _block(env, "s-nail")
    assert snail_send(mailstack, env, block).method == "XOAUTH2"
    assert snail_list(mailstack, env, block)[0].method == "XOAUTH2"


def test_generated_imapfilter(mailstack: MailStack) -> None:
    require("imapfilter")
    from tests.servers.more_drivers import imapfilter_filter

    env, _ = _generated_user(mailstack, "imapfilter")
    assert imapfilter_filter(mailstack, env, _block(env, "imapfilter"))[0].method == "XOAUTH2"


def test_a_helper_in_a_hostile_folder_is_reached_by_mbsync_and_aerc(mailstack: MailStack) -> None:
    """mbsync and aerc cannot print what they parsed, so they log in with it: the helper's path holds a blank,
    # ; quotes and $, which their syntaxes (mbsync's "\\"", go-ini's comments) must carry through."""
    require("mbsync", "aerc", "tmux")
    env, _ = _generated_user(mailstack, "hostile-folder")
    folder = env.root / 'my bin #1; it\'s "x" $HOME'
    folder.mkdir()
    (folder / "mailtoken").symlink_to(MAILTOKEN)
    blocks = {}
    for client in ("mbsync", "aerc"):
        result = subprocess.run(
            [str(folder / "mailtoken"), "config", client, "work"], env=env.vars, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr
        blocks[client] = result.stdout
    assert "PassCmd \"'" in blocks["mbsync"] and "source-cred-cmd = `'" in blocks["aerc"]
    assert drivers.mbsync_sync(mailstack, env, blocks["mbsync"]).method == "XOAUTH2"
    write_to = env.home / ".config" / "aerc" / "accounts.conf"
    drivers.write(write_to, drivers.localize(blocks["aerc"], mailstack))
    subject = mailstack.seed()
    mark = mailstack.server.mark()
    drivers.tui(env, ["aerc"], expect=subject)
    assert mailstack.server.wait_login(mark, "imap", EMAIL, "XOAUTH2")
