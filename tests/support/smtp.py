"""A real SMTP server for tests: aiosmtpd on 127.0.0.1, a free port, in its own thread.

List this module in conftest (`pytest_plugins = ["tests.support.smtp"]`) for the fixtures:

- `smtp_sink`: a started `SmtpSink`, stopped after the test.
- `make_smtp_sink(**options)`: more sinks, e.g. `make_smtp_sink(auth=("u", "p"), tls="starttls")`.

    def test_sends(smtp_sink, monkeypatch):
        monkeypatch.setenv("MANI_SMTP_URL", smtp_sink.url)
        smtp_sink.fail("bad@example.com", code=550)           # always refused at RCPT
        smtp_sink.fail("slow@example.com", code=451, times=1)  # refused once, then accepted
        ...
        assert smtp_sink.wait_for(10)
        assert sorted(smtp_sink.received_addresses()) == [...]

Every accepted message is answered "250 2.0.0 OK: queued as <QUEUE ID>" and recorded as a
`ReceivedMessage`. Recording is thread-safe; `messages` is a snapshot list.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import ipaddress
import itertools
import tempfile
import threading
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import quote

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


@dataclass(frozen=True)
class ReceivedMessage:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes  # as received, CRLF line endings, dot-unstuffed
    message_id: str  # the Message-ID header without angle brackets ("" when missing)
    parsed: EmailMessage  # `data` parsed with email.policy.default
    queue_id: str  # what the 250 reply named
    connection: int  # which connection (1, 2, ...) carried it


@dataclass
class _Rule:
    code: int
    text: str
    remaining: int | None  # None: for ever


def _default_text(code: int) -> str:
    if code in (421, 454):
        return "4.7.0 Too many messages, slow down"
    if 400 <= code < 500:
        return "4.2.0 Mailbox temporarily unavailable"
    return "5.1.1 User unknown"


class _CountingSMTP(SMTP):
    """aiosmtpd's SMTP protocol, numbering each client connection for the sink."""

    def __init__(self, *args, sink: "SmtpSink", **kwargs):
        super().__init__(*args, **kwargs)
        self.sink = sink
        self.connection_number = 0

    def connection_made(self, transport) -> None:
        fresh = self.transport is None  # STARTTLS calls this again for the same connection
        super().connection_made(transport)
        if fresh:
            self.connection_number = self.sink._count_connection()


class _Controller(Controller):
    def __init__(self, sink: "SmtpSink", **kwargs):
        super().__init__(sink, hostname=sink.host, port=sink.port, **kwargs)  # a restart keeps its port
        self.sink = sink

    def factory(self):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "AUTH without TLS": deliberate in a test server
            return _CountingSMTP(self.handler, sink=self.sink, **self.SMTP_kwargs)

    def _trigger_server(self):
        # Port 0 means "any free port": learn which one before aiosmtpd connects to itself.
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


