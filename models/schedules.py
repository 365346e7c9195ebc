"""Schedules (recurring jobs from a Moodle selection) and their runs."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import JSON, Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from models.base import StatusText, UTCDateTime, utcnow


class ScheduleRunStatus(StrEnum):
    # Claimed for its occurrence, not yet run (or its worker died before it committed).
    PENDING = "pending"
    # A run that failed (Moodle unreachable) and is tried again at `next_attempt_at` while grace lasts.
    RETRYING = "retrying"
    # The job was created (`job_id`).
    CREATED = "created"
    # The selection found nobody: no job, nothing to send.
    EMPTY = "empty"
    # Given up: the reason is in `error`.
    FAILED = "failed"


SCHEDULE_RUN_OPEN = frozenset({ScheduleRunStatus.PENDING, ScheduleRunStatus.RETRYING})


class Schedule(SQLModel, table=True):
    __tablename__ = "schedules"
    __table_args__ = (Index("ix_schedules_enabled_next", "enabled", "next_run_at"),)

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=255)
    # The mani company; its IOMAD company id is its `moodle_company_id` setting, or its id.
    company_id: str = Field(foreign_key="companies.id", max_length=64, index=True)
    # The job type, which is also the Moodle selection (`mani submit --moodle --type`).
    job_type: str = Field(max_length=32)
    # The selection's options beyond type, company and window: course_id, inactive_for,
    # unless_activity_cmid (mirrored from `suppresstarget`), include_completed.
    selection: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    # The first run's `--since` as given ("24h", an ISO moment); later runs start where the
    # previous one ended.
    since: str | None = Field(default=None, max_length=64)
    action_type: str = Field(default="email", max_length=16)
    cloud_preference: str = Field(default="auto", max_length=16)
    frequency: str = Field(max_length=16)
    custom_interval: int | None = None
    # "HH:MM", local to `timezone` (an IANA name).
    time_of_day: str = Field(max_length=5)
    timezone: str = Field(max_length=64)
    start_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    suppress_course_completion: bool = False
    suppresstarget: int | None = None
    enabled: bool = True
    catch_up: str = Field(default="latest", max_length=8)
    grace_seconds: int = 3600
    # The end (unix seconds, inclusive) of the last window handed to a run: the next window
    # starts one second later, so windows neither overlap nor leave a gap.
    covered_until: int | None = None
    last_run_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    next_run_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    created_by: str | None = Field(default=None, max_length=128)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class ScheduleRun(SQLModel, table=True):
    __tablename__ = "schedule_runs"
    __table_args__ = (
        # A second guard behind the claim: one run per occurrence.
        UniqueConstraint("schedule_id", "scheduled_for", name="uq_schedule_runs_occurrence"),
        Index("ix_schedule_runs_status_next", "status", "next_attempt_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    schedule_id: int = Field(foreign_key="schedules.id", index=True)
    # The occurrence this run is for (a manual run: the moment it was asked for).
    scheduled_for: datetime = Field(sa_type=UTCDateTime, nullable=False)
    manual: bool = False
    # The Moodle window (unix seconds, closed): None for selections without one.
    window_since: int | None = None
    window_at: int
    status: ScheduleRunStatus = Field(
        default=ScheduleRunStatus.PENDING, sa_type=StatusText(ScheduleRunStatus, 16), nullable=False
    )
    attempts: int = 0
    next_attempt_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    job_id: int | None = Field(default=None, foreign_key="jobs.id")
    error: str | None = Field(default=None, sa_column=Column(Text))
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
