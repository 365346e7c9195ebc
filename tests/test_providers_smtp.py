"""The smtp and outbox providers, and the registry, against real servers on real sockets."""

from __future__ import annotations

import email
import email.policy
import socket
import threading
from contextlib import closing

import pytest

from backend.core.errors import UnusableInput
from backend.core.settings import Settings
from backend.mail.providers import get_provider, known_providers, register_provider
from backend.mail.providers.base import Outcome, OutgoingMessage, ProviderError
from backend.mail.providers.outbox import OutboxProvider
from backend.mail.providers.smtp import SmtpProvider
from tests.support.smtp import SmtpSink

SENDER = "mani <noreply@mani.test>"
JOB = "6f1c2d3e-4b5a-4c6d-8e7f-9a0b1c2d3e4f"


def messages(count: int, *, start: int = 0, domain: str = "example.com") -> list[OutgoingMessage]:
    return [
        OutgoingMessage(
            recipient_id=i,
            to_address=f"user{i}@{domain}",
            to_name=f"User {i}",
            subject=f"Welcome {i}",
            text=f"Hello user {i}\n",
            html=f"<p>Hello user {i}</p>",
            message_id=f"mani.{JOB}.{i}@mani.test",
        )
        for i in range(start, start + count)
    ]


def send(url: str, batch: list[OutgoingMessage], *, timeout: float = 5.0):
    provider = SmtpProvider.from_url(url, sender=SENDER, timeout=timeout)
    with provider:
        return provider.send(batch)


def free_port() -> int:
    with closing(socket.socket()) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(params=[True, False], ids=["pipelining", "one-command-at-a-time"])
def sink(request):
    """The test SMTP server, with and without PIPELINING (two code paths in the provider)."""
    with SmtpSink(pipelining=request.param) as server:
        yield server


# Success and connection reuse ----------------------------------------------------------------


def test_a_batch_is_sent_on_one_connection(sink):
    batch = messages(30)
    results = send(sink.url, batch)
    assert [r.outcome for r in results] == [Outcome.SENT] * 30
    assert [r.recipient_id for r in results] == list(range(30))
    received = sink.messages
    assert [m.rcpt_tos for m in received] == [(f"user{i}@example.com",) for i in range(30)]
    assert [m.message_id for m in received] == [m.message_id for m in batch]
    assert all(m.mail_from == "noreply@mani.test" for m in received)
    # The server's queue id from "250 ... queued as X" becomes the external id.
    assert [r.external_id for r in results] == [m.queue_id for m in received]
    assert sink.connections == 1
    assert received[0].parsed["Subject"] == "Welcome 0"


def test_each_batch_opens_its_own_connection(sink):
    send(sink.url, messages(3))
    send(sink.url, messages(3, start=3))
    assert sink.connections == 2
    assert {m.connection for m in sink.messages} == {1, 2}


def test_dot_stuffing_and_content_survive_the_trip(sink):
    text = ".leading dot\n..two dots\n.\nFrom here\nend with no newline"
    batch = messages(2)
    batch[0].text = text
    batch[1].html = None
    batch[1].text = ".only a dot line at the very start"
    assert [r.outcome for r in send(sink.url, batch)] == [Outcome.SENT] * 2
    first, second = sink.messages
    assert first.parsed.get_body(("plain",)).get_content() == text.replace("\n", "\r\n")
    assert second.parsed.get_content() == ".only a dot line at the very start"


def test_internationalized_recipient_uses_smtputf8(sink):
    batch = messages(1)
    batch[0].to_address = "zoë@example.com"
    results = send(sink.url, batch)
    assert results[0].outcome is Outcome.SENT
    assert sink.received_addresses() == ["zoë@example.com"]


def test_an_unusable_address_fails_alone(sink):
    batch = messages(3)
    batch[1].to_address = "not an address"
    results = send(sink.url, batch)
    assert [r.outcome for r in results] == [Outcome.SENT, Outcome.PERMANENT, Outcome.SENT]
    assert "not an address" in results[1].error


# Refusals ---------------------------------------------------------------------------------


