"""The peers of bench/bridge.py: email-oauth2-proxy set up as after its first sign-in, and a small IMAP responder.

python bench/bridge_peers.py PORT CERT KEY     # the responder alone (bench/bridge.py starts it so)
"""

from __future__ import annotations

import asyncio
import configparser
import json
import os
import ssl
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import CLIENT_ID, EMAIL  # noqa: E402
from tests.servers.ports import free_port, wait_listening  # noqa: E402

SCOPE = "https://outlook.office365.com/IMAP.AccessAsUser.All offline_access"
EP_PASSWORD = "bench-emailproxy-password"


def start_emailproxy(stack, binary: str, upstream_port: int, name: str) -> tuple[subprocess.Popen, int]:
    """emailproxy --no-gui on a plain local port, its account pre-authorised with a refresh token from a device
    flow at the fake (as after its first interactive sign-in), encrypted as it stores it."""
    port = free_port()
    folder = stack.root / f"emailproxy-{name}"
    folder.mkdir()
    refresh = device_flow(stack.authority, stack.fake["ca_pem"])
    conf = folder / "emailproxy.config"
    python = str(Path(binary).parent / "python")
    script = (
        "import configparser, sys, emailproxy\n"
        "c = configparser.ConfigParser(); c.read(sys.argv[1]); user = sys.argv[2]\n"
        "k = emailproxy.Cryptographer(c, user, sys.argv[3])\n"
        "c.set(user, 'token_salt', k.salt); c.set(user, 'token_iterations', str(k.iterations))\n"
        "c.set(user, 'refresh_token', k.encrypt(sys.stdin.read()))\n"
        "c.write(open(sys.argv[1], 'w'))\n"
    )
    parser = configparser.ConfigParser()
    parser[f"IMAP-{port}"] = {
        "server_address": "127.0.0.1",
        "server_port": str(upstream_port),
        "local_address": "127.0.0.1",
    }
    parser[EMAIL] = {
        "permission_url": f"{stack.authority}/oauth2/v2.0/authorize",
        "token_url": f"{stack.authority}/oauth2/v2.0/token",
        "oauth2_scope": SCOPE,
        "redirect_uri": "http://localhost",
        "client_id": CLIENT_ID,
    }
    with open(conf, "w") as fh:
        parser.write(fh)
    subprocess.run([python, "-c", script, str(conf), EMAIL, EP_PASSWORD], input=refresh, text=True, check=True)
    env = {**os.environ, "SSL_CERT_FILE": str(stack.bundle), "HOME": str(folder)}
    log = open(folder / "stderr.log", "wb")  # noqa: SIM115 - lives as long as the process
    proc = subprocess.Popen(
        [binary, "--no-gui", "--config-file", str(conf)], env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log
    )
    stack.procs.append(proc)
    wait_listening("127.0.0.1", port, 30)
    return proc, port


def device_flow(authority: str, ca: str) -> str:
    ctx = ssl.create_default_context(cafile=ca)

    def post(path: str, form: dict) -> dict:
        data = urllib.parse.urlencode(form).encode()
        with urllib.request.urlopen(f"{authority}/oauth2/v2.0/{path}", data, context=ctx, timeout=30) as r:
            return json.loads(r.read())

    code = post("devicecode", {"client_id": CLIENT_ID, "scope": SCOPE})
    reply = post(
        "token",
        {
            "client_id": CLIENT_ID,
            "grant_type": "urn:ietf:params:oauth:grant-type:device_code",
            "device_code": code["device_code"],
        },
    )
    return reply["refresh_token"]


async def responder(port: int, cert: str, key: str) -> None:
    """Just enough IMAP for a session to sign in with any XOAUTH2 token and IDLE (for the scale row only)."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=XOAUTH2 IDLE] bench responder\r\n")
        try:
            while line := await reader.readline():
                tag, _, rest = line.rstrip(b"\r\n").partition(b" ")
                cmd = rest.split(b" ", 1)[0].upper()
                if cmd == b"CAPABILITY":
                    writer.write(b"* CAPABILITY IMAP4rev1 SASL-IR AUTH=XOAUTH2 IDLE\r\n" + tag + b" OK done\r\n")
                elif cmd == b"AUTHENTICATE":
                    if len(rest.split()) < 3:
                        writer.write(b"+ \r\n")
                        await reader.readline()
                    writer.write(tag + b" OK [CAPABILITY IMAP4rev1 IDLE] signed in\r\n")
                elif cmd in (b"SELECT", b"EXAMINE"):
                    writer.write(b"* 0 EXISTS\r\n" + tag + b" OK [READ-WRITE] done\r\n")
                elif cmd == b"IDLE":
                    writer.write(b"+ idling\r\n")
                    await writer.drain()
                    await reader.readline()
                    writer.write(tag + b" OK IDLE done\r\n")
                elif cmd == b"LOGOUT":
                    writer.write(b"* BYE\r\n" + tag + b" OK bye\r\n")
                    break
                else:
                    writer.write(tag + b" OK done\r\n")
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(session, "127.0.0.1", port, ssl=ctx, backlog=2048)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(responder(int(sys.argv[1]), sys.argv[2], sys.argv[3]))