class SmtpSink:
    """A recording SMTP server with switchable failures. Use `with SmtpSink() as sink:`."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        auth: tuple[str, str] | None = None,
        tls: str | None = None,
        pipelining: bool = True,
    ):
        """`auth`: require AUTH PLAIN/LOGIN with this user and password (TLS not needed).
        `tls`: None, "starttls" (offered, not required) or "implicit" (smtps); `cafile` then
        names the self-signed certificate a client should trust.
        `pipelining`: advertise PIPELINING (RFC 2920) in the EHLO reply, as Postfix and Exim do."""
        if tls not in (None, "starttls", "implicit"):
            raise ValueError("tls must be None, 'starttls' or 'implicit'")
        self.host = host
        self.port = 0
        self.auth = auth
        self.tls = tls
        self.pipelining = pipelining
        self.cafile: str | None = None
        self._lock = threading.Condition()
        self._messages: list[ReceivedMessage] = []
        self._rcpt_rules: dict[str, _Rule] = {}
        self._data_rules: dict[str, _Rule] = {}
        self._throttle: _Rule | None = None
        self._drop_after: int | None = None
        self._connections = 0
        self._queue_ids = itertools.count(1)
        self._controller: _Controller | None = None
        self._tempdir: tempfile.TemporaryDirectory | None = None

    # Lifecycle ------------------------------------------------------------------------------

    def start(self) -> "SmtpSink":
        options: dict = {"enable_SMTPUTF8": True, "ident": "mani test sink"}
        if self.auth:
            options.update(authenticator=self._authenticate, auth_required=True, auth_require_tls=False)
        ssl_context = None
        if self.tls:
            self._tempdir = tempfile.TemporaryDirectory(prefix="mani-smtp-tls-")
            ssl_context = _self_signed_context(Path(self._tempdir.name), self.host)
            self.cafile = str(Path(self._tempdir.name) / "cert.pem")
            if self.tls == "starttls":
                options.update(tls_context=ssl_context, require_starttls=False)
                ssl_context = None
        self._controller = _Controller(self, ssl_context=ssl_context, **options)
        self._controller.start()
        self.port = self._controller.port
        with self._lock:
            self._connections = 0  # forget aiosmtpd's own start-up probe
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None
        if self._tempdir is not None:
            self._tempdir.cleanup()
            self._tempdir = None

    def __enter__(self) -> "SmtpSink":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """smtp://[user:pass@]127.0.0.1:PORT, with ?starttls=true or smtps:// to match `tls`."""
        userinfo = f"{quote(self.auth[0], safe='')}:{quote(self.auth[1], safe='')}@" if self.auth else ""
        scheme = "smtps" if self.tls == "implicit" else "smtp"
        query = "?starttls=true" if self.tls == "starttls" else ""
        if self.tls:
            query += ("&" if query else "?") + f"cafile={self.cafile}"
        return f"{scheme}://{userinfo}{self.host}:{self.port}{query}"

    # What was received ------------------------------------------------------------------------

    @property
    def messages(self) -> list[ReceivedMessage]:
        with self._lock:
            return list(self._messages)

    @property
    def connections(self) -> int:
        """Client connections accepted since start (or the last `clear`)."""
        with self._lock:
            return self._connections

    def received_addresses(self) -> list[str]:
        """Every accepted envelope recipient, in arrival order, repeats included."""
        with self._lock:
            return [address for message in self._messages for address in message.rcpt_tos]

    def wait_for(self, count: int, *, timeout: float = 10.0) -> bool:
        """Block until at least `count` messages arrived; False on timeout."""
        with self._lock:
            return self._lock.wait_for(lambda: len(self._messages) >= count, timeout=timeout)

    # Misbehaviour on demand -------------------------------------------------------------------

    def fail(self, address: str, *, code: int, text: str | None = None, times: int | None = None, at: str = "rcpt") -> None:
        """Answer `address` with `code` (and `text`) at RCPT (or, with at="data", at the end of
        DATA), `times` times and then accept it again; None means always."""
        if at not in ("rcpt", "data"):
            raise ValueError("at must be 'rcpt' or 'data'")
        rules = self._rcpt_rules if at == "rcpt" else self._data_rules
        with self._lock:
            rules[address.lower()] = _Rule(code, text or _default_text(code), times)

    def throttle_all(self, *, code: int = 421, times: int, text: str | None = None) -> None:
        """Refuse the next `times` recipients, whoever they are, with `code` at RCPT.
        A 421 also closes the connection, as a real server does."""
        with self._lock:
            self._throttle = _Rule(code, text or _default_text(code), times)

    def drop_connection_after(self, n: int) -> None:
        """Once: after accepting `n` more messages, close that connection with no goodbye."""
        with self._lock:
            self._drop_after = len(self._messages) + n

    def clear(self) -> None:
        """Forget the messages, the connection count and every failure rule."""
        with self._lock:
            self._messages.clear()
            self._rcpt_rules.clear()
            self._data_rules.clear()
            self._throttle = None
            self._drop_after = None
            self._connections = 0

    # aiosmtpd hooks (run on the server's thread) ---------------------------------------------

    def _count_connection(self) -> int:
        with self._lock:
            self._connections += 1
            return self._connections

    def _authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and (
            auth_data.login.decode("utf-8", "replace"),
            auth_data.password.decode("utf-8", "replace"),
        ) == self.auth
        return AuthResult(success=ok, handled=False)

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        if self.pipelining:
            responses.insert(-1, "250-PIPELINING")
        return responses

    @staticmethod
    def _take(rule: _Rule | None) -> str | None:
        if rule is None or rule.remaining == 0:
            return None
        if rule.remaining is not None:
            rule.remaining -= 1
        return f"{rule.code} {rule.text}"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        with self._lock:
            refusal = self._take(self._throttle) or self._take(self._rcpt_rules.get(address.lower()))
        if refusal is not None:
            if refusal.startswith("421"):
                server.loop.call_soon(server.transport.close)
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        with self._lock:
            for address in envelope.rcpt_tos:
                refusal = self._take(self._data_rules.get(address.lower()))
                if refusal is not None:
                    return refusal
        data = bytes(envelope.original_content or b"")
        parsed = email.message_from_bytes(data, policy=email.policy.default)
        queue_id = f"Q{next(self._queue_ids):06d}{uuid.uuid4().hex[:6].upper()}"
        with self._lock:
            self._messages.append(
                ReceivedMessage(
                    mail_from=envelope.mail_from,
                    rcpt_tos=tuple(envelope.rcpt_tos),
                    data=data,
                    message_id=str(parsed.get("Message-ID", "")).strip().strip("<>"),
                    parsed=parsed,
                    queue_id=queue_id,
                    connection=getattr(server, "connection_number", 0),
                )
            )
            if self._drop_after is not None and len(self._messages) >= self._drop_after:
                self._drop_after = None
                # After the 250 below is written, cut the connection without a 221.
                server.loop.call_soon(server.transport.abort)
            self._lock.notify_all()
        return f"250 2.0.0 OK: queued as {queue_id}"


def _self_signed_context(directory: Path, host: str):
    """A server TLS context with a fresh self-signed certificate for `host` and localhost."""
    import ssl

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    names: list[x509.GeneralName] = [x509.DNSName("localhost")]
    try:
        names.append(x509.IPAddress(ipaddress.ip_address(host)))
    except ValueError:
        names.append(x509.DNSName(host))
    now = dt.datetime.now(dt.timezone.utc)
    public_key = key.public_key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public_key), critical=False)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False, key_agreement=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    return context


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    """A started SMTP sink (plain, no auth) for this test."""
    with SmtpSink() as sink:
        yield sink


@pytest.fixture
def make_smtp_sink() -> Iterator:
    """A factory for more sinks (auth, TLS); all are stopped after the test."""
    sinks: list[SmtpSink] = []

    def make(**options) -> SmtpSink:
        sink = SmtpSink(**options).start()
        sinks.append(sink)
        return sink

    yield make
    for sink in sinks:
        sink.stop()
