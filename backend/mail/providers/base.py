"""The contract every email provider keeps.

A provider opens one connection (or client) per batch, sends a list of already-rendered
messages, and answers one `SendResult` per message. It never touches the database: the
engine (`backend.delivery.sending`) records the outcomes in batched writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from backend.mail.ratelimit import RateLimiter, Unlimited


class Outcome(StrEnum):
    SENT = "sent"
    # Try again later, and count the attempt (SMTP 4xx, dropped connection, timeout).
    TRANSIENT = "transient"
    # Never try again (SMTP 5xx, invalid or suppressed address, rejected sender).
    PERMANENT = "permanent"
    # The provider asked us to slow down: wait and retry without counting an attempt.
    THROTTLED = "throttled"
    # The provider is unreachable or failing for everyone (connection refused or timed out
    # before the message was accepted, SMTP 421, HTTP 5xx): nothing to do with this recipient.
    # No attempt is counted; the route's circuit opens (backend.delivery.circuit).
    UNAVAILABLE = "unavailable"


@dataclass(slots=True)
class Attachment:
    filename: str
    content: bytes
    mime_type: str = "application/pdf"


@dataclass(slots=True)
class OutgoingMessage:
    """One rendered message for one recipient."""

    recipient_id: int
    to_address: str
    to_name: str | None
    subject: str
    text: str
    html: str | None
    # Deterministic per job and recipient, so a resend after a crash carries the same id.
    message_id: str
    # The template variables this message was rendered from (for batch APIs that substitute).
    variables: dict = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    attachments: list[Attachment] = field(default_factory=list)


@dataclass(slots=True)
class SendResult:
    recipient_id: int
    outcome: Outcome
    external_id: str | None = None
    error: str | None = None
    # For THROTTLED: how long the provider asked us to wait, if it said.
    retry_after: float | None = None


class ProviderError(Exception):
    """A provider cannot work at all (bad configuration, unreachable endpoint)."""


class ClientProvider:
    """A provider that opens an API client for the length of a `with` block: one per batch."""

    name: str
    _client = None

    def make_client(self):
        raise NotImplementedError

    def __enter__(self):
        self._client = self.make_client()
        return self

    def __exit__(self, *exc_info) -> None:
        if self._client is not None:
            self._client.close()
        self._client = None

    def _pace(self, limiter: RateLimiter | None, max_batch: int) -> None:
        """Set the limiter, whether this provider paces its own sends, and how many messages one
        API request carries: at most one second's worth of the rate, so the rate holds within
        the second."""
        self.limiter = limiter or Unlimited()
        # The engine's own per-chunk acquire would pace twice: a pacing provider paces itself.
        self.paces_sends = not isinstance(self.limiter, Unlimited)
        rate = getattr(self.limiter, "rate", 0) or 0
        self.request_size = max(1, min(max_batch, int(rate))) if rate else max_batch

    def _require_client(self) -> None:
        if self._client is None:
            raise ProviderError(f"{self.name}: use the provider as `with provider:` before sending.")


class Provider(Protocol):
    name: str
    # The most messages one `send` call takes (an API's per-request limit).
    max_batch: int

    def __enter__(self) -> "Provider": ...

    def __exit__(self, *exc_info) -> None: ...

    def send(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        """Send `messages` on the open connection; one result per message, in order."""
        ...
