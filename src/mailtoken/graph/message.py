"""sendmail(8)'s command line, and the message as Graph must get it. Pure: no I/O, no network.

Graph takes a message's recipients from its To, Cc and Bcc headers only (it has no envelope). So that the
envelope is honoured exactly, as an MTA would:
- every Bcc field of the input is removed, and the recipients that are in the envelope but not in To/Cc go
  into one new Bcc field, which Exchange keeps out of every delivered copy (as SMTP relays to Graph do);
- a To/Cc address that is not in the envelope would still get the message from Graph, so such a message is
  refused (exit 65) rather than delivered to someone the caller did not name.
Bare LF line ends become CRLF (what an SMTP client sends); every other byte, 8-bit included, is kept as is.
As with msmtp, the message is everything up to the end of stdin: a line holding a single dot does not end it,
so -i / -oi change nothing (mutt, given a $sendmail of its own, passes neither).
"""

from __future__ import annotations

import re

from ..errors import DataError, NoSuchUser, UsageError

BadMessage, RefusedMailbox = DataError, NoSuchUser


# sendmail(8) flags that take a value (attached, "-fADDR", or the next argument, "-f ADDR").
_WITH_VALUE = set("BCFfhLNOopqRrVX")
# Flags that change what sendmail does, which a Graph submission cannot do: refused, naming the flag.
_REFUSED = {
    "-bs": "SMTP on stdin",
    "-bd": "running as a daemon",
    "-bp": "listing the queue",
    "-bi": "rebuilding aliases",
    "-bt": "address test mode",
    "-bv": "verifying addresses only",
    "-bD": "running as a daemon",
    "-bh": "host status",
    "-bH": "purging host status",
    "-bP": "printing queue counts",
    "-I": "rebuilding aliases",
    "-q": "processing the queue",
    "-C": "another sendmail configuration",
    "-Ac": "submit.cf",
}


class Options:
    """What the command line asked for. A plain class: dataclasses would cost a cached send an import."""

    def __init__(self, **values: object) -> None:
        self.account: str | None = None
        self.recipients: list[str] = []
        self.from_headers = False  # -t
        self.sender: str | None = None  # -f / -r
        self.full_name: str | None = None  # -F
        self.timeout = 30.0
        self.queue: str | None = None
        self.flush = False
        self.verbose = False
        self.ignored: list[str] = []
        for key, value in values.items():
            setattr(self, key, value)


def getaddresses(values: list[str]) -> list[tuple[str, str]]:
    """email.utils.getaddresses without email.utils' imports (socket, datetime, random: a cached send's time)."""
    from email._parseaddr import AddressList  # type: ignore[import-not-found]

    pairs: list[tuple[str, str]] = []
    for value in values:
        pairs += AddressList(value).addresslist
    return pairs


def parse_args(argv: list[str]) -> Options:
    """sendmail's flags as git send-email, mutt, s-nail, PHP and cron pass them, plus mailtoken's own."""
    opts = Options()
    args = list(argv)
    positional: list[str] = []
    while args:
        arg = args.pop(0)
        if arg == "--":
            positional += args
            break
        if arg in ("-v", "--verbose"):
            opts.verbose = True
        elif arg == "--flush":
            opts.flush = True
        elif arg.startswith(("--timeout", "--queue")):
            name, eq, value = arg.partition("=")
            if name not in ("--timeout", "--queue"):
                raise UsageError(f"sendmail: unknown option {arg}")
            if not eq:
                if not args:
                    raise UsageError(f"sendmail: {name} needs a value")
                value = args.pop(0)
            if name == "--queue":
                opts.queue = value
            else:
                try:
                    opts.timeout = float(value)
                except ValueError:
                    raise UsageError(f"sendmail: --timeout: '{value}' is not a number of seconds") from None
                if not opts.timeout > 0:
                    raise UsageError("sendmail: --timeout must be more than 0 seconds")
        elif arg.startswith("--"):
            raise UsageError(f"sendmail: unknown option {arg}")
        elif arg.startswith("-") and len(arg) > 1:
            _flag(arg, args, opts)
        else:
            positional.append(arg)
    if not opts.flush:
        if not positional:
            raise UsageError("sendmail: give the account: mailtoken sendmail ACCOUNT [RECIPIENT...]")
        opts.account = positional.pop(0)
    opts.recipients = positional
    return opts


