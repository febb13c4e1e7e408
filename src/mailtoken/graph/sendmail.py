"""`mailtoken sendmail ACCOUNT [sendmail flags] [RECIPIENT...]`: submit the message on stdin with Microsoft Graph.

A non-zero exit means Graph did not accept the message, so the caller (git, mutt, cron) still has it; with
`--queue DIR` a temporary failure keeps it in DIR for `mailtoken sendmail --flush --queue DIR` and exits 0.

With a fresh Graph record this path imports neither msal nor requests nor keyring, nor even the config
module: it reads the record like fastpath.py does, takes the account's sending settings from a small file
beside it (Target, valid only for the config file it was made from) and speaks HTTPS over ssl sockets. Only a
stale record brings in tokens.py (one single-flight refresh under the account's lock, the same grant as the
mail token).
"""

from __future__ import annotations

import base64
import sys
import time
import urllib.parse
from typing import TYPE_CHECKING, BinaryIO

from .. import errors, ui
from ..deadline import Deadline
from ..errors import ConfigError, DeadlineExceeded, MailtokenError, SignInRequired, TemporaryFailure
from ..fast import fsutil, locations, record
from . import client, message
from .message import BadMessage

if TYPE_CHECKING:
    from ..config import Account

# Graph's sendMail takes the MIME text base64-encoded in one request of at most 4 MB, and has been seen to drop
# larger MIME silently (microsoft-graph-docs-contrib#3079: > 2240 KB): above this, a draft + upload session.
DIRECT_LIMIT = 2 * 1024 * 1024
# Exchange Online's largest MaxSendSize.
MAX_SIZE = 150 * 1024 * 1024
RESOURCE = "graph"
_MAX_TRIES = 6


def main(argv: list[str], verbose: bool = False) -> int:
    code, _ = run(argv, sys.stdin.buffer, verbose)
    return code


def run(argv: list[str], stdin: BinaryIO, verbose: bool = False) -> tuple[int, str | None]:
    """The exit status, and the account (for the caller's notice)."""
    opts: message.Options | None = None
    try:
        opts = message.parse_args(argv)
        ui.verbose = verbose or opts.verbose
        if opts.flush:
            from . import queue

            return queue.flush(opts), None
        data = stdin.read(MAX_SIZE + 1)
        try:
            send(opts, data)
        except MailtokenError as exc:
            if opts.queue and exc.exit_code in (errors.EX_TEMPFAIL, errors.EX_NOPERM):
                from . import queue

                where = queue.keep(opts, data)
                ui.say(
                    f"{opts.account}: {errors.one_line(exc.message)}; kept in {where} for 'mailtoken sendmail --flush'"
                )
                return errors.EX_OK, opts.account
            raise
        return errors.EX_OK, opts.account
    except MailtokenError as exc:
        if exc.account is None and opts is not None:
            exc.account = opts.account
        print(errors.format_error(exc, verbose=ui.verbose), file=sys.stderr)
        if isinstance(exc, SignInRequired) and opts is not None and opts.account:
            _notify(opts.account, exc.message)
        return exc.exit_code, opts.account if opts else None
    except KeyboardInterrupt:
        print("mailtoken: interrupted", file=sys.stderr)
        return 130, None
    except Exception as exc:  # one line, never the exception's text (it may hold a token)
        if ui.verbose:
            import traceback

            sys.stderr.write("".join(traceback.format_tb(exc.__traceback__)))
        print(errors.format_error(exc), file=sys.stderr)
        return errors.EX_SOFTWARE, None


def _notify(account: str, text: str) -> None:
    from .. import notify

    notify.after_error(_config_path(), account, text)


def _config_path() -> str:
    if locations.fast_supported():
        return locations.config_path()
    from .. import paths

    return paths.config_path()


def load_account(name: str) -> tuple[Account, str]:
    from .. import config

    path = _config_path()
    acct = config.load(path).account(name)
    if acct.send != "graph":
        raise ConfigError(
            f'[accounts.{name}] sends with SMTP: set send = "graph" in {path} to send with Microsoft Graph, '
            f"then run 'mailtoken login {name}' once (it asks for the Mail.Send permission)",
            account=name,
        )
    return acct, path


