"""A scripted fake of Exchange Online's IMAP, POP3 and SMTP front ends, for `mailtoken test`'s diagnoses.

It speaks just enough of each protocol for one XOAUTH2 sign-in and the command after it, and answers in
Exchange's own words (greetings, capabilities, "User is authenticated but not connected.", 535 5.7.139 ...).
What a scenario answers is fixed when it starts; every XOAUTH2 string it receives is kept, decoded.
IMAPS and POP3S use implicit TLS, SMTP uses STARTTLS on a plain port, as at outlook.office365.com.
"""

from __future__ import annotations

import base64
import contextlib
import socketserver
import ssl
import threading
from dataclasses import dataclass, field

from tests.servers.tls import HOST, TestTLS

FE = "BN0PR04CA0001.namprd04.prod.outlook.com"  # the front-end server name Exchange puts in its replies
STAMP = f"[{FE} 2026-01-05T10:00:00.000Z 08DE2B8C1A2B3C4D]"

IMAP_CAPS = "IMAP4 IMAP4rev1 AUTH=PLAIN AUTH=XOAUTH2 SASL-IR UIDPLUS ID UNSELECT CHILDREN IDLE NAMESPACE LITERAL+"
SMTP_535 = {
    "refused": f"535 5.7.3 Authentication unsuccessful {STAMP}",
    "tenant": "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant. "
    f"Visit https://aka.ms/smtp_auth_disabled for more information. {STAMP}",
    "mailbox": "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Mailbox. "
    f"Visit https://aka.ms/smtp_auth_disabled for more information. {STAMP}",
    "security_defaults": "535 5.7.139 Authentication unsuccessful, user is locked by your organization's security "
    f"defaults policy. Contact your administrator. {STAMP}",
    "conditional_access": "535 5.7.139 Authentication unsuccessful, the request did not meet the criteria to be "
    f"authenticated successfully. Contact your administrator. {STAMP}",
}


@dataclass
class Scenario:
    imap: str = "ok"  # ok | refused | not_connected | throttled | expires
    pop: str = "ok"  # ok | refused
    smtp: str = "ok"  # ok | no_xoauth2 | one of SMTP_535
    messages: int = 3
    received: list[tuple[str, str]] = field(default_factory=list)  # (protocol, decoded XOAUTH2 string)


def _decode(line: bytes) -> str:
    try:
        return base64.b64decode(line.strip(), validate=True).decode("utf-8", "replace")
    except ValueError:
        return "<not base64>"


