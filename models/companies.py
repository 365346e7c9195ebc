"""Companies (IOMAD tenants), their setting overrides, and global setting overrides."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel

from models.base import UTCDateTime, utcnow


class Company(SQLModel, table=True):
    __tablename__ = "companies"

    # The Moodle/IOMAD company id, or the Job JSON `tenant_id`.
    id: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=255)
    # Plain overrides of the global settings: {"enabled": true, "threshold": 500, ...}.
    settings: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    # Secret overrides, each value a Fernet token: {"mailgun_api_key": "gAAAA..."}.
    secrets: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class GlobalSetting(SQLModel, table=True):
    """A global setting stored in the database (`mani settings set`), over the settings file."""

    __tablename__ = "global_settings"

    key: str = Field(primary_key=True, max_length=64)
    # JSON-encoded value; for a secret, a Fernet token string.
    value: str
    is_secret: bool = False
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
