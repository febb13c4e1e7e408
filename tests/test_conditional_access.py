"""Microsoft specifics of issue 6 not covered elsewhere: Conditional Access that blocks the device code flow sends
the user to the browser flow or --paste, and every Microsoft flow runs through the msal engine end to end
(device code: test_cli_login_token.py; browser: test_cli_browser_login.py; paste: test_paste_login.py; app-only:
test_client_credentials.py; clouds, personal accounts, shared mailboxes: test_clouds.py).
"""

from __future__ import annotations

import pytest

from tests.conftest import Env
from tests.fakes.entra import FakeEntra


@pytest.mark.parametrize("code", [53003, 53000, 530033])
def test_device_code_blocked_by_conditional_access_proposes_browser_or_paste(
    env: Env, fake: FakeEntra, code: int
) -> None:
    env.add_account(authority=fake.authority())
    fake.inject(
        "aadsts",
        error="invalid_grant",
        code=code,
        description="Access has been blocked by Conditional Access policies.",
    )
    out = env.run("login", "work", "--timeout", "30")
    assert out.returncode == 77, out.stderr
    assert out.stdout == ""
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith(f"mailtoken: work: sign-in required (AADSTS{code} ")
    assert "'mailtoken login work --browser'" in last and "--paste" in last
    assert not (env.state_dir / "accounts" / "work.json").exists()


def test_conditional_access_at_refresh_keeps_the_grant(signed_in: Env, fake: FakeEntra) -> None:
    """A policy may clear without a new sign-in (another network, a compliant device): the grant is not dropped."""

    signed_in.run("token", "work")
    signed_in.age_record("work")
    fake.inject("aadsts", error="invalid_grant", code=53003)
    blocked = signed_in.run("token", "work")
    assert blocked.returncode == 77 and "--paste" in blocked.stderr
    again = signed_in.run("token", "work")
    assert again.returncode == 0, again.stderr
