"""Callback deliveries to Moodle and their attempts, API tokens, the inbound replay guard,
and provider webhook events."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from models.base import StatusText, UTCDateTime, utcnow
from models.statuses import DeliveryStatus


class CallbackDelivery(SQLModel, table=True):
    """One signed POST to Moodle, retried on a schedule until delivered or dead.

    The body is built at each attempt from the recipients' current rows (`recipient_ids`),
    so a late retry never carries an older status than one already delivered.
    """

    __tablename__ = "callback_deliveries"
    __table_args__ = (
        # The sweeper's question: which pending deliveries are due?
        Index("ix_callback_deliveries_status_next", "status", "next_attempt_at"),
        Index("ix_callback_deliveries_job_status", "job_id", "status"),
    )

    id: int | None = Field(default=None, primary_key=True)
    job_id: int = Field(foreign_key="jobs.id")
    batch_id: int | None = Field(default=None, foreign_key="batches.id", index=True)
    # batch (a batch finished), final (the job finished), updates (bounces, worker updates).
    kind: str = Field(default="batch", max_length=16)
    url: str = Field(sa_column=Column(Text, nullable=False))
    # Recipient ids whose current state this delivery reports (at most `callback_max_updates`).
    recipient_ids: list = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    # The final delivery also carries the job's status and counts.
    include_job_status: bool = False
    # pending -> delivered, or pending -> failed after the last scheduled retry.
    status: DeliveryStatus = Field(default=DeliveryStatus.PENDING, sa_type=StatusText(DeliveryStatus, 16),
                                   nullable=False)
    attempts: int = 0
    # Index into the retry schedule; `redeliver` restarts it without forgetting `attempts`.
    retry_index: int = 0
    next_attempt_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    # A worker holds the delivery while its request is in flight; duplicates skip it.
    lease_until: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    last_status_code: int | None = None
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    delivered_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class CallbackAttempt(SQLModel, table=True):
    """One HTTP attempt of a delivery: what was answered, when, and how long it took."""

    __tablename__ = "callback_attempts"

    id: int | None = Field(default=None, primary_key=True)
    delivery_id: int = Field(foreign_key="callback_deliveries.id", index=True)
    number: int
    started_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False, index=True)
    duration_ms: int = 0
    status_code: int | None = None
    error: str | None = Field(default=None, sa_column=Column(Text))
    # The first bytes of the answer, for diagnosing a receiver that says no.
    response_excerpt: str | None = Field(default=None, sa_column=Column(Text))
    # The body's `timestamp` and the number of updates sent, so an attempt can be explained.
    body_timestamp: int | None = None
    update_count: int = 0


class ApiToken(SQLModel, table=True):
    """A company's bearer token for the HTTP API, stored as a SHA-256 digest only."""

    __tablename__ = "api_tokens"

    id: int | None = Field(default=None, primary_key=True)
    company_id: str = Field(foreign_key="companies.id", max_length=64, index=True)
    token_hash: str = Field(max_length=64, unique=True)
    # The first characters of the token, shown in listings so an admin can tell tokens apart.
    prefix: str = Field(max_length=16)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    created_by: str | None = Field(default=None, max_length=128)
    last_used_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)


class SeenCallback(SQLModel, table=True):
    """Digests of signed inbound bodies already accepted, kept while a replay could still pass."""

    __tablename__ = "seen_callbacks"

    digest: str = Field(primary_key=True, max_length=64)
    expires_at: datetime = Field(sa_type=UTCDateTime, nullable=False, index=True)


class WebhookEvent(SQLModel, table=True):
    """A provider event (bounce, complaint) as received, and what mani did with it."""

    __tablename__ = "webhook_events"
    __table_args__ = (UniqueConstraint("provider", "event_id", name="uq_webhook_events_provider_event"),)

    id: int | None = Field(default=None, primary_key=True)
    provider: str = Field(max_length=16)
    # The provider's own id of the event (Mailgun event id, SNS MessageId + recipient).
    event_id: str = Field(max_length=255)
    event_type: str = Field(max_length=32)
    # applied, unmatched, ignored (not a permanent failure, or already in that status).
    outcome: str = Field(max_length=16)
    job_id: int | None = Field(default=None, foreign_key="jobs.id", index=True)
    recipient_id: int | None = Field(default=None, foreign_key="recipients.id")
    email: str | None = Field(default=None, max_length=320)
    received_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False, index=True)
    details: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
