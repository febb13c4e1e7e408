"""`mailtoken sendmail` through Microsoft Graph (issue 14): the fake Graph checks tokens at the fake Entra (the
real msal signs in), and keeps every byte it was sent."""

from __future__ import annotations

import subprocess
import sys
import time

from tests import graphenv
from tests.conftest import EMAIL, MAILTOKEN, Env
from tests.fakes.entra import FakeEntra
from tests.fakes.graph import FakeGraph
from tests.graphenv import SHARED, add_graph_account, crlf, sign_in

graph, sender = graphenv.graph, graphenv.sender  # fixtures

MESSAGE = (
    "From: Alice Émile <alice@contoso.com>\n"
    "To: Bob <bob@fabrikam.com>\n"
    "Cc: carol@fabrikam.com\n"
    "Bcc: hidden@fabrikam.com\n"
    "Subject: =?utf-8?q?caf=C3=A9?=\n"
    "Content-Type: text/plain; charset=utf-8\n"
    "Content-Transfer-Encoding: 8bit\n"
    "\n"
    "Grüße, 8-bit body €\n"
    ".\n"
    "after a dot line\n"
).encode()


def sendmail(env: Env, *args: str, data: bytes = MESSAGE, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [MAILTOKEN, "sendmail", *args], input=data, capture_output=True, env=env.vars, timeout=timeout
    )


def test_login_asks_a_second_code_for_graph_and_the_grant_then_yields_both_tokens(
    env: Env, fake: FakeEntra, graph: FakeGraph
) -> None:
    add_graph_account(env, fake, graph)
    fake.auto_approve = EMAIL
    out = env.run("login", "work")
    assert out.returncode == 0, out.stderr
    assert "one more code" in out.stderr and "sending with Microsoft Graph works (Mail.Send)" in out.stderr
    codes = [r["form"]["scope"].split() for r in fake.requests if r["path"].endswith("/devicecode")]
    # One resource per device code: first the mail scopes, then Graph's Mail.Send alone.
    assert len(codes) == 2
    assert "https://outlook.office.com/SMTP.Send" in codes[0] and not any("graph" in s for s in codes[0])
    assert [s for s in codes[1] if "://" in s] == ["https://graph.microsoft.com/Mail.Send"]
    assert (env.record_dir / "work~graph.token").exists() and (env.record_dir / "work.token").exists()
    mail_token = env.run("token", "work").stdout.strip()
    assert fake.issued_access_tokens[mail_token]["scope"].startswith("https://outlook.office.com/")


def test_sendmail_honours_the_envelope_and_keeps_bcc_out_of_delivered_copies(
    sender: Env, fake: FakeEntra, graph: FakeGraph
) -> None:
    out = sendmail(sender, "work", "-i", "bob@fabrikam.com", "carol@fabrikam.com", "dave@fabrikam.com")
    assert (out.returncode, out.stderr) == (0, b"")
    [sent] = graph.sent
    assert sent.mailbox == EMAIL
    assert sorted(sent.recipients) == ["bob@fabrikam.com", "carol@fabrikam.com", "dave@fabrikam.com"]
    # The input's Bcc (not in the envelope) is gone; the envelope-only recipient rides in a new Bcc field;
    # every other byte is the input's, CRLF line ends as SMTP would send them.
    head, body = MESSAGE.split(b"\n\n", 1)
    lines = [x for x in head.split(b"\n") if not x.startswith(b"Bcc:")]
    assert sent.mime == crlf(b"\n".join(lines) + b"\nBcc: dave@fabrikam.com\n\n" + body)
    assert b"Bcc" not in sent.delivered and b"dave" not in sent.delivered
    assert "Grüße".encode() in sent.delivered and b"after a dot line" in sent.delivered


def test_t_takes_recipients_from_the_headers_and_a_dot_line_never_ends_the_message(
    sender: Env, graph: FakeGraph
) -> None:
    out = sendmail(sender, "work", "-t")
    assert out.returncode == 0, out.stderr
    [sent] = graph.sent
    assert sorted(sent.recipients) == ["bob@fabrikam.com", "carol@fabrikam.com", "hidden@fabrikam.com"]
    assert b"\r\n.\r\nafter a dot line" in sent.mime and b"Bcc: hidden@fabrikam.com\r\n" in sent.mime
    assert b"hidden" not in sent.delivered