class _Handler(socketserver.StreamRequestHandler):
    server: _Server
    timeout = 30

    def send(self, *lines: str) -> None:
        self.wfile.write("".join(line + "\r\n" for line in lines).encode())
        self.wfile.flush()

    def recv(self) -> bytes:
        line = self.rfile.readline(64 * 1024)
        if not line:
            raise ConnectionError("client went away")
        return line.rstrip(b"\r\n")

    def starttls(self) -> None:
        self.request = self.server.ctx.wrap_socket(self.request, server_side=True)
        self.rfile = self.request.makefile("rb")
        self.wfile = self.request.makefile("wb")

    def handle(self) -> None:
        with contextlib.suppress(ConnectionError, ssl.SSLError, OSError):
            getattr(self, f"_{self.server.protocol}")(self.server.scenario)

    def _keep(self, protocol: str, line: bytes) -> None:
        with self.server.lock:
            self.server.scenario.received.append((protocol, _decode(line)))

    # -- IMAP ------------------------------------------------------------------------------------------

    def _imap(self, sc: Scenario) -> None:
        self.send("* OK The Microsoft Exchange IMAP4 service is ready. [QgBOADAAUABSADAANABDAEEAMAAwADAAMQA=]")
        authed = False
        while True:
            tag, _, rest = self.recv().decode().partition(" ")
            cmd, _, args = rest.partition(" ")
            cmd = cmd.upper()
            if authed and sc.imap == "not_connected" and cmd != "LOGOUT":
                # Whatever comes first after the OK to AUTHENTICATE (EOP#74, #275; getmail6#221).
                self.send(f"{tag} BAD User is authenticated but not connected.", "* BYE Connection closed. 14")
                return
            if authed and sc.imap == "expires" and cmd not in ("LOGOUT", "CAPABILITY"):
                # The token ran out under an open session (iroco-co/aioimaplib#83).
                self.send("* BYE Session invalidated - AccessTokenExpired")
                return
            if cmd == "CAPABILITY":
                self.send(f"* CAPABILITY {IMAP_CAPS}", f"{tag} OK CAPABILITY completed.")
            elif cmd == "AUTHENTICATE" and args.upper().startswith("XOAUTH2"):
                parts = args.split(" ", 1)
                if len(parts) == 2:
                    response = parts[1].encode()
                else:
                    self.send("+ ")
                    response = self.recv()
                self._keep("imap", response)
                if sc.imap == "refused":
                    self.send(f"{tag} NO AUTHENTICATE failed.")
                elif sc.imap == "throttled":
                    self.send(f"{tag} BAD Request is throttled. Suggested Backoff Time: 89117 milliseconds")
                    return
                else:
                    authed = True
                    self.send(f"{tag} OK AUTHENTICATE completed.")
            elif cmd == "NOOP":
                self.send(f"{tag} OK NOOP completed.")
            elif cmd in ("LIST", "SELECT", "EXAMINE", "NAMESPACE", "STATUS"):
                if not authed:
                    self.send(f"{tag} BAD Command received in Invalid state.")
                elif cmd == "LIST":
                    self.send('* LIST (\\Marked \\HasNoChildren) "/" INBOX', f"{tag} OK LIST completed.")
                else:
                    self.send(
                        f"* {sc.messages} EXISTS",
                        "* 0 RECENT",
                        "* FLAGS (\\Seen \\Answered \\Flagged \\Deleted \\Draft $MDNSent)",
                        f"{tag} OK [READ-ONLY] {cmd} completed.",
                    )
            elif cmd == "LOGOUT":
                self.send("* BYE Microsoft Exchange Server IMAP4 server signing off.", f"{tag} OK LOGOUT completed.")
                return
            else:
                self.send(f"{tag} BAD Command Argument Error. 11")

    # -- POP3 ------------------------------------------------------------------------------------------

    def _pop(self, sc: Scenario) -> None:
        self.send("+OK The Microsoft Exchange POP3 service is ready. [QgBOADAAUABSADAANABDAEEAMAAwADAAMQA=]")
        authed = False
        while True:
            line = self.recv().decode()
            cmd = line.split(" ")[0].upper()
            if cmd == "CAPA":
                self.send("+OK", "TOP", "UIDL", "SASL PLAIN XOAUTH2", "USER", ".")
            elif cmd == "AUTH" and line.upper().startswith("AUTH XOAUTH2 "):
                # The one-line form is refused (getmail6/getmail6#256, marlam/mpop#11).
                self.send("-ERR Protocol error. Connection is closed. 10")
                return
            elif cmd == "AUTH" and line.upper() == "AUTH XOAUTH2":
                self.send("+ ")
                self._keep("pop", self.recv())
                if sc.pop == "refused":
                    self.send("-ERR Authentication failure: unknown user name or bad password.")
                else:
                    authed = True
                    self.send("+OK User successfully authenticated.")
            elif cmd == "STAT":
                self.send(
                    f"+OK {sc.messages} {sc.messages * 1024}" if authed else "-ERR Command is not valid in this state."
                )
            elif cmd == "QUIT":
                self.send("+OK Microsoft Exchange Server POP3 server signing off.")
                return
            else:
                self.send("-ERR Protocol error. 14")

    # -- SMTP ------------------------------------------------------------------------------------------

    def _smtp(self, sc: Scenario) -> None:
        self.send(f"220 {FE} Microsoft ESMTP MAIL Service ready at Mon, 5 Jan 2026 10:00:00 +0000")
        tls = False
        while True:
            line = self.recv().decode()
            cmd = line.split(" ")[0].upper()
            if cmd in ("EHLO", "HELO"):
                auth = [] if not tls else ["AUTH LOGIN XOAUTH2"] if sc.smtp != "no_xoauth2" else ["AUTH LOGIN"]
                caps = [
                    "SIZE 157286400",
                    "PIPELINING",
                    "DSN",
                    "ENHANCEDSTATUSCODES",
                    *([] if tls else ["STARTTLS"]),
                    *auth,
                    "8BITMIME",
                    "BINARYMIME",
                    "CHUNKING",
                    "SMTPUTF8",
                ]
                lines = [f"{FE} Hello [127.0.0.1]", *caps]
                self.send(*[f"250-{x}" for x in lines[:-1]], f"250 {lines[-1]}")
            elif cmd == "STARTTLS" and not tls:
                self.send("220 2.0.0 SMTP server ready")
                self.starttls()
                tls = True
            elif cmd == "AUTH":
                parts = line.split(" ")
                if not tls:
                    self.send("504 5.7.4 Unrecognized authentication type")
                    continue
                if len(parts) > 2:
                    response = parts[2].encode()
                else:
                    self.send("334 ")
                    response = self.recv()
                self._keep("smtp", response)
                if sc.smtp == "ok":
                    self.send("235 2.7.0 Authentication successful")
                else:
                    self.send(SMTP_535.get(sc.smtp, SMTP_535["refused"]))
            elif cmd == "QUIT":
                self.send("221 2.0.0 Service closing transmission channel")
                return
            else:
                self.send("500 5.3.3 Unrecognized command")


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, protocol: str, port: int, scenario: Scenario, ctx: ssl.SSLContext, implicit: bool) -> None:
        self.protocol, self.scenario, self.ctx, self.implicit = protocol, scenario, ctx, implicit
        self.lock = threading.Lock()
        super().__init__((HOST, port), _Handler)

    def get_request(self):
        sock, addr = super().get_request()
        if self.implicit:
            sock.settimeout(30)
            sock = self.ctx.wrap_socket(sock, server_side=True)
        return sock, addr


class FakeExchange:
    def __init__(self, tls: TestTLS, scenario: Scenario | None = None) -> None:
        self.scenario = scenario or Scenario()
        ctx = tls.server_context()
        # Port 0: each listener binds a free port itself (no window for another process to take it first).
        self._servers = [
            _Server("imap", 0, self.scenario, ctx, implicit=True),
            _Server("pop", 0, self.scenario, ctx, implicit=True),
            _Server("smtp", 0, self.scenario, ctx, implicit=False),
        ]
        self.imaps, self.pop3s, self.submission = (s.server_address[1] for s in self._servers)

    def urls(self, protocols: tuple[str, ...] = ("imap", "pop", "smtp")) -> list[str]:
        """`mailtoken test` options that point these protocols here."""
        url = {
            "imap": f"imaps://{HOST}:{self.imaps}",
            "pop": f"pop3s://{HOST}:{self.pop3s}",
            "smtp": f"smtp://{HOST}:{self.submission}",
        }
        return [arg for proto in protocols for arg in (f"--{proto}", url[proto])]

    def __enter__(self) -> FakeExchange:
        for server in self._servers:
            threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
