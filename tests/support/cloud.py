"""Real local servers for the cloud providers, each on 127.0.0.1 and a free port, in a thread.

- `moto_server`: moto in server mode (SES v2, SES v1, S3, SQS) behind a thin WSGI gate that
  timestamps every accepted SendEmail and can answer the next N with SES throttling (429
  TooManyRequestsException), which moto itself never does.
- `mailgun_server`: Mailgun's messages API (`/v3/<domain>/messages`, `messages.mime`) and
  domains API, with Basic auth `api:<key>`; it renders each recipient's message the way
  Mailgun does (substituting `%recipient.x%` from `recipient-variables`).
- `sendgrid_server`: SendGrid's `/v3/mail/send` (personalizations, substitutions, 202 with
  X-Message-Id, per-field 400 errors) and `/v3/scopes`, with Bearer auth.
- `dead_url`: an http URL on which nothing listens.

Every server records what it accepted with `time.monotonic()` stamps, so tests can measure the
rate a server actually saw. `throttle(n)` makes the next n send calls answer "slow down".
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import io
import itertools
import json
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.utils import parseaddr
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

_ADDRESS = re.compile(r"[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+\Z")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def dead_url() -> str:
    """An http URL with nothing listening behind it (connections are refused)."""
    return f"http://127.0.0.1:{free_port()}"


@dataclass
class Delivery:
    """One recipient's message as the provider would deliver it."""

    at: float
    call: int
    to: str
    subject: str
    text: str
    html: str | None
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None
    external_id: str | None = None


class _Throttle:
    def __init__(self):
        self.lock = threading.Lock()
        self.remaining = 0
        self.answered = 0

    def take(self) -> bool:
        with self.lock:
            if self.remaining > 0:
                self.remaining -= 1
                self.answered += 1
                return True
            return False


# moto ---------------------------------------------------------------------------------------


