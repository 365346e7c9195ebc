"""Provider circuits: a route (company x provider) that is down for everyone, not for one recipient.

A row exists only while the circuit is open. Every worker reads it before it claims a batch of
that route, so an outage costs each waiting batch one cheap read, never a recipient's attempt.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Text
from sqlmodel import Field, SQLModel

from models.base import UTCDateTime, utcnow


class ProviderCircuit(SQLModel, table=True):
    __tablename__ = "provider_circuits"

    # "<company id or ->/<route>/<provider>": one per company route (see backend.delivery.circuit).
    key: str = Field(primary_key=True, max_length=200)
    company_id: str | None = Field(default=None, max_length=64)
    provider: str = Field(max_length=32)
    # When the outage began (the first failure since the route last sent something).
    down_since: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    # When a batch may try again (one probe; the others wait for its answer).
    retry_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    # Failed probes in a row: the wait doubles with each (5 s, 10 s, ... capped at 5 min).
    failures: int = 1
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
