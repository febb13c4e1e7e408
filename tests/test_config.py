"""Config parsing and validation (issue 3): each error names the file, account and key, and exits 78."""

from __future__ import annotations

import pytest

from mailtoken import config
from mailtoken.errors import EX_CONFIG, ConfigError

PATH = "/home/u/.config/mailtoken/config.toml"
GOOD = """
# my accounts
[accounts.work]
provider = "microsoft"
email = "me@contoso.com"
client_id = "abc"
tenant = "organizations"

[accounts.home]
email = "me@outlook.com"
client_id = "def"
tenant = "consumers"
store = "file"
"""


def test_parses_accounts_with_defaults() -> None:
    cfg = config.parse(GOOD, PATH)
    assert sorted(cfg.accounts) == ["home", "work"]
    work = cfg.account("work")
    assert (work.email, work.client_id, work.tenant, work.store, work.cloud) == (
        "me@contoso.com",
        "abc",
        "organizations",
        "auto",
        "global",
    )
    assert cfg.account("home").provider == "microsoft"


def _error(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        config.parse(text, PATH)
    assert info.value.exit_code == EX_CONFIG
    assert PATH in info.value.message
    return info.value


def test_typo_in_key_suggests_the_closest() -> None:
    err = _error(GOOD.replace('client_id = "abc"', 'clientid = "abc"'))
    assert "[accounts.work] clientid" in err.message
    assert "did you mean 'client_id'" in err.message


def test_wrong_type_names_key_and_type() -> None:
    err = _error(GOOD.replace('tenant = "organizations"', "tenant = 42"))
    assert "[accounts.work] tenant: must be a str, not int" in err.message


@pytest.mark.parametrize(
    ("replace", "expect"),
    [
        (('email = "me@contoso.com"', 'email = "nobody"'), "[accounts.work] email: 'nobody' is not an email address"),
        (('email = "me@contoso.com"', ""), "[accounts.work] email: missing"),
        (('provider = "microsoft"', 'provider = "microsfot"'), "did you mean 'microsoft'"),
        (('store = "file"', 'store = "keyrnig"'), "did you mean 'keyring'"),
        (('tenant = "organizations"', 'tenant = "a/b"'), "[accounts.work] tenant"),
        (('tenant = "organizations"', 'authority = "http://x/y"'), "[accounts.work] authority: must be an https URL"),
        (('tenant = "organizations"', 'cloud = "usgv"'), "did you mean 'usgov'"),
    ],
)
def test_validation_errors(replace: tuple[str, str], expect: str) -> None:
    assert expect in _error(GOOD.replace(*replace)).message


def test_syntax_error_names_file_and_position() -> None:
    err = _error("[accounts.work\nemail = 1")
    assert "not valid TOML" in err.message
    assert "line 1" in err.message


def test_unknown_top_level_key() -> None:
    assert "did you mean 'accounts'" in _error("[acounts.work]\nemail='a@b.c'\n").message


def test_bad_account_name_cannot_become_a_path() -> None:
    err = _error('[accounts."../../etc"]\nemail = "a@b.cd"\nclient_id = "x"\n')
    assert "invalid account name" in err.message


def test_unknown_account_lists_known_and_suggests() -> None:
    cfg = config.parse(GOOD, PATH)
    with pytest.raises(ConfigError) as info:
        cfg.account("wrok")
    assert "did you mean 'work'" in info.value.message
    assert "accounts: home, work" in info.value.message


def test_missing_unreadable_and_directory(tmp_path) -> None:
    with pytest.raises(ConfigError, match="no config file at"):
        config.load(str(tmp_path / "nope.toml"))
    with pytest.raises(ConfigError, match="is a folder"):
        config.load(str(tmp_path))
    bad = tmp_path / "bin.toml"
    bad.write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match="not UTF-8"):
        config.load(str(bad))
