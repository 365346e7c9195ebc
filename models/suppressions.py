"""The suppression list: addresses a company's jobs never mail again (hard bounces, complaints,
and addresses an admin added)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from models.base import UTCDateTime, utcnow

# The list of jobs that belong to no company (the embedded default's jobs, CSVs without
# --company). A key, not NULL, so the unique constraint holds on every database.
NO_COMPANY = ""


class Suppression(SQLModel, table=True):
    __tablename__ = "suppressions"
    __table_args__ = (UniqueConstraint("company_key", "email_norm", name="uq_suppressions_company_email"),)

    id: int | None = Field(default=None, primary_key=True)
    # The company's id, or NO_COMPANY. Not a foreign key: the no-company list has no row.
    company_key: str = Field(max_length=64)
    email_norm: str = Field(max_length=320)
    # bounce, complaint (from a provider webhook), admin (added by hand), import (from a file).
    source: str = Field(max_length=16)
    reason: str = Field(sa_column=Column(Text, nullable=False))
    # The job whose mail bounced or was complained about, when a webhook added it.
    job_id: int | None = Field(default=None)
    created_by: str | None = Field(default=None, max_length=128)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
