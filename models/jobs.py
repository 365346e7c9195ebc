"""Jobs, their batches, their recipients, and the rows a CSV rejected."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from models.base import StatusText, UTCDateTime, utcnow
from models.statuses import BatchStatus, JobStatus, RecipientStatus


def _ts(nullable: bool = True, index: bool = False) -> Any:
    return Field(default=None, sa_type=UTCDateTime, nullable=nullable, index=index)


class Job(SQLModel, table=True):
    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_status_created", "status", "created_at"),
        Index("ix_jobs_company_type", "company_id", "type"),
    )

    id: int | None = Field(default=None, primary_key=True)
    # The public id: Job JSON's `job_id`, callbacks and the CLI all use it.
    uuid: str = Field(max_length=36, unique=True, index=True)
    type: str = Field(max_length=32, index=True)
    action: str = Field(default="email", max_length=16)
    company_id: str | None = Field(default=None, foreign_key="companies.id", max_length=64)
    status: JobStatus = Field(default=JobStatus.PENDING, sa_type=StatusText(JobStatus, 24), nullable=False)
    source: str = Field(default="csv", max_length=16)
    source_name: str | None = Field(default=None, max_length=512)
    template_id: str | None = Field(default=None, max_length=128)
    template_data: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    cloud_preference: str = Field(default="auto", max_length=16)
    route: str | None = Field(default=None, max_length=16)
    route_reason: str | None = Field(default=None, sa_column=Column(Text))
    provider: str | None = Field(default=None, max_length=32)
    callback_url: str | None = Field(default=None, max_length=2048)
    allow_duplicates: bool = False
    created_by: str | None = Field(default=None, max_length=128)

    total: int = 0
    skipped_duplicates: int = 0
    rejected_count: int = 0
    batch_count: int = 0
    # Runs of the dispatch actor: enough failed ones fail the job instead of looping.
    dispatch_attempts: int = 0
    sent_count: int = 0
    failed_count: int = 0
    bounced_count: int = 0
    complained_count: int = 0

    error: str | None = Field(default=None, sa_column=Column(Text))
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    enqueued_at: datetime | None = _ts()
    started_at: datetime | None = _ts()
    finished_at: datetime | None = _ts()
    last_progress_at: datetime | None = _ts()


class Batch(SQLModel, table=True):
    __tablename__ = "batches"
    __table_args__ = (
        UniqueConstraint("job_id", "number", name="uq_batches_job_number"),
        Index("ix_batches_status_lease", "status", "lease_until"),
    )

    id: int | None = Field(default=None, primary_key=True)
    job_id: int = Field(foreign_key="jobs.id", index=True)
    number: int
    size: int = 0
    status: BatchStatus = Field(default=BatchStatus.QUEUED, sa_type=StatusText(BatchStatus, 24), nullable=False)
    # Every claim counts in `attempts`; a claim that takes over from a dead or crashed run also
    # counts in `recoveries`, and enough of those give the batch up (a poison batch).
    attempts: int = 0
    recoveries: int = 0
    sent_count: int = 0
    failed_count: int = 0
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    enqueued_at: datetime | None = _ts()
    started_at: datetime | None = _ts()
    finished_at: datetime | None = _ts()
    lease_until: datetime | None = _ts()
    next_attempt_at: datetime | None = _ts()
    # Handed to the company's own cloud worker (cloud_mode sqs or api_gateway): when, what the
    # queue or endpoint answered (SQS message ids), and when the worker last reported on it.
    # Such a batch stays `processing`, with no lease, until the worker's callbacks settle it.
    handoff_at: datetime | None = _ts()
    handoff_ref: str | None = Field(default=None, sa_column=Column(Text))
    reported_at: datetime | None = _ts()


class Recipient(SQLModel, table=True):
    __tablename__ = "recipients"
    __table_args__ = (
        # (job_id, id) and (job_id, status, id) let the console page 50,000 recipients by keyset.
        Index("ix_recipients_job_id", "job_id", "id"),
        Index("ix_recipients_job_status", "job_id", "status", "id"),
        Index("ix_recipients_batch_status", "batch_id", "status"),
        Index("ix_recipients_email_norm", "email_norm"),
        Index("ix_recipients_sent_at", "sent_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    job_id: int = Field(foreign_key="jobs.id")
    batch_id: int | None = Field(default=None, foreign_key="batches.id")
    line: int | None = None
    userid: str | None = Field(default=None, max_length=64)
    email: str = Field(max_length=320)
    email_norm: str = Field(max_length=320)
    firstname: str | None = Field(default=None, max_length=255)
    lastname: str | None = Field(default=None, max_length=255)
    username: str | None = Field(default=None, max_length=255)
    # A temporary password, encrypted with AES-GCM (backend.core.field_cipher), wiped once its
    # message is sent or given up on.
    secret: str | None = Field(default=None, sa_column=Column(Text))
    variables: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    status: RecipientStatus = Field(default=RecipientStatus.PENDING, sa_type=StatusText(RecipientStatus, 24),
                                    nullable=False)
    attempts: int = 0
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    next_attempt_at: datetime | None = _ts()
    sent_at: datetime | None = _ts()
    updated_at: datetime | None = _ts()
    external_id: str | None = Field(default=None, max_length=255)
    certificate_url: str | None = Field(default=None, sa_column=Column(Text))
    certificate_code: str | None = Field(default=None, max_length=64)


class Rejection(SQLModel, table=True):
    """A CSV row that did not become a recipient, with its line and reason."""

    __tablename__ = "rejections"

    id: int | None = Field(default=None, primary_key=True)
    job_id: int = Field(foreign_key="jobs.id", index=True)
    line: int
    email: str | None = Field(default=None, max_length=1024)
    reason: str = Field(sa_column=Column(Text, nullable=False))