def test_4xx_is_transient_with_the_servers_code_and_text(sink):
    sink.fail("user1@example.com", code=451, text="4.3.0 Mailbox busy, try later")
    results = send(sink.url, messages(3))
    assert [r.outcome for r in results] == [Outcome.SENT, Outcome.TRANSIENT, Outcome.SENT]
    assert results[1].error == "451 4.3.0 Mailbox busy, try later"
    assert sink.received_addresses() == ["user0@example.com", "user2@example.com"]
    assert sink.connections == 1


def test_5xx_is_permanent_keeping_the_reply_text(sink):
    sink.fail("user0@example.com", code=550, text="5.1.1 user unknown")
    results = send(sink.url, messages(2))
    assert [r.outcome for r in results] == [Outcome.PERMANENT, Outcome.SENT]
    assert results[0].error == "550 5.1.1 user unknown"


def test_a_refusal_at_end_of_data_is_classified_too(sink):
    sink.fail("user0@example.com", code=554, text="5.7.1 Message rejected as spam", at="data")
    sink.fail("user1@example.com", code=452, text="4.3.1 Insufficient storage", at="data")
    results = send(sink.url, messages(3))
    assert [r.outcome for r in results] == [Outcome.PERMANENT, Outcome.TRANSIENT, Outcome.SENT]
    assert results[0].error == "554 5.7.1 Message rejected as spam"
    assert results[1].error == "452 4.3.1 Insufficient storage"


def test_a_refusal_that_runs_out_is_accepted_next_time(sink):
    sink.fail("user0@example.com", code=450, times=1)
    assert send(sink.url, messages(1))[0].outcome is Outcome.TRANSIENT
    assert send(sink.url, messages(1))[0].outcome is Outcome.SENT


@pytest.mark.parametrize(("code", "outcome"), [(421, Outcome.UNAVAILABLE), (454, Outcome.THROTTLED)])
def test_throttling_stops_the_batch_without_failing_it(sink, code, outcome):
    # 421 closes the service for everyone (an outage: the route's circuit opens); 454 asks us to slow down.
    sink.throttle_all(code=code, times=1)
    results = send(sink.url, messages(4))
    assert [r.outcome for r in results] == [outcome] * 4
    assert all(r.error.startswith(str(code)) for r in results)
    assert sink.messages == []
    # Waited out, the same messages go through.
    assert [r.outcome for r in send(sink.url, messages(4))] == [Outcome.SENT] * 4


# Lost connections -----------------------------------------------------------------------------


def test_a_dropped_connection_is_reopened_and_the_rest_sent(sink):
    sink.drop_connection_after(3)
    results = send(sink.url, messages(10))
    assert [r.outcome for r in results] == [Outcome.SENT] * 10
    assert sorted(sink.received_addresses()) == sorted(f"user{i}@example.com" for i in range(10))
    assert sink.connections == 2


def test_server_down_makes_every_message_unavailable():
    results = send(f"smtp://127.0.0.1:{free_port()}", messages(5))
    assert [r.outcome for r in results] == [Outcome.UNAVAILABLE] * 5  # an outage: no recipient's fault
    assert all("Cannot connect to 127.0.0.1" in r.error for r in results)


def test_a_silent_server_times_out_into_unavailable():
    with closing(socket.socket()) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)  # connections complete in the kernel, but nobody ever greets
        results = send(f"smtp://127.0.0.1:{listener.getsockname()[1]}", messages(3), timeout=0.3)
    assert [r.outcome for r in results] == [Outcome.UNAVAILABLE] * 3
    assert "timed out" in results[0].error


class OneMessageServer:
    """A scripted SMTP server that accepts one message, then hangs up and stops listening."""

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.received: list[str] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        connection, _ = self.listener.accept()
        self.listener.close()
        reader = connection.makefile("rb")
        connection.sendall(b"220 scripted ESMTP\r\n")
        in_data = False
        for line in reader:
            if in_data:
                if line == b".\r\n":
                    connection.sendall(b"250 OK\r\n")
                    break
                continue
            command = line[:4].upper()
            if command == b"EHLO":
                connection.sendall(b"250 scripted\r\n")
            elif command == b"RCPT":
                self.received.append(line.decode().split(":", 1)[1].strip().strip("<>"))
                connection.sendall(b"250 OK\r\n")
            elif command == b"DATA":
                connection.sendall(b"354 go on\r\n")
                in_data = True
            else:
                connection.sendall(b"250 OK\r\n")
        reader.close()
        connection.close()


