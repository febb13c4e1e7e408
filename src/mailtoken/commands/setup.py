"""`config` (a client's config block), `test` (sign in to the mail servers) and `systemd` (the timer)."""

from __future__ import annotations

from dataclasses import dataclass

from .. import config
from . import Result


def client_config(client: str, account: str, config_path: str) -> Result:
    from .. import clientconf

    name = clientconf.client_name(client)
    cfg = config.load(config_path)
    if name in clientconf.BRIDGE_CLIENTS:  # password-only clients: pointed at the account's [[serve]] listener
        from ..clientconf import bridge

        return Result(stdout=bridge.GENERATORS[name](cfg, cfg.account(account)))
    return Result(stdout=clientconf.render(name, cfg.account(account)))


@dataclass(frozen=True)
class TestOptions:
    account: str
    config_path: str
    protocols: dict[str, str | None]  # imap/pop/smtp -> None (not asked), "" (default server) or a URL
    host: str | None = None
    user: str | None = None
    cafile: str | None = None
    timeout: float = 30.0


def test(opts: TestOptions) -> Result:
    from .. import doctor
    from ..fast.cached import emit

    # One line per protocol on stdout as it goes; the exit code says whether every one authenticated.
    acct = config.load(opts.config_path).account(opts.account)
    code = doctor.run(
        acct,
        opts.config_path,
        opts.protocols,
        host=opts.host,
        user=opts.user,
        cafile=opts.cafile,
        timeout=opts.timeout,
        emit=emit,
    )
    return Result(exit_code=code)


def systemd(action: str, enable: bool, serve: bool = False) -> Result:
    from .. import systemd

    if action == "install":
        systemd.install(enable=enable, serve=serve)
    else:
        systemd.uninstall()
    return Result()
