"""Graph as the upstream of an SMTP listener (the bridge): `await submit(...)` once the client's DATA is in,
and answer DATA with the code it returns, 250 only after Graph's 202.

The submission is `mailtoken sendmail`'s (sendmail.deliver: the envelope honoured exactly, retries, one
refresh on a 401), run in a worker thread so the listener's event loop keeps serving other clients. The
deadline is kept by socket timeouts rather than SIGALRM, which only the main thread may use.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from .. import errors
from ..deadline import Deadline
from ..errors import MailtokenError
from . import message, sendmail

if TYPE_CHECKING:
    from ..config import Account

TIMEOUT = 120.0
# What the SMTP client hears for each outcome: RFC 5321 reply code and RFC 3463 enhanced status.
_REPLIES = {
    errors.EX_TEMPFAIL: (451, "4.3.0"),
    errors.EX_NOPERM: (451, "4.7.0"),  # the bridge's sign-in: an admin fixes it, the client retries later
    errors.EX_CONFIG: (451, "4.3.5"),
    errors.EX_NOUSER: (550, "5.7.1"),
    errors.EX_DATAERR: (554, "5.6.0"),
    errors.EX_USAGE: (554, "5.5.4"),
}


def submit_blocking(
    acct: Account,
    mime: bytes,
    envelope_from: str,
    recipients: list[str],
    timeout: float = TIMEOUT,
    config_path: str | None = None,
) -> tuple[bool, int, str]:
    opts = message.Options(account=acct.name, recipients=list(recipients), sender=envelope_from or None)
    try:
        if len(mime) > sendmail.MAX_SIZE:
            raise message.BadMessage(f"the message is larger than {sendmail.MAX_SIZE // 2**20} MB")
        prepared = message.prepare(mime, opts, acct.email)
        target = sendmail.Target.of(acct)
        sendmail.deliver(target, config_path or sendmail._config_path(), prepared, Deadline(timeout))
    except MailtokenError as exc:
        code, status = _REPLIES.get(exc.exit_code, (451, "4.3.0"))
        return False, code, f"{status} {errors.one_line(exc.message)}"
    except Exception as exc:  # never the text: it may hold a token
        return False, 451, f"4.3.0 internal error ({type(exc).__name__})"
    return True, 250, "2.0.0 accepted by Microsoft Graph"


async def submit(
    acct: Account, mime: bytes, envelope_from: str, recipients: list[str], config_path: str | None = None
) -> tuple[bool, int, str]:
    """(accepted, SMTP reply code, reply text) for the message the client sent; CONFIG_PATH: the bridge's
    config file (its token records are that file's), else the one `mailtoken sendmail` would use."""
    return await asyncio.to_thread(submit_blocking, acct, mime, envelope_from, recipients, TIMEOUT, config_path)
