"""Issued certificates: one row per issue; the PDF itself lives in storage, frozen as issued."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from models.base import UTCDateTime, utcnow


class Certificate(SQLModel, table=True):
    __tablename__ = "certificates"
    __table_args__ = (
        # A recipient's current issue: the newest row for (recipient, job) that is not revoked.
        Index("ix_certificates_recipient_current", "recipient_id", "job_id", "revoked_at"),
        # Export walks a job's certificates in id order.
        Index("ix_certificates_job_id", "job_id", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    # The public verification code, e.g. MANI-7K3F-Q9XZ-4M2P.
    code: str = Field(max_length=32, unique=True, index=True)
    job_id: int | None = Field(default=None, foreign_key="jobs.id")
    recipient_id: int | None = Field(default=None, foreign_key="recipients.id")
    # Copies of who and what, so verification still answers if the job is purged.
    email: str = Field(max_length=320)
    fullname: str = Field(max_length=512)
    course_name: str = Field(default="", max_length=512)
    template: str = Field(default="default", max_length=128)
    issued_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    revoke_reason: str | None = Field(default=None, sa_column=Column(Text))
    storage_backend: str = Field(default="local", max_length=32)
    storage_key: str = Field(max_length=1024)
    sha256: str = Field(max_length=64)
    size: int = 0


class MoodleCertificateClaim(SQLModel, table=True):
    """One Moodle completion (site, user, course) that a job has taken on: the next run's
    certificate selection leaves it out, so a completion gets one certificate across runs."""

    __tablename__ = "moodle_certificate_claims"
    __table_args__ = (
        UniqueConstraint("site", "moodle_userid", "courseid", name="uq_moodle_certificate_claims_completion"),
    )

    id: int | None = Field(default=None, primary_key=True)
    # The Moodle database and prefix (host:port/database/prefix, never the login): user ids are
    # per site, and a company may read another site than the global one.
    site: str = Field(max_length=255)
    moodle_userid: int
    courseid: int
    job_id: int = Field(foreign_key="jobs.id", index=True)
    claimed_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