class MotoServer:
    """moto's server app with a gate in front of SES v2 SendEmail."""

    region = "us-east-1"

    def __init__(self):
        self.deliveries: list[Delivery] = []
        self._lock = threading.Lock()
        self._throttle = _Throttle()
        self._server = None
        self._thread = None
        self._calls = itertools.count(1)

    def start(self) -> "MotoServer":
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
        from werkzeug.serving import make_server

        class QuietHandler(MotoRequestHandler):
            def log_request(self, *args, **kwargs):  # one line per request drowns the test output
                return None

        app = DomainDispatcherApplication(create_backend_app)
        self._server = make_server("127.0.0.1", 0, self._gate(app), threaded=True, request_handler=QuietHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.reset()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._thread.join(5)
            self._server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def reset(self) -> None:
        import urllib.request

        urllib.request.urlopen(urllib.request.Request(self.url + "/moto-api/reset", method="POST"), timeout=10).read()
        with self._lock:
            self.deliveries.clear()

    def client(self, service: str):
        import boto3

        return boto3.client(
            service, endpoint_url=self.url, region_name=self.region, aws_access_key_id="AKIAMANITEST",
            aws_secret_access_key="moto-secret",
        )

    def verify(self, identity: str) -> None:
        """Make `identity` (an address or domain) a verified SES sender."""
        self.client("sesv2").create_email_identity(EmailIdentity=identity)

    def throttle(self, n: int) -> None:
        with self._throttle.lock:
            self._throttle.remaining = n

    @property
    def throttled(self) -> int:
        return self._throttle.answered

    def _gate(self, app):
        def gate(environ, start_response):
            if environ.get("REQUEST_METHOD") != "POST" or environ.get("PATH_INFO") != "/v2/email/outbound-emails":
                return app(environ, start_response)
            if self._throttle.take():
                body = json.dumps({"message": "Maximum sending rate exceeded."}).encode()
                start_response("429 Too Many Requests", [
                    ("Content-Type", "application/json"), ("x-amzn-ErrorType", "TooManyRequestsException"),
                    ("Content-Length", str(len(body))),
                ])
                return [body]
            length = int(environ.get("CONTENT_LENGTH") or 0)
            request = environ["wsgi.input"].read(length)
            environ["wsgi.input"] = io.BytesIO(request)
            at = time.monotonic()
            status_holder: list[str] = []

            def capture(status, headers, exc_info=None):
                status_holder.append(status)
                return start_response(status, headers, exc_info)

            chunks = list(app(environ, capture))
            if status_holder and status_holder[0].startswith("200"):
                params = json.loads(request)
                raw = base64.b64decode(params["Content"]["Raw"]["Data"])
                parsed = email.parser.BytesParser(policy=email.policy.default).parsebytes(raw)
                text_part = parsed.get_body(("plain",))
                html_part = parsed.get_body(("html",))
                with self._lock:
                    self.deliveries.append(Delivery(
                        at=at, call=next(self._calls), to=params["Destination"]["ToAddresses"][0],
                        subject=str(parsed["Subject"]), text=text_part.get_content() if text_part else "",
                        html=html_part.get_content() if html_part else None,
                        headers={k: str(v) for k, v in parsed.items()}, raw=raw,
                        external_id=json.loads(b"".join(chunks))["MessageId"],
                    ))
            return chunks

        return gate


@pytest.fixture
def moto_server() -> Iterator[MotoServer]:
    server = MotoServer().start()
    try:
        yield server
    finally:
        server.stop()


# HTTP fakes ---------------------------------------------------------------------------------


class _FakeHTTP:
    """A threaded HTTP server whose handler calls `self.handle(method, path, headers, body)`."""

    def __init__(self):
        self.lock = threading.Lock()
        self.calls: list[dict] = []  # every accepted send call: {"at", "count", ...}
        self.deliveries: list[Delivery] = []
        self._throttle = _Throttle()
        self.retry_after = 1
        self.rejected: set[str] = set()  # addresses answered as invalid
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output quiet
                return None

            def _dispatch(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status, headers, payload = fake.handle(self.command, self.path, self.headers, body)
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _dispatch

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def throttle(self, n: int, *, retry_after: int = 1) -> None:
        """The next `n` send calls answer 429."""
        with self._throttle.lock:
            self._throttle.remaining, self.retry_after = n, retry_after

    @property
    def throttled(self) -> int:
        return self._throttle.answered

    def handle(self, method, path, headers, body):  # pragma: no cover - overridden
        raise NotImplementedError


def _form(headers, body: bytes) -> dict[str, list]:
    """A form body (urlencoded or multipart) as {name: [values]}; file parts as bytes."""
    content_type = headers.get("Content-Type", "")
    if content_type.startswith("multipart/form-data"):
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
        )
        fields: dict[str, list] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            value = part.get_payload(decode=True)
            if part.get_filename() is None:
                value = value.decode("utf-8")
            fields.setdefault(name, []).append(value)
        return fields
    return parse_qs(body.decode("utf-8"), keep_blank_values=True)


class MailgunServer(_FakeHTTP):
    def __init__(self, *, api_key: str = "key-mailgun-test-0123456789", domains: tuple[str, ...] = ("mg.example.com",)):
        super().__init__()
        self.api_key, self.domains = api_key, set(domains)
        self.leaks = 0  # calls that would have shown several addresses to everyone
        self._ids = itertools.count(1)

    def handle(self, method, path, headers, body):
        expected = "Basic " + base64.b64encode(f"api:{self.api_key}".encode()).decode()
        if headers.get("Authorization") != expected:
            return 401, {}, b"Forbidden"
        path = urlsplit(path).path
        match = re.fullmatch(r"/v[34]/domains/([^/]+)", path)
        if method == "GET" and match:
            if match.group(1) not in self.domains:
                return 404, {}, {"message": "Domain not found"}
            return 200, {}, {"domain": {"name": match.group(1), "state": "active"}, "sending_dns_records": []}
        match = re.fullmatch(r"/v3/([^/]+)/(messages|messages\.mime)", path)
        if method != "POST" or not match:
            return 404, {}, {"message": "Not found"}
        domain, kind = match.group(1), ("mime" if match.group(2) == "messages.mime" else "batch")
        if domain not in self.domains:
            return 404, {}, {"message": f"Domain {domain} is not found"}
        if self._throttle.take():
            return 429, {"Retry-After": str(self.retry_after)}, {"message": "Too many requests"}
        fields = _form(headers, body)
        to = [parseaddr(value)[1] for value in fields.get("to", [])]
        if not to:
            return 400, {}, {"message": "'to' parameter is missing"}
        if len(to) > 1000:
            return 400, {}, {"message": "Too many recipients (max 1000)"}
        if any(not _ADDRESS.match(a) or a in self.rejected for a in to):
            return 400, {}, {"message": "to parameter is not a valid address. please check documentation"}
        at, message_id = time.monotonic(), f"{uuid.uuid4().hex[:12]}.{next(self._ids)}@{domain}"
        variables = json.loads(fields["recipient-variables"][0]) if "recipient-variables" in fields else {}
        with self.lock:
            call = len(self.calls) + 1
            if len(to) > 1 and not variables:
                self.leaks += 1
            self.calls.append({"at": at, "count": len(to), "kind": kind, "fields": fields, "to": to, "id": message_id})
            for address in to:
                own = variables.get(address, {})

                def render(text, own=own):
                    return None if text is None else re.sub(r"%recipient\.([A-Za-z0-9_-]+)%", lambda m: str(own.get(m.group(1), "")), text)

                if kind == "mime":
                    raw = fields["message"][0]
                    parsed = email.parser.BytesParser(policy=email.policy.default).parsebytes(raw)
                    self.deliveries.append(Delivery(
                        at, call, address, str(parsed["Subject"]), parsed.get_body(("plain",)).get_content(),
                        None, {k: str(v) for k, v in parsed.items()}, raw, message_id,
                    ))
                    continue
                self.deliveries.append(Delivery(
                    at, call, address, render(fields["subject"][0]), render(fields.get("text", [""])[0]),
                    render(fields["html"][0]) if "html" in fields else None,
                    {k[2:]: render(v[0]) for k, v in fields.items() if k.startswith("h:")}
                    | {k: render(v[0]) for k, v in fields.items() if k.startswith("v:")},
                    None, message_id,
                ))
        return 200, {}, {"id": f"<{message_id}>", "message": "Queued. Thank you."}


@pytest.fixture
def mailgun_server() -> Iterator[MailgunServer]:
    server = MailgunServer().start()
    try:
        yield server
    finally:
        server.stop()


class SendGridServer(_FakeHTTP):
    def __init__(self, *, api_key: str = "SG.sendgrid-test-key-0123456789", scopes: tuple[str, ...] = ("mail.send", "user.profile.read")):
        super().__init__()
        self.api_key, self.scopes = api_key, list(scopes)

    def handle(self, method, path, headers, body):
        if headers.get("Authorization") != f"Bearer {self.api_key}":
            return 401, {}, {"errors": [{"field": None, "message": "The provided authorization grant is invalid, expired, or revoked"}]}
        path = urlsplit(path).path
        if method == "GET" and path == "/v3/scopes":
            return 200, {}, {"scopes": self.scopes}
        if method != "POST" or path != "/v3/mail/send":
            return 404, {}, {"errors": [{"message": "not found"}]}
        if self._throttle.take():
            reset = int(time.time()) + self.retry_after
            return 429, {"X-RateLimit-Reset": str(reset), "X-RateLimit-Remaining": "0"}, {"errors": [{"message": "too many requests"}]}
        request = json.loads(body)
        personalizations = request.get("personalizations") or []
        if not 1 <= len(personalizations) <= 1000:
            return 400, {}, {"errors": [{"field": "personalizations", "message": "must have 1 to 1000 items"}]}
        errors = []
        for i, p in enumerate(personalizations):
            for j, to in enumerate(p.get("to") or []):
                if not _ADDRESS.match(to.get("email", "")) or to.get("email") in self.rejected:
                    errors.append({"field": f"personalizations.{i}.to.{j}.email", "message": "Does not contain a valid address."})
            size = sum(len(k.encode()) + len(v.encode()) for k, v in (p.get("substitutions") or {}).items())
            if size > 10_000:
                errors.append({"field": f"personalizations.{i}.substitutions", "message": "substitutions may total at most 10000 bytes"})
        if errors:
            return 400, {}, {"errors": errors}
        content = {c["type"]: c["value"] for c in request.get("content") or []}
        at, external_id = time.monotonic(), uuid.uuid4().hex[:22]
        with self.lock:
            call = len(self.calls) + 1
            self.calls.append({"at": at, "count": len(personalizations), "request": request, "id": external_id})
            for p in personalizations:
                subs = p.get("substitutions") or {}

                def render(text, subs=subs):
                    if text is None:
                        return None
                    for key, value in subs.items():
                        text = text.replace(key, value)
                    return text

                self.deliveries.append(Delivery(
                    at, call, p["to"][0]["email"], p.get("subject") or request.get("subject", ""),
                    render(content.get("text/plain")), render(content.get("text/html")),
                    dict(p.get("headers") or {}) | {f"custom_args.{k}": v for k, v in (p.get("custom_args") or {}).items()},
                    None, external_id,
                ))
        return 202, {"X-Message-Id": external_id}, b""


@pytest.fixture
def sendgrid_server() -> Iterator[SendGridServer]:
    server = SendGridServer().start()
    try:
        yield server
    finally:
        server.stop()


def max_excess(events: list[tuple[float, int]], *, rate: float) -> float:
    """How far the server-observed sends ran ahead of `rate`: the largest
    count(i..j) - rate * (t_j - t_i) over all pairs of accepted calls (time, messages).
    A limiter with reservations keeps this at most one call's size (see backend.mail.ratelimit)."""
    events = sorted(events)
    worst = 0.0
    for i in range(len(events)):
        total = 0
        for j in range(i, len(events)):
            total += events[j][1]
            worst = max(worst, total - rate * (events[j][0] - events[i][0]))
    return worst
