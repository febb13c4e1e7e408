"""`login` and `logout`."""

from __future__ import annotations

from dataclasses import dataclass

from .. import config, notify
from ..errors import UsageError
from . import Result


@dataclass(frozen=True)
class Options:
    account: str
    config_path: str
    method: str = "default"  # default | device | browser | paste
    timeout: float | None = None
    no_wait: bool = False
    resume: bool = False


def run(opts: Options) -> Result:
    from ..signin import device, login

    acct = config.load(opts.config_path).account(opts.account)
    if (opts.no_wait or opts.resume) and opts.method in ("browser", "paste"):
        raise UsageError("--no-wait and --resume work with the device code flow only, not --browser or --paste")
    if opts.no_wait and opts.resume:
        raise UsageError("--no-wait starts a sign-in and --resume finishes it: give one of them")
    if opts.no_wait:
        return Result(stdout=device.start_detached(acct))
    # "default": the device code flow, unless the provider refuses it (signin/login.py then picks another).
    method = "resume" if opts.resume else opts.method
    login.login(acct, opts.config_path, method, opts.timeout)
    notify.reset(acct.name)
    return Result()


def logout(account: str, config_path: str) -> Result:
    from ..signin import login

    removed = login.logout(config.load(config_path).account(account))
    return Result(notes=[f"{account}: removed {', '.join(removed)}" if removed else f"{account}: nothing was stored"])
