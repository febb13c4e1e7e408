"""Messages over Graph's MIME limit: a draft without its attachments, each attachment added to it (an upload
session from 3 MB on), then the draft sent. Needs Mail.ReadWrite (graph_large = true).

The draft is made from the message's own MIME, minus the attachment parts, which Exchange then holds as
attachments of the draft: headers and text parts stay the sender's, but the MIME structure is Exchange's (it
cannot be byte-exact, unlike the direct path). If anything fails before the send, the draft is deleted:
nothing is half-sent.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .. import ui
from ..deadline import Deadline
from ..errors import TemporaryFailure
from . import client
from .message import BadMessage, Prepared

SESSION_FROM = 3 * 1024 * 1024  # Graph: attachments of 3 MB or more need an upload session, smaller ones must not
CHUNK = 4 * 1024 * 1024  # "up to 4 MB" per PUT, in order


@dataclass
class Attachment:
    name: str
    content_type: str
    data: bytes


def split(mime: bytes) -> tuple[bytes, list[Attachment]]:
    """The message without its attachment parts, and those parts decoded."""
    import email.generator
    import email.parser
    import email.policy
    import io

    policy = email.policy.compat32.clone(linesep="\r\n")
    msg = email.parser.BytesParser(policy=policy).parsebytes(mime)
    found: list[Attachment] = []

    def prune(part: Any) -> None:
        if not part.is_multipart():
            return
        kept = []
        for child in part.get_payload():
            disposition = (child.get("Content-Disposition") or "").split(";")[0].strip().lower()
            if not child.is_multipart() and (disposition == "attachment" or child.get_filename()):
                found.append(
                    Attachment(
                        child.get_filename() or "attachment",
                        child.get_content_type(),
                        child.get_payload(decode=True) or b"",
                    )
                )
            else:
                prune(child)
                kept.append(child)
        part.set_payload(kept)

    prune(msg)
    out = io.BytesIO()
    email.generator.BytesGenerator(out, mangle_from_=False, policy=policy).flatten(msg)
    return out.getvalue(), found


Call = Callable[[str, str, bytes | None, str | None], client.Answer]


def send(acct: Any, prepared: Prepared, mailbox: str, call: Call, deadline: Deadline) -> None:
    from .sendmail import DIRECT_LIMIT

    if not acct.graph_large:
        raise BadMessage(
            f"the message ({len(prepared.mime) // 1024} KB) is over Graph's MIME limit for one request "
            f"({DIRECT_LIMIT // 1024} KB): set graph_large = true in [accounts.{acct.name}] and run "
            f"'mailtoken login {acct.name}' (it asks for Mail.ReadWrite, for a draft + upload session)",
            account=acct.name,
        )
    small, attachments = split(prepared.mime)
    if not attachments or len(small) > DIRECT_LIMIT:
        raise BadMessage(
            f"the message is over Graph's MIME limit ({DIRECT_LIMIT // 1024} KB) without its attachments: not sent",
            account=acct.name,
        )
    draft = call("POST", f"{mailbox}/messages", base64.b64encode(small), "text/plain").json()
    draft_id = str(draft.get("id") or "")
    if not draft_id:
        raise TemporaryFailure("temporary failure: Graph made no draft (no id): try again later", account=acct.name)
    ui.debug(f"{acct.name}: draft made; adding {len(attachments)} attachments")
    sent = False
    try:
        for item in attachments:
            _attach(acct, mailbox, draft_id, item, call, deadline)
        call("POST", f"{mailbox}/messages/{draft_id}/send", b"", None)
        sent = True
    finally:
        if not sent:
            try:
                call("DELETE", f"{mailbox}/messages/{draft_id}", None, None)
            except Exception as exc:  # the failure that got us here is what the user must see
                ui.debug(f"{acct.name}: could not delete the draft: {type(exc).__name__}")


def _attach(acct: Any, mailbox: str, draft_id: str, item: Attachment, call: Call, deadline: Deadline) -> None:
    base = f"{mailbox}/messages/{draft_id}/attachments"
    doc: dict[str, Any]
    if len(item.data) < SESSION_FROM:
        doc = {
            "@odata.type": "#microsoft.graph.fileAttachment",
            "name": item.name,
            "contentType": item.content_type,
            "contentBytes": base64.b64encode(item.data).decode(),
        }
        call("POST", base, json.dumps(doc).encode(), "application/json")
        return
    doc = {"AttachmentItem": {"attachmentType": "file", "name": item.name, "size": len(item.data)}}
    url = str(
        call("POST", f"{base}/createUploadSession", json.dumps(doc).encode(), "application/json").json()["uploadUrl"]
    )
    # The upload URL is pre-authenticated: no Authorization header (Graph refuses one there).
    conn = client.Connection(url, lambda: max(0.5, min(deadline.remaining(), client.NET_TIMEOUT)))
    try:
        for start in range(0, len(item.data), CHUNK):
            chunk = item.data[start : start + CHUNK]
            headers = {
                "Content-Type": "application/octet-stream",
                "Content-Range": f"bytes {start}-{start + len(chunk) - 1}/{len(item.data)}",
            }
            answer = conn.request("PUT", url, chunk, headers)
            if answer.status not in (200, 201):
                code, text = answer.error()
                raise TemporaryFailure(
                    f"temporary failure: the upload of {item.name} failed (HTTP {answer.status} {code} {text}): "
                    "the message was not sent: try again later",
                    account=acct.name,
                )
    finally:
        conn.close()