class Target:
    """What a send needs from the account. Kept beside the Graph record (ACCOUNT~graph.send, no secret in it)
    with the stamp of the config file it came from: a cached send then need not load and validate the config."""

    MAGIC = "mailtoken-send 1"

    def __init__(
        self,
        name: str,
        email: str,
        api_url: str,
        shared: tuple[str, ...],
        app_only: bool,
        graph_large: bool,
        hint: str,
        acct: Account | None = None,
    ) -> None:
        self.name, self.email, self.api_url, self.shared = name, email, api_url, shared
        self.app_only, self.graph_large, self.hint = app_only, graph_large, hint
        self._acct = acct

    @classmethod
    def of(cls, acct: Account) -> Target:
        from .. import providers
        from . import scopes

        return cls(
            acct.name,
            acct.email,
            scopes.api_url(acct),
            tuple(acct.shared),
            providers.app_only(acct),
            acct.graph_large,
            consent_hint(acct),
            acct,
        )

    def account(self) -> Account:
        """The account itself, for a token refresh: loads the config only then."""
        if self._acct is None:
            self._acct = load_account(self.name)[0]
        return self._acct

    def dump(self, stamp: str) -> bytes:
        values = [
            self.name,
            self.email,
            self.api_url,
            " ".join(self.shared),
            str(int(self.app_only)),
            str(int(self.graph_large)),
            self.hint,
        ]
        if any("\n" in v for v in [stamp, *values]):
            raise ValueError("a line break in a setting")
        return "\n".join([self.MAGIC, stamp, *values, ""]).encode("utf-8")

    @classmethod
    def load(cls, name: str, stamp: str) -> Target | None:
        try:
            data = fsutil.read_private(target_path(name))
        except OSError:
            return None
        lines = (data or b"").decode("utf-8", "replace").split("\n")
        if len(lines) != 10 or lines[0] != cls.MAGIC or lines[1] != stamp or lines[2] != name:
            return None
        shared = tuple(lines[5].split()) if lines[5] else ()
        return cls(lines[2], lines[3], lines[4], shared, lines[6] == "1", lines[7] == "1", lines[8])


def target_for(name: str, config_path: str) -> Target:
    stamp = record.config_stamp(config_path)
    target = Target.load(name, stamp)
    if target is not None:
        return target
    acct, _ = load_account(name)
    target = Target.of(acct)
    try:
        fsutil.atomic_write(target_path(name), target.dump(stamp))
    except (OSError, ValueError) as exc:  # it only saves the next send a config load
        ui.debug(f"{name}: could not keep the sending settings: {exc}")
    return target


def send(opts: message.Options, data: bytes) -> None:
    assert opts.account is not None
    if len(data) > MAX_SIZE:
        raise BadMessage(
            f"the message is larger than {MAX_SIZE // 2**20} MB, Exchange Online's largest message size: not sent",
            account=opts.account,
        )
    config_path = _config_path()
    target = target_for(opts.account, config_path)
    deadline = Deadline(opts.timeout)
    if opts.ignored:
        ui.debug(f"{target.name}: ignoring sendmail flags that change nothing for Graph: {' '.join(opts.ignored)}")
    try:
        with deadline.enforced(target.name):
            prepared = message.prepare(data, opts, target.email)
            deliver(target, config_path, prepared, deadline)
    except DeadlineExceeded:
        raise TemporaryFailure(
            f"gave up after {opts.timeout:g} s (--timeout): Graph or the identity platform did not answer in time; "
            "Graph did not confirm the message: try again later",
            account=target.name,
        ) from None


def _record_dir() -> str:
    if locations.fast_supported():
        return locations.record_dir()
    from .. import paths

    return paths.record_dir()


def record_path(account: str) -> str:
    # Must be tokens.record_path(account, "graph"); computed here so that a fresh record costs no tokens.py.
    return record.path_for(_record_dir(), f"{account}~{RESOURCE}")


def target_path(account: str) -> str:
    return record_path(account)[: -len(".token")] + ".send"


