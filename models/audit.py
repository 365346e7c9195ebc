"""The audit log: who did what, from where."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel

from models.base import UTCDateTime, utcnow


class AuditEntry(SQLModel, table=True):
    __tablename__ = "audit_log"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False, index=True)
    # The OS user (SUDO_USER or login name), "api:<company>", or "system".
    actor: str = Field(max_length=128)
    # Where it came from: cli, console, api, worker.
    source: str = Field(max_length=16)
    action: str = Field(max_length=64, index=True)
    target: str | None = Field(default=None, max_length=255)
    address: str | None = Field(default=None, max_length=64)
    # Never holds a secret in plain text: callers pass masked values.
    details: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
