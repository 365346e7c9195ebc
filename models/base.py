"""Shared column types and status vocabularies for the store."""

from __future__ import annotations

from datetime import datetime, timezone
from enum import StrEnum

from sqlalchemy import DateTime
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite hands back naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        value = value.astimezone(timezone.utc)
        # SQLite compares datetimes as text: store one canonical naive-UTC form there.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


class JobStatus(StrEnum):
    PENDING = "pending"
    QUEUED = "queued"
    PROCESSING = "processing"
    COMPLETED = "completed"
    PARTIAL_FAILURE = "partial_failure"
    FAILED = "failed"
    RETRY_PENDING = "retry_pending"
    PAUSED = "paused"
    CANCELLED = "cancelled"


JOB_FINAL = frozenset(
    {JobStatus.COMPLETED, JobStatus.PARTIAL_FAILURE, JobStatus.FAILED, JobStatus.CANCELLED}
)
JOB_ACTIVE = frozenset(
    {JobStatus.PENDING, JobStatus.QUEUED, JobStatus.PROCESSING, JobStatus.RETRY_PENDING, JobStatus.PAUSED}
)


class BatchStatus(StrEnum):
    QUEUED = "queued"
    PROCESSING = "processing"
    RETRY_PENDING = "retry_pending"
    COMPLETED = "completed"
    PARTIAL_FAILURE = "partial_failure"
    FAILED = "failed"
    CANCELLED = "cancelled"


BATCH_FINAL = frozenset(
    {BatchStatus.COMPLETED, BatchStatus.PARTIAL_FAILURE, BatchStatus.FAILED, BatchStatus.CANCELLED}
)


class RecipientStatus(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    SENT = "sent"
    FAILED = "failed"
    RETRY_PENDING = "retry_pending"
    PERMANENTLY_FAILED = "permanently_failed"
    BOUNCED = "bounced"
    COMPLAINED = "complained"
    # Skipped as a duplicate of a recent send (seed 003, duplicate prevention).
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


# Statuses a worker may still act on; everything else is final for the current run.
RECIPIENT_OPEN = frozenset(
    {RecipientStatus.PENDING, RecipientStatus.PROCESSING, RecipientStatus.FAILED, RecipientStatus.RETRY_PENDING}
)
RECIPIENT_FINAL = frozenset(set(RecipientStatus) - RECIPIENT_OPEN)
# Outcomes that count as delivered to the provider (a later bounce does not un-send it).
RECIPIENT_DELIVERED = frozenset({RecipientStatus.SENT, RecipientStatus.BOUNCED, RecipientStatus.COMPLAINED})
