"""`token`, `xoauth2`, `oauthbearer` when the cached path could not answer: refresh, then print the secret."""

from __future__ import annotations

from dataclasses import dataclass

from .. import config, notify, tokens
from ..deadline import Deadline
from ..errors import SignInRequired
from ..fast import cached
from . import Result


@dataclass(frozen=True)
class Options:
    command: str  # "token", "xoauth2" or "oauthbearer"
    account: str
    config_path: str
    timeout: float
    user: str | None = None
    raw: bool = False
    host: str | None = None
    port: int | None = None


def run(opts: Options) -> Result:
    acct = config.load(opts.config_path).account(opts.account)
    deadline = Deadline.for_command(opts.timeout)
    try:
        with deadline.enforced(acct.name):
            rec = tokens.get(acct, opts.config_path, deadline)
    except SignInRequired as exc:
        # What notify_cmd exists for: clients run these in the background, where nobody reads stderr.
        notify.after_error(opts.config_path, acct.name, exc.message)
        raise
    user = opts.user or rec.user
    return Result(stdout=cached.secret(opts.command, rec.token, user, raw=opts.raw, host=opts.host, port=opts.port))
