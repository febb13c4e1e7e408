"""`status` (what is signed in, never a secret) and `add` (write an account into the config)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from .. import accounts, config
from ..errors import EX_CONFIG, EX_OK
from . import Result


@dataclass(frozen=True)
class Options:
    config_path: str
    accounts: tuple[str, ...] = ()
    json: bool = False


def run(opts: Options) -> Result:
    cfg = config.load(opts.config_path)
    if not cfg.names():
        return Result(notes=[f"no accounts in {cfg.path}: add one with 'mailtoken add NAME'"])
    rows = accounts.status(cfg, list(opts.accounts))
    broken = [r for r in rows if r.state == "config-error"]
    code = EX_CONFIG if broken else EX_OK
    if opts.json:
        return Result(stdout=json.dumps(accounts.as_json(rows), indent=2), exit_code=code)
    notes = [f"{r.account}: {r.error}" for r in broken]
    return Result(stdout=accounts.render(rows), notes=notes, exit_code=code)


@dataclass(frozen=True)
class AddOptions:
    config_path: str
    account: str
    values: dict[str, str | None]
    interactive: bool


def add(opts: AddOptions) -> Result:
    given = {key: value for key, value in opts.values.items() if value}
    acct = accounts.add(opts.config_path, opts.account, given, opts.interactive)
    return Result(notes=[f"{acct.name}: added to {opts.config_path}; next: mailtoken login {acct.name}"])
