"""A Moodle-side callback receiver: a real HTTP server in a thread, checking exactly what
Moodle's cloud_callback.php checks (seed 000, Task 4.4.2):

    $signature = hash_hmac('sha256', $request_body, $callback_secret);
    if (!hash_equals($signature, $_SERVER['HTTP_X_SIGNATURE'])) { 401 'Invalid signature' }
    $timestamp = $payload['timestamp'] ?? 0;
    if (abs(time() - $timestamp) > 300) { 401 'Request expired' }

It keeps the last status per (job_id, userid), the way Moodle's table would, and can be told
to fail its first N deliveries (500, a dropped connection) or to stop listening altogether.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    accepted: bool
    code: int
    reason: str
    body: bytes
    payload: dict | None = None
    at: float = field(default_factory=time.time)


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        receiver = self.server.receiver
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        failure = receiver._take_failure()
        if failure == "reset":
            # Drop the connection without an answer: the sender sees a transport error.
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            receiver._record(Received(False, 0, "dropped", body))
            return
        if failure == "500":
            receiver._record(Received(False, 500, "failing on purpose", body))
            self._answer(500, "Internal Server Error")
            return
        code, reason, payload = receiver.check(body, self.headers.get("X-Signature"))
        if code == 200:
            receiver._apply(payload)
        receiver._record(Received(code == 200, code, reason, body, payload))
        self._answer(code, json.dumps({"success": code == 200, "message": reason}))

    def _answer(self, code: int, text: str) -> None:
        data = text.encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, receiver: "Receiver") -> None:
        self.receiver = receiver
        super().__init__(address, _Handler)


class Receiver:
    """Start with `with Receiver(secret) as receiver:`; post to `receiver.url`."""

    def __init__(self, secret: str, *, clock: Callable[[], float] = time.time, window: int = 300,
                 path: str = "/local/manireports/ui/ajax/cloud_callback.php") -> None:
        self.secret = secret
        self.clock = clock
        self.window = window
        self.path = path
        self.port = 0
        self._lock = threading.RLock()
        self._failures: list[str] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.received: list[Received] = []
        # (job_id, userid) -> last status, as Moodle's recipients table would hold it.
        self.statuses: dict[tuple[str, str], str] = {}
        self.updates: dict[tuple[str, str], dict] = {}
        # job_id -> the job status of the last final callback.
        self.job_statuses: dict[str, str] = {}

    # The check, exactly as the seed's PHP does it -----------------------------------------

    def check(self, body: bytes, signature: str | None) -> tuple[int, str, dict | None]:
        expected = hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
        given = signature or ""
        # hash_equals() on strings: compare the bytes in constant time.
        if not hmac.compare_digest(expected.encode(), given.encode("utf-8", "surrogateescape")):
            return 401, "Invalid signature", None
        try:
            payload = json.loads(body)
        except ValueError:
            return 400, "Invalid JSON", None
        if not isinstance(payload, dict):
            return 400, "Invalid JSON", None
        stamp = payload.get("timestamp") or 0
        try:
            stamp = float(stamp)
        except (TypeError, ValueError):
            stamp = 0.0
        if abs(self.clock() - stamp) > self.window:
            return 401, "Request expired", None
        return 200, "ok", payload

    def _apply(self, payload: dict) -> None:
        with self._lock:
            job_id = str(payload.get("job_id"))
            for update in payload.get("recipient_updates") or []:
                key = (job_id, str(update.get("userid") if update.get("userid") is not None else update.get("email")))
                self.statuses[key] = update.get("status")
                self.updates[key] = update
            if payload.get("final"):
                self.job_statuses[job_id] = payload.get("status")

    def _record(self, item: Received) -> None:
        with self._lock:
            self.received.append(item)

    def _take_failure(self) -> str | None:
        with self._lock:
            return self._failures.pop(0) if self._failures else None

    # Controls -------------------------------------------------------------------------------

    def fail_next(self, count: int, mode: str = "500") -> None:
        """Fail the next `count` requests: "500" answers 500, "reset" drops the connection."""
        with self._lock:
            self._failures.extend([mode] * count)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    def start(self) -> "Receiver":
        self._server = _Server(("127.0.0.1", self.port), self)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="receiver", daemon=True)
        self._thread.start()
        return self

    def down(self) -> None:
        """Stop listening: connections are refused until `up()` (same port)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def up(self) -> None:
        if self._server is None:
            self.start()

    def __enter__(self) -> "Receiver":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.down()

    # Questions tests ask -------------------------------------------------------------------

    @property
    def accepted(self) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.accepted]

    @property
    def rejected(self) -> list[Received]:
        with self._lock:
            return [r for r in self.received if not r.accepted and r.code not in (0, 500)]

    def wait_for(self, predicate: Callable[["Receiver"], bool], *, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if predicate(self):
                    return True
            time.sleep(0.05)
        with self._lock:
            return predicate(self)