def test_a_busy_greeting_throttles_the_batch_without_reconnecting():
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    accepted, stop = [], threading.Event()

    def answer_busy():
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            accepted.append(connection)
            connection.sendall(b"421 4.7.0 Too many connections, try later\r\n")
            connection.close()

    thread = threading.Thread(target=answer_busy, daemon=True)
    thread.start()
    provider = SmtpProvider.from_url(f"smtp://127.0.0.1:{listener.getsockname()[1]}", sender=SENDER, timeout=5)
    with provider:
        results = provider.send(messages(3))
        later = provider.send(messages(2, start=3))  # the engine sends a batch in chunks
    stop.set()
    thread.join(timeout=5)
    listener.close()
    assert [r.outcome for r in results + later] == [Outcome.UNAVAILABLE] * 5
    assert results[0].error == "421 4.7.0 Too many connections, try later"
    assert len(accepted) == 1


def test_when_the_reconnect_fails_the_rest_is_unavailable():
    server = OneMessageServer()
    results = send(f"smtp://127.0.0.1:{server.port}", messages(4))
    server.thread.join(timeout=5)
    assert [r.outcome for r in results] == [Outcome.SENT] + [Outcome.UNAVAILABLE] * 3
    assert server.received == ["user0@example.com"]
    assert "Cannot connect" in results[1].error


# Authentication and TLS -----------------------------------------------------------------------


def test_login_with_percent_encoded_credentials(make_smtp_sink):
    sink = make_smtp_sink(auth=("mailer@school", "p@ss:w/rd %"))
    assert "%40" in sink.url  # the sink writes the user and password percent-encoded
    results = send(sink.url, messages(2))
    assert [r.outcome for r in results] == [Outcome.SENT] * 2


def test_a_wrong_password_is_transient_and_never_echoed(make_smtp_sink):
    sink = make_smtp_sink(auth=("mailer", "right-secret"))
    url = f"smtp://mailer:wrong-secret-123@127.0.0.1:{sink.port}"
    results = send(url, messages(2))
    assert [r.outcome for r in results] == [Outcome.TRANSIENT] * 2
    assert results[0].error.startswith("Login as mailer refused: 535")
    assert all("wrong-secret-123" not in r.error for r in results)
    assert "wrong-secret-123" not in repr(SmtpProvider.from_url(url, sender=SENDER))
    assert sink.messages == []


def test_starttls_with_login(make_smtp_sink):
    sink = make_smtp_sink(auth=("u", "p"), tls="starttls")
    assert [r.outcome for r in send(sink.url, messages(3))] == [Outcome.SENT] * 3
    assert sink.connections == 1


def test_implicit_tls(make_smtp_sink):
    sink = make_smtp_sink(tls="implicit")
    assert sink.url.startswith("smtps://")
    assert [r.outcome for r in send(sink.url, messages(2))] == [Outcome.SENT] * 2


def test_an_untrusted_certificate_is_unavailable(make_smtp_sink):
    sink = make_smtp_sink(tls="starttls")
    results = send(f"smtp://127.0.0.1:{sink.port}?starttls=true", messages(1))
    # It fails for every recipient alike: the route's circuit opens, no attempt is counted.
    assert results[0].outcome is Outcome.UNAVAILABLE
    assert "CERTIFICATE_VERIFY_FAILED" in results[0].error
    ok = send(f"smtp://127.0.0.1:{sink.port}?starttls=true&verify=false", messages(1))
    assert ok[0].outcome is Outcome.SENT


# URLs and the registry ------------------------------------------------------------------------


def test_url_forms():
    plain = SmtpProvider.from_url("smtp://relay.example", sender=SENDER)
    assert (plain.host, plain.port, plain.security, plain.username) == ("relay.example", 25, "plain", None)
    tls = SmtpProvider.from_url("smtp://relay.example:587?starttls=true", sender=SENDER)
    assert (tls.port, tls.security) == (587, "starttls")
    ssl_ = SmtpProvider.from_url("smtps://a%40b:p%2Fw%3A@relay.example", sender=SENDER)
    assert (ssl_.port, ssl_.security, ssl_.username, ssl_.password) == (465, "ssl", "a@b", "p/w:")
    assert ssl_.envelope_sender == "noreply@mani.test"