def test_a_cached_send_imports_no_msal_requests_or_keyring_and_asks_no_identity_platform(
    sender: Env, fake: FakeEntra, graph: FakeGraph
) -> None:
    before = dict(fake.counts)
    out = subprocess.run(
        [sys.executable, "-X", "importtime", MAILTOKEN, "sendmail", "work", "-t", "-i"],
        input=MESSAGE,
        capture_output=True,
        env=sender.vars,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    imported = {line.split("|")[-1].strip().split(".")[0] for line in out.stderr.decode().splitlines()}
    assert not imported & {"msal", "requests", "keyring", "urllib3"}, imported & {"msal", "requests", "keyring"}
    assert fake.counts == before
    assert len(graph.sent) == 1


def test_a_header_recipient_missing_from_the_envelope_is_refused_not_delivered(sender: Env, graph: FakeGraph) -> None:
    out = sendmail(sender, "work", "-i", "bob@fabrikam.com")
    assert out.returncode == 65
    assert b"carol@fabrikam.com" in out.stderr and graph.sent == []


def test_flags_that_change_delivery_exit_64_naming_the_flag_and_harmless_ones_pass(
    sender: Env, graph: FakeGraph
) -> None:
    for flag in ("-bs", "-bv", "-q30m", "-bp"):
        out = sendmail(sender, "work", flag, "bob@fabrikam.com")
        assert out.returncode == 64, flag
        assert flag.encode() in out.stderr
    out = sendmail(sender, "work", "-oem", "-odi", "-B8BITMIME", "-N", "never", "-FCronDaemon", "-oi", "-t", "--")
    assert out.returncode == 0, out.stderr
    assert sendmail(sender, "work", "-ti").returncode == 0  # a getopt cluster: -t -i
    assert len(graph.sent) == 2
    assert sendmail(sender, "work", "-i").returncode == 64  # no recipients at all
    assert sendmail(sender, "work", "-i", "root").returncode == 67  # a local user is no Graph mailbox


def test_429_with_retry_after_is_waited_out_and_5xx_retried(sender: Env, graph: FakeGraph) -> None:
    graph.inject("status", status=429, code="ApplicationThrottled", retry_after=2)
    graph.inject("status", status=503)
    started = time.monotonic()
    out = sendmail(sender, "work", "-t", "-i")
    assert out.returncode == 0, out.stderr
    posts = [r for r in graph.requests if r["path"].endswith("/sendMail")]
    assert len(posts) == 3 and posts[1]["time"] - posts[0]["time"] >= 2
    assert len(graph.sent) == 1 and time.monotonic() - started < 15


def test_a_retry_after_beyond_the_deadline_exits_75_at_once(sender: Env, graph: FakeGraph) -> None:
    graph.inject("status", status=429, retry_after=120)
    started = time.monotonic()
    out = sendmail(sender, "work", "-t", "-i", "--timeout", "10")
    assert out.returncode == 75 and b"429" in out.stderr
    assert time.monotonic() - started < 8 and graph.sent == []


def test_persistent_5xx_exits_75_within_the_deadline(sender: Env, graph: FakeGraph) -> None:
    graph.inject("status", count=50, status=503)
    started = time.monotonic()
    out = sendmail(sender, "work", "-t", "-i", "--timeout", "4")
    assert out.returncode == 75, out.stderr
    assert time.monotonic() - started < 8 and graph.sent == []


def test_a_token_graph_finds_expired_is_refreshed_once_and_the_send_retried_once(
    sender: Env, fake: FakeEntra, graph: FakeGraph
) -> None:
    token = (sender.record_dir / "work~graph.token").read_text().split("token ", 1)[1].split("\n", 1)[0]
    with fake._lock:
        fake._access_tokens[token]["exp"] = time.time() - 1  # our record still says fresh; Graph disagrees
    out = sendmail(sender, "work", "-t", "-i")
    assert out.returncode == 0, out.stderr
    assert fake.counts["refresh_token"] == 1
    assert [r["path"].rsplit("/", 1)[-1] for r in graph.requests] == ["sendMail", "sendMail"]


def test_a_hang_ends_at_the_deadline_with_75(sender: Env, graph: FakeGraph) -> None:
    graph.inject("hang", seconds=30)
    started = time.monotonic()
    out = sendmail(sender, "work", "-t", "-i", "--timeout", "3")
    assert out.returncode == 75 and b"3 s (--timeout)" in out.stderr
    assert time.monotonic() - started < 6


def test_413_is_a_data_error(sender: Env, graph: FakeGraph) -> None:
    graph.inject("status", status=413, code="ErrorMessageSizeExceeded")
    out = sendmail(sender, "work", "-t", "-i")
    assert out.returncode == 65 and b"too large" in out.stderr


def test_sending_as_a_mailbox_not_granted_exits_67(sender: Env, graph: FakeGraph) -> None:
    data = MESSAGE.replace(b"From: Alice \xc3\x89mile <alice@contoso.com>", b"From: ceo@contoso.com")
    out = sendmail(sender, "work", "-t", "-i", data=data)
    assert out.returncode == 67 and b"ErrorSendAsDenied" in out.stderr and graph.sent == []


def test_mail_send_not_consented_exits_77_with_the_fix(sender: Env, fake: FakeEntra, graph: FakeGraph) -> None:
    with fake._lock:
        fake._consents.clear()
        fake._consents[(EMAIL, next(iter(fake.issued_access_tokens.values()))["client_id"])] = {
            f"https://outlook.office.com/{s}" for s in ("IMAP.AccessAsUser.All", "POP.AccessAsUser.All", "SMTP.Send")
        }
    (sender.record_dir / "work~graph.token").unlink()
    out = sendmail(sender, "work", "-t", "-i")
    assert out.returncode == 77
    assert b"Mail.Send is not consented" in out.stderr and b"mailtoken login work" in out.stderr
    assert sender.run("token", "work").returncode == 0  # the mail token is untouched


def test_an_smtp_account_is_told_how_to_switch(env: Env, fake: FakeEntra) -> None:
    env.add_account(authority=fake.authority())
    out = sendmail(env, "work", "-t")
    assert out.returncode == 78 and b'send = "graph"' in out.stderr


def test_a_shared_from_goes_to_its_mailbox_with_mail_send_shared(env: Env, fake: FakeEntra, graph: FakeGraph) -> None:
    add_graph_account(env, fake, graph, extra=f'shared = ["{SHARED}"]\n')
    stderr = sign_in(env, fake)
    assert "Mail.Send, Mail.Send.Shared" in stderr
    graph.send_as.add((EMAIL, SHARED))
    data = MESSAGE.replace(b"From: Alice \xc3\x89mile <alice@contoso.com>", f"From: Team <{SHARED}>".encode())
    out = sendmail(env, "work", "-t", "-i", data=data)
    assert out.returncode == 0, out.stderr
    assert graph.sent[0].mailbox == SHARED
    assert graph.requests[-1]["path"] == f"/v1.0/users/{SHARED}/sendMail"


def test_an_app_only_account_sends_to_users_from_with_the_graph_default_scope(
    env: Env, fake: FakeEntra, graph: FakeGraph
) -> None:
    app_id = "22222222-3333-4444-5555-666666666666"
    fake.client_secrets[app_id] = "s3cret-value"
    graph.app_permissions.add(app_id)
    env.write_config(
        f'[accounts.robot]\nemail = "{EMAIL}"\nclient_id = "{app_id}"\nflow = "client_credentials"\n'
        f'tenant = "contoso.onmicrosoft.com"\nauthority = "{fake.authority("contoso.onmicrosoft.com")}"\n'
        f'client_secret_cmd = ["echo", "s3cret-value"]\nsend = "graph"\ngraph_url = "{graph.url}"\n'
    )
    login = env.run("login", "robot")
    assert login.returncode == 0, login.stderr
    out = sendmail(env, "robot", "-t", "-i")
    assert out.returncode == 0, out.stderr
    assert graph.requests[-1]["path"] == f"/v1.0/users/{EMAIL}/sendMail"
    scopes = [r["form"].get("scope") for r in fake.requests if r["form"].get("grant_type") == "client_credentials"]
    assert "https://graph.microsoft.com/.default" in scopes


def _with_attachment(size: int) -> bytes:
    from email.message import EmailMessage

    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = EMAIL, "bob@fabrikam.com", "the build"
    msg.set_content("Attached: the build.\n")
    payload = bytes(range(256)) * (size // 256)
    msg.add_attachment(payload, maintype="application", subtype="octet-stream", filename="build.bin")
    return msg.as_bytes()


def test_a_5_mb_message_goes_through_a_draft_and_an_upload_session(env: Env, fake: FakeEntra, graph: FakeGraph) -> None:
    add_graph_account(env, fake, graph, extra="graph_large = true\n")
    assert "Mail.Send, Mail.ReadWrite" in sign_in(env, fake)
    data = _with_attachment(4 * 1024 * 1024)
    assert len(data) > 5 * 1024 * 1024
    out = sendmail(env, "work", "-t", "-i", data=data)
    assert out.returncode == 0, out.stderr
    [sent] = graph.sent
    assert sent.recipients == ["bob@fabrikam.com"] and b"Attached: the build." in sent.mime
    assert [a["name"] for a in sent.attachments] == ["build.bin"]
    assert sent.attachments[0]["data"] == bytes(range(256)) * (4 * 1024 * 1024 // 256)
    puts = [r for r in graph.requests if r["method"] == "PUT"]
    assert len(puts) == 1 and max(r["size"] for r in graph.requests) <= 4 * 1024 * 1024 + 1024


def test_a_large_message_without_graph_large_exits_65_naming_the_setting(sender: Env, graph: FakeGraph) -> None:
    out = sendmail(sender, "work", "-t", "-i", data=_with_attachment(3 * 1024 * 1024))
    assert out.returncode == 65 and b"graph_large = true" in out.stderr and graph.requests == []


def test_a_200_mb_message_is_refused_before_any_upload(sender: Env, graph: FakeGraph) -> None:
    # A pipe, as a caller would write it: the test holds none of the 200 MB.
    script = (
        f"(printf 'To: bob@fabrikam.com\\nSubject: big\\n\\n'; head -c 200M /dev/zero) | {MAILTOKEN} sendmail work -t"
    )
    out = subprocess.run(["sh", "-c", script], capture_output=True, env=sender.vars, timeout=120)
    assert out.returncode == 65 and b"150 MB" in out.stderr
    assert graph.requests == []


def test_queue_keeps_a_message_graph_could_not_take_and_flush_sends_it(sender: Env, graph: FakeGraph) -> None:
    queue = sender.root / "queue"
    graph.inject("status", count=20, status=503)
    out = sendmail(sender, "work", "-t", "-i", "--timeout", "2", "--queue", str(queue))
    assert out.returncode == 0 and b"kept in" in out.stderr
    [kept] = list(queue.glob("*.mail"))
    assert kept.stat().st_mode & 0o777 == 0o600 and graph.sent == []
    with graph._lock:
        graph._faults.clear()
    flushed = sendmail(sender, "--flush", "--queue", str(queue), data=b"")
    assert flushed.returncode == 0, flushed.stderr
    assert list(queue.glob("*.mail")) == [] and len(graph.sent) == 1
    assert sorted(graph.sent[0].recipients) == ["bob@fabrikam.com", "carol@fabrikam.com", "hidden@fabrikam.com"]


def test_an_untrusted_graph_certificate_fails_at_once_with_75(sender: Env, graph: FakeGraph) -> None:
    sender.vars["REQUESTS_CA_BUNDLE"] = sender.vars["REQUESTS_CA_BUNDLE"].replace("cas.pem", "fake/ca.pem")
    started = time.monotonic()
    out = sendmail(sender, "work", "-t")
    assert out.returncode == 75 and b"TLS with 127.0.0.1 failed" in out.stderr
    assert time.monotonic() - started < 5 and graph.requests == []


def test_logout_removes_the_graph_record_and_settings(sender: Env, graph: FakeGraph) -> None:
    assert sendmail(sender, "work", "-t").returncode == 0
    assert sorted(p.name for p in sender.record_dir.glob("work~graph.*")) == ["work~graph.send", "work~graph.token"]
    out = sender.run("logout", "work")
    assert out.returncode == 0, out.stderr
    assert list(sender.record_dir.glob("work~*")) == []


def _put_graph_token(env: Env, token: str) -> None:
    rec = env.record_dir / "work~graph.token"
    text = rec.read_text()
    rec.write_text(text.replace(text.split("token ", 1)[1].split("\n", 1)[0], token))


def test_a_token_for_another_audience_is_refused_by_graph_and_replaced_once(
    sender: Env, fake: FakeEntra, graph: FakeGraph
) -> None:
    _put_graph_token(sender, sender.run("token", "work").stdout.strip())  # the mail token: outlook.office.com
    out = sendmail(sender, "work", "-t")
    assert out.returncode == 0, out.stderr
    assert fake.counts["refresh_token"] == 1 and len(graph.sent) == 1


def test_a_graph_token_without_mail_send_exits_77_with_the_fix(sender: Env, fake: FakeEntra, graph: FakeGraph) -> None:
    token = "graph-user-read-only-token-" + "x" * 40
    with fake._lock:
        fake._access_tokens[token] = {
            "email": EMAIL,
            "exp": time.time() + 3600,
            "scope": "https://graph.microsoft.com/User.Read",
            "client_id": "c",
        }
    _put_graph_token(sender, token)
    out = sendmail(sender, "work", "-t")
    assert out.returncode == 77 and b"ErrorAccessDenied" in out.stderr and b"mailtoken login work" in out.stderr
    assert graph.sent == []


def test_a_second_401_after_the_refresh_exits_77(sender: Env, fake: FakeEntra, graph: FakeGraph) -> None:
    graph.inject("status", count=2, status=401, code="InvalidAuthenticationToken")
    out = sendmail(sender, "work", "-t")
    assert out.returncode == 77 and b"freshly refreshed token" in out.stderr
    assert fake.counts["refresh_token"] == 1 and graph.sent == []


def test_a_failed_large_send_deletes_its_draft(env: Env, fake: FakeEntra, graph: FakeGraph) -> None:
    add_graph_account(env, fake, graph, extra="graph_large = true\n")
    sign_in(env, fake)
    # Draft, upload session, then the send is refused: the draft must not stay behind half-made.
    graph.inject("status", status=400, code="ErrorInvalidRecipients", skip=2)
    out = sendmail(env, "work", "-t", data=_with_attachment(4 * 1024 * 1024))
    assert out.returncode == 67, out.stderr
    assert graph.sent == [] and graph.drafts == 0
    assert [r["method"] for r in graph.requests][-1] == "DELETE"


def test_verbose_sendmail_says_what_it_does_but_never_the_token_and_help_works(sender: Env, graph: FakeGraph) -> None:
    token = (sender.record_dir / "work~graph.token").read_text().split("token ", 1)[1].split("\n", 1)[0]
    out = subprocess.run(
        [MAILTOKEN, "-v", "sendmail", "work", "-t", "-oem"], input=MESSAGE, capture_output=True, env=sender.vars
    )
    assert out.returncode == 0, out.stderr
    assert b"recipients via /me" in out.stderr and b"-oem" in out.stderr
    assert token.encode() not in out.stderr + out.stdout and len(graph.sent) == 1
    helped = subprocess.run([MAILTOKEN, "sendmail", "--help"], capture_output=True, env=sender.vars)
    assert helped.returncode == 0 and b"--queue" in helped.stdout and b"--flush" in helped.stdout
