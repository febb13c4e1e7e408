"""An SMTP server that accepts every message and keeps it: where Dovecot's submission service relays to."""

from __future__ import annotations

import email
import email.policy
import threading
import time
from dataclasses import dataclass
from email.message import EmailMessage

from aiosmtpd.controller import Controller

from tests.servers.ports import free_port


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes

    @property
    def message(self) -> EmailMessage:
        return email.message_from_bytes(self.data, policy=email.policy.default)  # type: ignore[return-value]


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 - aiosmtpd's hook name
        data = envelope.original_content or envelope.content
        if isinstance(data, str):
            data = data.encode()
        with self.sink._lock:
            self.sink._messages.append(Received(envelope.mail_from, tuple(envelope.rcpt_tos), data))
        return "250 Ok: stored"


class SmtpSink:
    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = free_port()
        self._lock = threading.Lock()
        self._messages: list[Received] = []
        self._controller = Controller(_Handler(self), hostname=host, port=self.port, ready_timeout=10)

    def start(self) -> SmtpSink:
        for attempt in range(3):
            try:
                self._controller.start()
                return self
            except OSError:  # the port was taken between free_port() and the bind: another one
                if attempt == 2:
                    raise
                self.port = free_port()
                self._controller = Controller(_Handler(self), hostname=self.host, port=self.port, ready_timeout=10)
        return self

    def stop(self) -> None:
        self._controller.stop()

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def messages(self) -> list[Received]:
        with self._lock:
            return list(self._messages)

    def wait_for(self, subject: str, timeout: float = 15.0) -> Received:
        """The message with this Subject; Dovecot relays after the client has been answered, so poll."""
        end = time.monotonic() + timeout
        while True:
            for received in self.messages:
                if received.message["Subject"] == subject:
                    return received
            if time.monotonic() > end:
                seen = [r.message["Subject"] for r in self.messages]
                raise AssertionError(f"no message with Subject {subject!r} reached the sink (got {seen})")
            time.sleep(0.05)
