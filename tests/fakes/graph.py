"""A local fake of Microsoft Graph's mail-sending endpoints over HTTPS, checking tokens at the fake Entra.

Like Graph, it takes a bearer token only if the identity platform issued it, it has not expired, its audience
is Graph (https://graph.microsoft.com) and it carries the permission the call needs (Mail.Send; Mail.Send.Shared
for another mailbox; Mail.ReadWrite for drafts; for app-only tokens, the app's Mail.Send application
permission). It keeps everything it was sent (`sent`: the MIME bytes, the mailbox, the recipients it found in
To/Cc/Bcc, and the copy recipients get: the same bytes without the Bcc field).

Endpoints: POST /v1.0/{me|users/ID}/sendMail (base64 MIME), POST .../messages (MIME draft), POST
.../messages/ID/attachments[/createUploadSession], PUT /upload/SID (no Authorization, Content-Range),
POST .../messages/ID/send, DELETE .../messages/ID. Faults: inject("status", status=429, retry_after=1,
code=...), inject("hang", seconds=...), for the next requests to /v1.0 (skip=N: after N more).
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import json
import re
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._https import Listener, Reply, Request, json_reply, throwaway_tls
from .entra import FakeEntra

GRAPH = "https://graph.microsoft.com"
REQUEST_LIMIT = 4 * 1024 * 1024  # Graph's request size limit for sendMail's body


@dataclass
class Sent:
    mailbox: str  # the address the message was sent from (the token's user, or /users/ID)
    mime: bytes
    recipients: list[str]
    attachments: list[dict[str, Any]] = field(default_factory=list)

    @property
    def delivered(self) -> bytes:
        """What a recipient gets: Exchange keeps Bcc out of every delivered copy."""
        head, sep, body = self.mime.partition(b"\r\n\r\n")
        lines = re.split(rb"\r\n(?![ \t])", head)
        return b"\r\n".join(x for x in lines if not x.lower().startswith(b"bcc:")) + sep + body


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Reply:
    reply = json_reply({"error": {"code": code, "message": message}}, status)
    reply.headers.update(headers or {})
    return reply


def _addresses(mime: bytes, name: bytes) -> list[str]:
    head = mime.partition(b"\r\n\r\n")[0]
    values = [
        m.group(1).replace(b"\r\n", b"").decode("utf-8", "replace")
        for m in re.finditer(rb"(?im)^" + name + rb":(.*(?:\r\n[ \t].*)*)", head)
    ]
    return [a for _, a in email.utils.getaddresses(values) if a]


class FakeGraph:
    def __init__(self, state_dir: str | Path, entra: FakeEntra) -> None:
        self.entra = entra
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.ca_pem = str(self.state_dir / "graph-ca.pem")
        self._tls = throwaway_tls(Path(self.ca_pem), "127.0.0.1", "localhost")
        self.sent: list[Sent] = []
        self.requests: list[dict[str, Any]] = []
        self.send_as: set[tuple[str, str]] = set()  # (user, mailbox) pairs an admin granted Send As
        self.app_permissions: set[str] = set()  # client ids with the Mail.Send application permission
        self._faults: deque[dict[str, Any]] = deque()
        self._drafts: dict[str, dict[str, Any]] = {}
        self._uploads: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._listener: Listener | None = None
        self.base_url = ""

    def start(self) -> FakeGraph:
        self._listener = Listener("127.0.0.1", "graph", self._handle, self._tls)
        self.base_url = self._listener.url
        self._listener.serve_in_thread()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._listener:
            self._listener.close()

    def __enter__(self) -> FakeGraph:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def drafts(self) -> int:
        with self._lock:
            return len(self._drafts)

    @property
    def url(self) -> str:
        return f"{self.base_url}/v1.0"

    def inject(self, kind: str, count: int = 1, **kw: Any) -> None:
        with self._lock:
            self._faults.extend({"kind": kind, **kw} for _ in range(count))

    # -- dispatch --------------------------------------------------------------------------------------

    def _handle(self, req: Request) -> Reply:
        entry = {"method": req.method, "path": req.path, "time": time.time(), "size": len(req.body)}
        with self._lock:
            self.requests.append(entry)
        started = time.perf_counter()
        reply = self._route(req)
        entry["service"] = time.perf_counter() - started  # the fake's own time, for bench/graph_sendmail.py
        return reply

    def _route(self, req: Request) -> Reply:
        parts = [p for p in req.path.split("/") if p]
        if parts[:1] == ["upload"] and len(parts) == 2 and req.method == "PUT":
            return self._put_chunk(req, parts[1])
        if parts[:1] != ["v1.0"]:
            return _error(404, "ResourceNotFound", f"{req.method} {req.path}")
        with self._lock:
            fault = None
            if self._faults and self._faults[0].get("skip", 0) > 0:
                self._faults[0]["skip"] -= 1  # inject(..., skip=N): the fault hits the request after N more
            elif self._faults:
                fault = self._faults.popleft()
        if fault:
            if fault["kind"] == "hang":
                self._stopping.wait(float(fault.get("seconds", 60)))
                return Reply(drop=True)
            headers = {"Retry-After": str(fault["retry_after"])} if fault.get("retry_after") is not None else {}
            return _error(int(fault["status"]), fault.get("code", "ServiceUnavailable"), "injected", headers)
        who, rest = self._mailbox(parts[1:])
        if who is None:
            return _error(404, "ResourceNotFound", "Unsupported segment")
        token = req.headers.get("authorization", "")
        return self._authorized(req, who, rest, token[7:] if token.lower().startswith("bearer ") else "")

    def _mailbox(self, parts: list[str]) -> tuple[str | None, list[str]]:
        if parts[:1] == ["me"]:
            return "me", parts[1:]
        if parts[:1] == ["users"] and len(parts) >= 2:
            return parts[1].lower(), parts[2:]
        return None, []

    def _authorized(self, req: Request, who: str, rest: list[str], token: str) -> Reply:
        info = self.entra.issued_access_tokens.get(token)
        if info is None:
            return _error(401, "InvalidAuthenticationToken", "IDX14100: JWT is not well formed.")
        if info["exp"] <= time.time():
            return _error(401, "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired.")
        granted = info["scope"].split()
        if any(not s.startswith(GRAPH + "/") for s in granted):
            return _error(401, "InvalidAuthenticationToken", "Access token validation failure. Invalid audience.")
        permissions = {s.rsplit("/", 1)[1] for s in granted}
        app = info["email"].startswith("app:")
        if app:
            if who == "me":
                return _error(400, "BadRequest", "/me request is only valid with delegated authentication flow.")
            if info["client_id"] not in self.app_permissions:
                return _error(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
            mailbox = who
        else:
            user = info["email"].lower()
            mailbox = user if who == "me" else who
            if "Mail.Send" not in permissions:
                return _error(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
            if mailbox != user and ("Mail.Send.Shared" not in permissions or (user, mailbox) not in self.send_as):
                return _error(
                    403,
                    "ErrorSendAsDenied",
                    "The user account which was used to submit this request "
                    "does not have the right to send mail on behalf of the specified sending account.",
                )
        if rest == ["sendMail"] and req.method == "POST":
            return self._send_mime(req, mailbox, app, info)
        if rest and rest[0] == "messages":
            if not app and "Mail.ReadWrite" not in permissions:
                return _error(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
            return self._messages(req, mailbox, rest[1:])
        return _error(400, "BadRequest", f"Unsupported request {req.method} {'/'.join(rest)}")

    def _mime(self, req: Request) -> bytes | Reply:
        if len(req.body) > REQUEST_LIMIT:
            return _error(413, "RequestEntityTooLarge", "The request is larger than 4 MB.")
        if not req.headers.get("content-type", "").startswith("text/plain"):
            return _error(415, "UnsupportedMediaType", "MIME content must be text/plain, base64.")
        try:
            return base64.b64decode(req.body, validate=True)
        except (binascii.Error, ValueError):
            return _error(400, "ErrorMimeContentInvalidBase64String", "Invalid base64 string for MIME content.")

    def _from_allowed(self, mime: bytes, mailbox: str, app: bool, info: dict[str, Any]) -> bool:
        sender = (_addresses(mime, b"from") or [mailbox])[0].lower()
        return app or sender == mailbox or (info["email"].lower(), sender) in self.send_as

    def _send_mime(self, req: Request, mailbox: str, app: bool, info: dict[str, Any]) -> Reply:
        mime = self._mime(req)
        if isinstance(mime, Reply):
            return mime
        if not self._from_allowed(mime, mailbox, app, info):
            return _error(403, "ErrorSendAsDenied", "The user account does not have the right to send as From.")
        recipients = _addresses(mime, b"to") + _addresses(mime, b"cc") + _addresses(mime, b"bcc")
        if not recipients:
            return _error(400, "ErrorInvalidRecipients", "At least one recipient isn't valid.")
        with self._lock:
            self.sent.append(Sent(mailbox, mime, recipients))
        return Reply(202, b"", "text/plain")

    def _messages(self, req: Request, mailbox: str, rest: list[str]) -> Reply:
        if not rest and req.method == "POST":
            mime = self._mime(req)
            if isinstance(mime, Reply):
                return mime
            draft_id = "AAMk" + secrets.token_urlsafe(24)
            with self._lock:
                self._drafts[draft_id] = {"mailbox": mailbox, "mime": mime, "attachments": []}
            return json_reply({"id": draft_id, "isDraft": True}, 201)
        with self._lock:
            draft = self._drafts.get(rest[0]) if rest else None
        if draft is None or draft["mailbox"] != mailbox:
            return _error(404, "ErrorItemNotFound", "The specified object was not found in the store.")
        if len(rest) == 1 and req.method == "DELETE":
            with self._lock:
                del self._drafts[rest[0]]
            return Reply(204, b"", "text/plain")
        if rest[1:] == ["send"] and req.method == "POST":
            mime = draft["mime"]
            recipients = _addresses(mime, b"to") + _addresses(mime, b"cc") + _addresses(mime, b"bcc")
            with self._lock:
                del self._drafts[rest[0]]
                self.sent.append(Sent(mailbox, mime, recipients, draft["attachments"]))
            return Reply(202, b"", "text/plain")
        doc = json.loads(req.body or b"{}")
        if rest[1:] == ["attachments"] and req.method == "POST":
            content = base64.b64decode(doc["contentBytes"])
            if len(content) >= 3 * 1024 * 1024:
                return _error(413, "ErrorAttachmentSizeShouldNotBeMoreThan", "Use an upload session above 3 MB.")
            draft["attachments"].append({"name": doc["name"], "contentType": doc.get("contentType"), "data": content})
            return json_reply({"id": secrets.token_urlsafe(8)}, 201)
        if rest[1:] == ["attachments", "createUploadSession"] and req.method == "POST":
            item = doc["AttachmentItem"]
            if int(item["size"]) < 3 * 1024 * 1024:
                return _error(400, "ErrorAttachmentSizeShouldNotBeLessThanMinimumSize", "Attachment is too small.")
            sid = secrets.token_urlsafe(16)
            with self._lock:
                self._uploads[sid] = {"draft": draft, "item": item, "data": bytearray()}
            return json_reply({"uploadUrl": f"{self.base_url}/upload/{sid}", "nextExpectedRanges": ["0-"]}, 201)
        return _error(400, "BadRequest", f"Unsupported request {req.method} {'/'.join(rest)}")

    def _put_chunk(self, req: Request, sid: str) -> Reply:
        if "authorization" in req.headers:  # the upload URL is pre-authenticated; Graph refuses a token here
            return _error(401, "InvalidAuthenticationToken", "Do not send an Authorization header.")
        with self._lock:
            upload = self._uploads.get(sid)
        if upload is None:
            return _error(404, "ErrorItemNotFound", "No such upload session.")
        match = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", req.headers.get("content-range", ""))
        size = int(upload["item"]["size"])
        if not match or int(match.group(1)) != len(upload["data"]) or int(match.group(3)) != size:
            return _error(416, "InvalidRange", "The Content-Range is not the next expected range.")
        upload["data"] += req.body
        if len(upload["data"]) < size:
            return json_reply({"nextExpectedRanges": [f"{len(upload['data'])}-"]}, 200)
        item = upload["item"]
        upload["draft"]["attachments"].append(
            {"name": item["name"], "contentType": item.get("contentType"), "data": bytes(upload["data"])}
        )
        with self._lock:
            del self._uploads[sid]
        return Reply(201, b"", "text/plain", {"Location": f"{self.base_url}/v1.0/attachments/{sid}"})