def graph_token(target: Target, config_path: str, deadline: Deadline, force: bool = False) -> str:
    """The Graph access token: the record's while fresh, else (or with `force`, after a 401) a refresh."""
    if not force:
        try:
            rec = record.read(record_path(target.name))
        except OSError:
            rec = None
        if rec is not None and rec.fresh(time.time(), record.config_stamp(config_path)):
            return rec.token
    from .. import tokens

    acct = target.account()
    try:
        rec = tokens.get(
            acct,
            config_path,
            deadline,
            resource=RESOURCE,
            min_validity=float("inf") if force else 0,
            serve_stale=not force,
        )
    except SignInRequired as exc:
        if "65001" in exc.message or "consent" in (exc.detail or "").lower():
            exc.message = consent_hint(acct) + f" ({exc.message})"
        raise
    return rec.token


def consent_hint(acct: Account) -> str:
    from .. import providers
    from . import scopes

    if providers.app_only(acct):
        return (
            "the app needs the Mail.Send application permission on Microsoft Graph, with admin consent (and, if "
            "Exchange limits it to some mailboxes, this one among them)"
        )
    return (
        f"Microsoft Graph's {', '.join(scopes.names(acct))} is not consented for this app: run "
        f"'mailtoken login {acct.name}' (with send = \"graph\" it asks for it), or ask an admin to grant consent"
    )


def mailbox_path(target: Target, from_address: str) -> str:
    """/me, or /users/{address} for a shared mailbox's From (and always for an app acting on its own)."""
    own = from_address.lower() == target.email.lower()
    if target.app_only or (not own and from_address.lower() in {a.lower() for a in target.shared}):
        return "/users/" + urllib.parse.quote(from_address, safe="@")
    return "/me"


def deliver(target: Target, config_path: str, prepared: message.Prepared, deadline: Deadline) -> None:
    base, name, hint = target.api_url, target.name, target.hint
    mailbox = mailbox_path(target, prepared.from_address)
    conn = client.Connection(base, lambda: max(0.5, min(deadline.remaining(), client.NET_TIMEOUT)))
    state = {"token": graph_token(target, config_path, deadline), "refreshed": False}
    ui.debug(f"{name}: {len(prepared.mime)} bytes to {len(prepared.recipients)} recipients via {mailbox}")

    def call(method: str, path: str, body: bytes | None, content_type: str | None) -> client.Answer:
        headers = {"Authorization": f"Bearer {state['token']}", "User-Agent": _agent()}
        if content_type:
            headers["Content-Type"] = content_type
        return client.check(conn.request(method, base + path, body, headers), name, prepared.from_address, hint)

    def with_retries(method: str, path: str, body: bytes | None, content_type: str | None) -> client.Answer:
        tries = 0
        while True:
            tries += 1
            try:
                return call(method, path, body, content_type)
            except client.Unauthorized:
                if state["refreshed"]:
                    raise SignInRequired(
                        f"Graph refused a freshly refreshed token (HTTP 401): {hint}", account=name
                    ) from None
                ui.debug(f"{name}: Graph refused the token (401): refreshing it once")
                state["token"], state["refreshed"] = graph_token(target, config_path, deadline, force=True), True
            except (client.Retry, client.NotSent) as exc:
                text = exc.text
                wait = getattr(exc, "seconds", None)
                wait = min(2.0**tries * 0.25, 8.0) if wait is None else wait
                if tries >= _MAX_TRIES or wait > deadline.remaining() - 0.5:
                    raise TemporaryFailure(
                        f"temporary failure: {text}; the message was not sent: try again later", account=name
                    ) from None
                ui.debug(f"{name}: {text}: trying again in {wait:g} s")
                time.sleep(wait)

    try:
        if len(prepared.mime) <= DIRECT_LIMIT:
            with_retries("POST", f"{mailbox}/sendMail", base64.b64encode(prepared.mime), "text/plain")
            return
        from . import upload

        upload.send(target, prepared, mailbox, with_retries, deadline)
    finally:
        conn.close()


def _agent() -> str:
    from .. import __version__

    return f"mailtoken/{__version__}"
