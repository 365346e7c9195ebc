"""The schedules' read side: frozen public models that the CLI's `--json`, the console and the
metrics share, so a schedule has one shape everywhere. Datetimes are ISO 8601 with their offset."""

from __future__ import annotations

from datetime import datetime, timezone

from pydantic import BaseModel, ConfigDict
from sqlalchemy import func
from sqlmodel import Session, select

from backend.core.errors import NotFound, UnusableInput
from models import SCHEDULE_RUN_OPEN, Job, Schedule, ScheduleRun

LAST_RUNS = 10


class ScheduleRunPublic(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: int
    schedule_id: int
    scheduled_for: datetime
    manual: bool
    window_since: datetime | None
    window_at: datetime
    status: str
    attempts: int
    next_attempt_at: datetime | None
    job_id: int | None
    job_uuid: str | None
    job_status: str | None
    error: str | None
    finished_at: datetime | None


class SchedulePublic(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: int
    name: str
    company_id: str
    job_type: str
    selection: dict
    since: str | None
    action_type: str
    cloud_preference: str
    frequency: str
    custom_interval: int | None
    time_of_day: str
    timezone: str
    start_at: datetime
    suppress_course_completion: bool
    suppresstarget: int | None
    enabled: bool
    catch_up: str
    grace_seconds: int
    covered_until: datetime | None
    last_run_at: datetime | None
    next_run_at: datetime | None
    last_run: ScheduleRunPublic | None
    runs: list[ScheduleRunPublic]
    created_by: str | None
    created_at: datetime


def _moment(seconds: int | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, tz=timezone.utc)


def run_public(run: ScheduleRun, job: Job | None) -> ScheduleRunPublic:
    return ScheduleRunPublic(
        id=run.id, schedule_id=run.schedule_id, scheduled_for=run.scheduled_for, manual=run.manual,
        window_since=_moment(run.window_since), window_at=_moment(run.window_at), status=str(run.status),
        attempts=run.attempts, next_attempt_at=run.next_attempt_at if run.status in SCHEDULE_RUN_OPEN else None,
        job_id=run.job_id, job_uuid=job.uuid if job else None, job_status=str(job.status) if job else None,
        error=run.error, finished_at=run.finished_at,
    )


def schedule_public(schedule: Schedule, runs: list[ScheduleRunPublic]) -> SchedulePublic:
    return SchedulePublic(
        id=schedule.id, name=schedule.name, company_id=schedule.company_id, job_type=schedule.job_type,
        selection=dict(schedule.selection or {}), since=schedule.since, action_type=schedule.action_type,
        cloud_preference=schedule.cloud_preference, frequency=schedule.frequency,
        custom_interval=schedule.custom_interval, time_of_day=schedule.time_of_day, timezone=schedule.timezone,
        start_at=schedule.start_at, suppress_course_completion=schedule.suppress_course_completion,
        suppresstarget=schedule.suppresstarget, enabled=schedule.enabled, catch_up=schedule.catch_up,
        grace_seconds=schedule.grace_seconds, covered_until=_moment(schedule.covered_until),
        last_run_at=schedule.last_run_at, next_run_at=schedule.next_run_at,
        last_run=runs[0] if runs else None, runs=runs, created_by=schedule.created_by,
        created_at=schedule.created_at,
    )


def _runs(session: Session, schedule_ids: list[int], limit: int) -> dict[int, list[ScheduleRunPublic]]:
    """The latest `limit` runs of each schedule (one query for the runs, one for their jobs)."""
    if not schedule_ids:
        return {}
    ranked = (
        select(ScheduleRun.id, func.row_number().over(
            partition_by=ScheduleRun.schedule_id, order_by=(ScheduleRun.scheduled_for.desc(), ScheduleRun.id.desc())
        ).label("rank"))
        .where(ScheduleRun.schedule_id.in_(schedule_ids))
        .subquery()
    )
    runs = session.exec(
        select(ScheduleRun).join(ranked, ranked.c.id == ScheduleRun.id).where(ranked.c.rank <= limit)
        .order_by(ScheduleRun.scheduled_for.desc(), ScheduleRun.id.desc())
    ).all()
    job_ids = {run.job_id for run in runs if run.job_id}
    jobs = {job.id: job for job in session.exec(select(Job).where(Job.id.in_(job_ids))).all()} if job_ids else {}
    found: dict[int, list[ScheduleRunPublic]] = {}
    for run in runs:
        found.setdefault(run.schedule_id, []).append(run_public(run, jobs.get(run.job_id)))
    return found


def resolve_schedule_ref(*, session: Session, ref: str | int) -> Schedule:
    text = str(ref).strip().lstrip("#")
    if not text.isdigit():
        raise UnusableInput(f"{ref!r} is not a schedule id: use the number `mani schedules list` shows.")
    schedule = session.get(Schedule, int(text))
    if schedule is None:
        raise NotFound(f"There is no schedule {text}; `mani schedules list` shows them.")
    return schedule


def get_schedule(*, session: Session, ref: str | int, runs: int = LAST_RUNS) -> SchedulePublic:
    schedule = resolve_schedule_ref(session=session, ref=ref)
    return schedule_public(schedule, _runs(session, [schedule.id], runs).get(schedule.id, []))


def list_schedules(*, session: Session, company_id: str | None = None, runs: int = 1) -> list[SchedulePublic]:
    query = select(Schedule).order_by(Schedule.id)
    if company_id is not None:
        query = query.where(Schedule.company_id == company_id)
    schedules = session.exec(query).all()
    by_schedule = _runs(session, [s.id for s in schedules], runs)
    return [schedule_public(s, by_schedule.get(s.id, [])) for s in schedules]