def _flag(arg: str, args: list[str], opts: Options) -> None:
    for refused, what in _REFUSED.items():
        if arg == refused or (refused in ("-q", "-C") and arg.startswith(refused)):
            raise UsageError(f"sendmail: {arg} ({what}) is not something a Graph submission can do")
    if re.fullmatch(r"-[ti]+", arg):  # getopt-style clusters, like -ti
        opts.from_headers = opts.from_headers or "t" in arg
        return
    letter = arg[1]
    if letter == "b" and arg != "-bm":  # -bm, deliver mail, is what we do; other modes are not
        raise UsageError(f"sendmail: {arg} is not something a Graph submission can do (only -bm is)")
    value = None
    if letter in _WITH_VALUE:
        value = arg[2:]
        if not value:
            if not args:
                raise UsageError(f"sendmail: {arg} needs a value")
            value = args.pop(0)
    if letter in ("f", "r"):
        opts.sender = value
    elif letter == "F":
        opts.full_name = value
    else:  # harmless for a submission: -i, -oi, -oem, -odi, -B8BITMIME, -N, -R, -V, -m, -n, -U, -h, -L ...
        opts.ignored.append(arg if value is None or arg.endswith(value) else f"{arg} {value}")


class Prepared:
    def __init__(self, mime: bytes, recipients: list[str], from_address: str) -> None:
        self.mime = mime
        self.recipients = recipients  # the envelope: exactly who gets the message
        self.from_address = from_address


def prepare(data: bytes, opts: Options, account_email: str) -> Prepared:
    """The MIME text to submit and the envelope it honours (see the module's text)."""
    data = re.sub(rb"(?<!\r)\n", b"\r\n", data)
    if data.startswith(b"From "):  # an mbox separator line, not a header field (sendmail drops it too)
        data = data.split(b"\r\n", 1)[1] if b"\r\n" in data else b""
    end = data.find(b"\r\n\r\n")
    head, body = (
        (data[: end + 2], data[end + 2 :])
        if end >= 0
        else (data + (b"" if data.endswith(b"\r\n") else b"\r\n"), b"\r\n")
    )
    if end < 0 and not head.strip():
        raise BadMessage("the message on stdin is empty")
    fields = _fields(head)
    if not fields or not all(re.match(rb"^[\x21-\x39\x3b-\x7e]+:", f) for f in fields):
        raise BadMessage("the message on stdin does not start with RFC 5322 header fields (like 'To: ...')")

    def addresses(name: bytes) -> list[str]:
        values = [_value(f) for f in fields if _name(f) == name]
        return [a for _, a in getaddresses(values) if a]

    to_cc = addresses(b"to") + addresses(b"cc")
    envelope: list[str] = []
    for value in opts.recipients:  # "a, b" as one argument is two recipients
        envelope += [a for _, a in getaddresses([value]) if a] or [value]
    if opts.from_headers:
        envelope += to_cc + addresses(b"bcc")
    envelope = _unique(envelope)
    if not envelope:
        raise UsageError("sendmail: no recipients: give them as arguments, or use -t to take them from the headers")
    for address in envelope:
        local, at, domain = address.rpartition("@")
        if not at or not local or "." not in domain:
            raise RefusedMailbox(f"'{address}' is not an email address, and Graph delivers to mailboxes only")
    wanted = {a.lower() for a in envelope}
    extra = [a for a in _unique(to_cc) if a.lower() not in wanted]
    if extra:
        raise BadMessage(
            f"the message's To/Cc names {', '.join(extra)}, not among the recipients given; Graph delivers to "
            "every To/Cc address, so it cannot send this as asked (name them as recipients, or use -t)"
        )
    shown = {a.lower() for a in to_cc}
    hidden = [a for a in envelope if a.lower() not in shown]
    kept = [f for f in fields if _name(f) != b"bcc"]
    if hidden:
        kept.append(b"Bcc: " + ", ".join(hidden).encode("utf-8") + b"\r\n")
    from_values = [a for _, a in getaddresses([_value(f) for f in fields if _name(f) == b"from"]) if a]
    if not from_values:
        address = opts.sender or account_email
        kept.insert(0, b"From: " + _mailbox(opts.full_name, address) + b"\r\n")
        from_values = [address]
    return Prepared(mime=b"".join(kept) + body, recipients=envelope, from_address=from_values[0])


def _fields(head: bytes) -> list[bytes]:
    """The header fields, each with its folded continuation lines and CRLFs, in order."""
    fields: list[bytes] = []
    for line in head.split(b"\r\n")[:-1]:
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += line + b"\r\n"
        else:
            fields.append(line + b"\r\n")
    return fields


def _name(f: bytes) -> bytes:
    return f.split(b":", 1)[0].strip().lower()


def _value(f: bytes) -> str:
    raw = f.split(b":", 1)[1].replace(b"\r\n", b"")
    return raw.decode("utf-8", "replace")


def _unique(items: list[str]) -> list[str]:
    seen: set[str] = set()
    return [a for a in items if not (a.lower() in seen or seen.add(a.lower()))]  # type: ignore[func-returns-value]


def _mailbox(name: str | None, address: str) -> bytes:
    if not name:
        return address.encode("utf-8")
    if name.isascii():
        quoted = name.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{quoted}" <{address}>'.encode()
    import email.header

    return f"{email.header.Header(name, 'utf-8').encode()} <{address}>".encode()
