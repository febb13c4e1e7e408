"""`--queue DIR`: a message Graph could not take now (exit 75 or 77) is kept in DIR, and `--flush` sends it.

Each file holds one JSON line (the account and the sendmail options that matter) and then the message's bytes
as they came on stdin; written atomically, 0600, in a 0700 folder. A message Graph refuses for good on a flush
(65, 67) moves to DIR/failed for a person to look at.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import time

from .. import errors, ui
from ..errors import MailtokenError, UsageError
from ..fast import fsutil
from . import message


def keep(opts: message.Options, data: bytes) -> str:
    assert opts.queue is not None
    fsutil.ensure_private_dir(opts.queue)
    meta = {
        "account": opts.account,
        "recipients": opts.recipients,
        "t": opts.from_headers,
        "sender": opts.sender,
        "full_name": opts.full_name,
    }
    name = f"{time.time_ns():020d}-{secrets.token_hex(4)}.mail"
    path = os.path.join(opts.queue, name)
    fsutil.atomic_write(path, json.dumps(meta).encode() + b"\n" + data)
    return path


def flush(opts: message.Options) -> int:
    from . import sendmail

    if not opts.queue:
        raise UsageError("sendmail --flush: give the folder with --queue DIR")
    try:
        names = sorted(n for n in os.listdir(opts.queue) if n.endswith(".mail"))
    except FileNotFoundError:
        return errors.EX_OK
    left = 0
    for name in names:
        path = os.path.join(opts.queue, name)
        blob = fsutil.read_private(path) or b""
        head, _, data = blob.partition(b"\n")
        meta = json.loads(head)
        one = message.Options(
            account=meta["account"],
            recipients=list(meta["recipients"]),
            from_headers=bool(meta["t"]),
            sender=meta.get("sender"),
            full_name=meta.get("full_name"),
            timeout=opts.timeout,
        )
        try:
            sendmail.send(one, data)
        except MailtokenError as exc:
            exc.account = exc.account or one.account
            print(errors.format_error(exc, verbose=ui.verbose), file=sys.stderr)
            if exc.exit_code in (errors.EX_TEMPFAIL, errors.EX_NOPERM):
                left += 1
                continue
            failed = os.path.join(opts.queue, "failed")
            fsutil.ensure_private_dir(failed)
            os.replace(path, os.path.join(failed, name))
            continue
        fsutil.remove(path)
        ui.say(f"{one.account}: sent {name} from the queue")
    return errors.EX_TEMPFAIL if left else errors.EX_OK
