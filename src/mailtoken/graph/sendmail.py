"""`mailtoken sendmail ACCOUNT [sendmail flags] [RECIPIENT...]`: submit the message on stdin with Microsoft Graph.

A non-zero exit means Graph did not accept the message, so the caller (git, mutt, cron) still has it; with
`--queue DIR` a temporary failure keeps it in DIR for `mailtoken sendmail --flush --queue DIR` and exits 0.

With a fresh Graph record this path imports neither msal nor requests nor keyring: it reads the record like
fastpath.py does and speaks HTTPS with http.client. Only a stale record brings in tokens.py (one
single-flight refresh under the account's lock, the same grant as the mail token).
"""

from __future__ import annotations

import base64
import sys
import time
import urllib.parse

from .. import errors, locations, record, ui
from ..config import Account
from ..deadline import Deadline, DeadlineExceeded
from ..errors import ConfigError, MailtokenError, SignInRequired, TemporaryFailure
from . import client, message, scopes
from .message import BadMessage

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


def run(argv: list[str], stdin, verbose: bool = False) -> tuple[int, str | None]:
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
    if locations.xdg_supported():
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


def send(opts: message.Options, data: bytes) -> None:
    assert opts.account is not None
    acct, config_path = load_account(opts.account)
    if len(data) > MAX_SIZE:
        raise BadMessage(
            f"the message is larger than {MAX_SIZE // 2**20} MB, Exchange Online's largest message size: not sent",
            account=acct.name,
        )
    deadline = Deadline(opts.timeout)
    if opts.ignored:
        ui.debug(
            f"{acct.name}: ignoring sendmail flags that do not change a Graph submission: {' '.join(opts.ignored)}"
        )
    try:
        with deadline.enforced(acct.name):
            prepared = message.prepare(data, opts, acct.email)
            deliver(acct, config_path, prepared, deadline)
    except DeadlineExceeded:
        raise TemporaryFailure(
            f"gave up after {opts.timeout:g} s (--timeout): Graph or the identity platform did not answer in time; "
            "Graph did not confirm the message: try again later",
            account=acct.name,
        ) from None


def record_path(account: str) -> str:
    # Must be tokens.record_path(account, "graph"); computed here so that a fresh record costs no tokens.py.
    folder = locations.record_dir() if locations.xdg_supported() else None
    if folder is None:
        from .. import paths

        folder = paths.record_dir()
    return record.path_for(folder, f"{account}~{RESOURCE}")


def graph_token(acct: Account, config_path: str, deadline: Deadline, force: bool = False) -> str:
    """The Graph access token: the record's while fresh, else (or with `force`, after a 401) a refresh."""
    if not force:
        try:
            rec = record.read(record_path(acct.name))
        except OSError:
            rec = None
        if rec is not None and rec.fresh(time.time(), record.config_stamp(config_path)):
            return rec.token
    from .. import tokens

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

    if providers.app_only(acct):
        return (
            "the app needs the Mail.Send application permission on Microsoft Graph, with admin consent (and, if "
            "Exchange limits it to some mailboxes, this one among them)"
        )
    return (
        f"Microsoft Graph's {', '.join(scopes.names(acct))} is not consented for this app: run "
        f"'mailtoken login {acct.name}' (with send = \"graph\" it asks for it), or ask an admin to grant consent"
    )


def mailbox_path(acct: Account, from_address: str) -> str:
    """/me, or /users/{address} for a shared mailbox's From (and always for an app acting on its own)."""
    from .. import providers

    own = from_address.lower() == acct.email.lower()
    if providers.app_only(acct) or (not own and from_address.lower() in {a.lower() for a in acct.shared}):
        return "/users/" + urllib.parse.quote(from_address, safe="@")
    return "/me"


def deliver(acct: Account, config_path: str, prepared: message.Prepared, deadline: Deadline) -> None:
    base = scopes.api_url(acct)
    mailbox = mailbox_path(acct, prepared.from_address)
    hint = consent_hint(acct)
    conn = client.Connection(base, lambda: max(0.5, min(deadline.remaining(), client.NET_TIMEOUT)))
    state = {"token": graph_token(acct, config_path, deadline), "refreshed": False}
    ui.debug(f"{acct.name}: {len(prepared.mime)} bytes to {len(prepared.recipients)} recipients via {mailbox}")

    def call(method: str, path: str, body: bytes | None, content_type: str | None) -> client.Answer:
        headers = {"Authorization": f"Bearer {state['token']}", "User-Agent": _agent()}
        if content_type:
            headers["Content-Type"] = content_type
        return client.check(conn.request(method, base + path, body, headers), acct.name, prepared.from_address, hint)

    def with_retries(method: str, path: str, body: bytes | None, content_type: str | None) -> client.Answer:
        tries = 0
        while True:
            tries += 1
            try:
                return call(method, path, body, content_type)
            except client.Unauthorized:
                if state["refreshed"]:
                    raise SignInRequired(
                        f"Graph refused a freshly refreshed token (HTTP 401): {hint}", account=acct.name
                    ) from None
                ui.debug(f"{acct.name}: Graph refused the token (401): refreshing it once")
                state["token"], state["refreshed"] = graph_token(acct, config_path, deadline, force=True), True
            except (client.Retry, client.NotSent) as exc:
                text = exc.text
                wait = getattr(exc, "seconds", None)
                wait = min(2.0**tries * 0.25, 8.0) if wait is None else wait
                if tries >= _MAX_TRIES or wait > deadline.remaining() - 0.5:
                    raise TemporaryFailure(
                        f"temporary failure: {text}; the message was not sent: try again later", account=acct.name
                    ) from None
                ui.debug(f"{acct.name}: {text}: trying again in {wait:g} s")
                time.sleep(wait)

    try:
        if len(prepared.mime) <= DIRECT_LIMIT:
            with_retries("POST", f"{mailbox}/sendMail", base64.b64encode(prepared.mime), "text/plain")
            return
        from . import upload

        upload.send(acct, prepared, mailbox, with_retries, deadline)
    finally:
        conn.close()


def _agent() -> str:
    from .. import __version__

    return f"mailtoken/{__version__}"