@pytest.mark.parametrize(
    "url",
    [
        "http://relay.example",
        "smtp://",
        "smtp://u:secret@relay.example:notaport",
        "smtp://relay.example?starttls=maybe",
        "smtp://relay.example?tls=true",
        "smtps://relay.example?starttls=true",
    ],
)
def test_unusable_urls_raise_provider_error_without_the_password(url):
    with pytest.raises(ProviderError) as raised:
        SmtpProvider.from_url(url, sender=SENDER)
    assert "secret" not in str(raised.value)


def test_get_provider_builds_from_settings(smtp_sink, tmp_path):
    settings = Settings(smtp_url=smtp_sink.url, sender=SENDER, outbox_dir=tmp_path / "out")
    smtp = get_provider("smtp", settings=settings)
    assert isinstance(smtp, SmtpProvider) and smtp.port == smtp_sink.port
    company = get_provider("SMTP", settings=settings, company_settings={"sender": "Acme <hr@acme.test>"})
    assert company.envelope_sender == "hr@acme.test"
    outbox = get_provider("outbox", settings=settings)
    assert isinstance(outbox, OutboxProvider) and outbox.directory == tmp_path / "out"
    with pytest.raises(ProviderError):
        get_provider("smtp", settings=Settings(smtp_url=None))


def test_unknown_provider_lists_the_known_ones():
    with pytest.raises(UnusableInput) as raised:
        get_provider("carrier-pigeon", settings=Settings())
    assert "outbox" in str(raised.value) and "smtp" in str(raised.value)


def test_register_provider_by_callable_and_by_path(tmp_path):
    register_provider("test-outbox", lambda *, settings, company_settings: OutboxProvider(tmp_path, SENDER))
    register_provider("test-lazy", "backend.mail.providers.outbox:from_settings")
    assert {"test-outbox", "test-lazy"} <= set(known_providers())
    assert isinstance(get_provider("test-outbox", settings=Settings()), OutboxProvider)
    assert isinstance(get_provider("test-lazy", settings=Settings(outbox_dir=tmp_path)), OutboxProvider)


# Outbox ---------------------------------------------------------------------------------------


def test_outbox_writes_parseable_eml_files_per_job(tmp_path):
    provider = OutboxProvider(tmp_path, SENDER)
    with provider:
        results = provider.send(messages(3))
    assert [r.outcome for r in results] == [Outcome.SENT] * 3
    files = sorted((tmp_path / JOB).glob("*.eml"))
    assert [f.name for f in files] == sorted(r.external_id for r in results)
    parsed = email.message_from_bytes(files[0].read_bytes(), policy=email.policy.default)
    assert parsed["Message-ID"] == f"<mani.{JOB}.0@mani.test>"
    assert parsed.get_body(("plain",)).get_content() == "Hello user 0\r\n"
    assert not list(tmp_path.rglob("*.tmp"))


def test_outbox_resend_overwrites_the_same_file(tmp_path):
    provider = OutboxProvider(tmp_path, SENDER)
    first = messages(1)
    provider.send(first)
    first[0].subject = "Second attempt"
    provider.send(first)
    files = list(tmp_path.rglob("*.eml"))
    assert len(files) == 1
    assert email.message_from_bytes(files[0].read_bytes(), policy=email.policy.default)["Subject"] == "Second attempt"


def test_outbox_without_a_job_id_files_by_date_and_refuses_bad_addresses(tmp_path):
    batch = messages(2)
    batch[0].message_id = "custom-id/with:odd=chars@x"
    batch[1].to_address = "broken"
    results = OutboxProvider(tmp_path, SENDER).send(batch)
    assert results[0].outcome is Outcome.SENT and results[1].outcome is Outcome.PERMANENT
    (written,) = tmp_path.rglob("*.eml")
    assert written.parent.name[:2] == "20" and "/" not in written.name and " " not in written.name
