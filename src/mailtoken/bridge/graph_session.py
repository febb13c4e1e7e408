"""A listener with `upstream = "graph"`: the bridge takes the message itself and submits it with Microsoft Graph.

Login: the local password as for any listener, then the account's Graph token (from its record, or one
single-flight refresh), so a grant that needs a new sign-in is refused at AUTH with the sign-in text, as on
other listeners. After login, smtp_submit.SubmitSide speaks SMTP; each message goes to graph.upstream.submit
(mailtoken sendmail's delivery: envelope honoured exactly, Bcc kept out of delivered copies, retries), and the
client's DATA is answered with 250 only after Graph's 202, else with the 4xx/5xx reply and the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from .. import errors
from ..config import Account
from ..errors import MailtokenError, SignInRequired
from . import auth
from .events import Close, Send
from .smtp_submit import Submit, SubmitSide, capabilities

if TYPE_CHECKING:
    from .passwords import Verifier
    from .session import Session

COMMAND_TIMEOUT = 300.0  # RFC 5321 4.5.3.2.7: a server waits at least 5 minutes for the next command
TOKEN_TIMEOUT = 30.0


def max_size(acct: Account) -> int:
    """The SIZE to advertise: Graph's MIME limit, or the upload-session limit with graph_large."""
    from ..graph import sendmail

    return sendmail.MAX_SIZE if acct.graph_large else sendmail.DIRECT_LIMIT


def listener_capabilities(acct: Account) -> list[str]:
    return capabilities(max_size(acct))


class GraphTokens:
    """The accounts' Graph tokens for logins: one asyncio.Lock per account, so a burst of logins waits for one
    refresh (tokens.get is single-flight across processes too)."""

    def __init__(self, config_path: str) -> None:
        self.config_path = config_path
        self._locks: dict[str, asyncio.Lock] = {}

    async def ensure(self, acct: Account) -> None:
        from ..deadline import Deadline
        from ..graph import sendmail

        async with self._locks.setdefault(acct.name, asyncio.Lock()):
            target = sendmail.Target.of(acct)
            await asyncio.to_thread(sendmail.graph_token, target, self.config_path, Deadline(TOKEN_TIMEOUT))


async def login(
    acct: Account,
    user: str,
    password: str,
    source: str,
    verifier: Verifier,
    graph_tokens: GraphTokens,
    notify: Callable[[Account, str], None],
) -> auth.Outcome:
    checked = await auth.check_password(acct, user, password, source, verifier)
    if isinstance(checked, auth.Outcome):
        return checked
    address, device = checked
    who = f"login {address} (device {device})"
    try:
        await graph_tokens.ensure(acct)
    except SignInRequired as exc:
        notify(acct, exc.message)
        text = f"sign-in required: run 'mailtoken login {acct.name}'"
        return auth.Outcome("signin_required", text, f"{who}: {errors.one_line(exc.message)}")
    except MailtokenError as exc:
        text = "temporary failure getting a token: try again later"
        return auth.Outcome("temporary", text, f"{who}: {errors.one_line(exc.message)}")
    return auth.Outcome("ok", "", f"{who} ok, Graph token ready")


async def take_messages(session: Session, pending: bytes) -> None:
    """After a good login: SMTP transactions until QUIT, each message submitted with Graph."""
    from ..graph import upstream

    state, bridge = session.state, session.bridge
    acct = state.account
    machine = SubmitSide(max_size=max_size(acct))
    events = machine.receive(pending)
    task = asyncio.current_task()
    while True:
        while events:
            event = events.pop(0)
            if isinstance(event, Send):
                session.writer.write(event.data)
                session.down_bytes += len(event.data)
            elif isinstance(event, Submit):
                await session.writer.drain()
                started = time.monotonic()
                ok, code, text = await upstream.submit(
                    acct, event.data, event.sender, list(event.recipients), config_path=bridge.cfg.path
                )
                verdict = "accepted by Graph" if ok else f"not sent: {code} {text}"
                session.messages += ok
                session.note(
                    f"message of {len(event.data)} bytes from <{event.sender}> to {len(event.recipients)} "
                    f"recipient(s): {verdict} ({time.monotonic() - started:.1f} s)"
                )
                events[:0] = machine.submitted(code, text)
            elif isinstance(event, Close):
                with contextlib.suppress(OSError):
                    await session.writer.drain()
                return
        idle = machine.state == "command" and not machine.buf
        if idle and bridge.stopping.is_set():
            with contextlib.suppress(OSError):
                session.writer.write(b"421 4.3.2 mailtoken serve is shutting down\r\n")
                await session.writer.drain()
            session.outcome = "authenticated, closed by shutdown"
            return
        try:
            await session.writer.drain()
            if idle and task is not None:
                bridge.idle.add(task)  # between messages: shutdown may end the session at once
            data = await asyncio.wait_for(session.reader.read(65536), COMMAND_TIMEOUT)
        except asyncio.CancelledError:
            if not bridge.stopping.is_set():
                raise
            with contextlib.suppress(OSError):
                session.writer.write(b"421 4.3.2 mailtoken serve is shutting down\r\n")
                await session.writer.drain()
            session.outcome = "authenticated, closed by shutdown"
            return
        except asyncio.TimeoutError:
            with contextlib.suppress(OSError):
                session.writer.write(b"421 4.4.2 Idle too long, closing\r\n")
                await session.writer.drain()
            session.outcome = f"authenticated, idle for {COMMAND_TIMEOUT:g} s"
            return
        except (ConnectionError, OSError, ssl.SSLError):
            session.outcome = "authenticated, client connection broke"
            return
        finally:
            if task is not None:
                bridge.idle.discard(task)
        if not data:
            return
        session.up_bytes += len(data)
        events = machine.receive(data)
