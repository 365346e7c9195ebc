"""Adding, changing, pausing and removing schedules. Public functions take `*, session, ...` and
never commit: the caller's `session_scope()` does, and a refusal (UnusableInput) rolls it back,
so nothing is stored.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete
from sqlmodel import Session

from backend.core.audit import record
from backend.core.errors import UnusableInput
from backend.core.settings import Settings, get_settings
from backend.jobs.create import validate_job_options
from backend.jobs.moodle_source import moodle_target
from backend.moodle.source import (
    MoodleNotFound,
    MoodleSource,
    available_variables,
    course_activities,
    course_in_company,
    get_company,
)
from backend.moodle.source.options import COURSE_REQUIRED, SelectionType
from backend.schedules.definition import (
    ScheduleInput,
    check_input,
    floor_minute,
    recurrence_of,
    schedule_input_of,
)
from backend.schedules.queries import SchedulePublic, get_schedule, resolve_schedule_ref
from models import Company, Schedule, ScheduleRun, utcnow

DEFAULT_NEXT_COUNT = 5


def check_against_moodle(*, schedule: Schedule, source: MoodleSource, iomad_company_id: int) -> None:
    """The company exists in Moodle, the course is one of its courses, the activity is in that
    course; UnusableInput (exit 2) naming what is not. MoodleSourceError when Moodle cannot be read."""
    company_id = iomad_company_id
    try:
        get_company(source=source, company_id=company_id)
    except MoodleNotFound:
        raise UnusableInput(f"IOMAD company {company_id} does not exist in Moodle.") from None
    course_id = (schedule.selection or {}).get("course_id")
    if course_id is not None and not course_in_company(source=source, company_id=company_id, course_id=course_id):
        raise UnusableInput(f"Course {course_id} does not belong to company {company_id}.")
    if schedule.suppresstarget is not None:
        if SelectionType(schedule.job_type) not in COURSE_REQUIRED or course_id is None:
            raise UnusableInput(f"--unless-activity applies to reengagement and reminder with --course, not {schedule.job_type}.")
        cmids = {activity.cmid for activity in course_activities(source=source, course_id=course_id)}
        if schedule.suppresstarget not in cmids:
            raise UnusableInput(
                f"Activity {schedule.suppresstarget} is not a completion-tracked activity of course {course_id} "
                f"in company {company_id}."
            )


def _check(*, session: Session, schedule: Schedule, settings: Settings) -> None:
    """The mani company exists, and the Moodle it reads (`moodle_target`, as `mani submit --moodle`
    finds it) has the course and activity in that company; the job type can be served."""
    if session.get(Company, schedule.company_id) is None:
        raise UnusableInput(
            f"Company {schedule.company_id} is not known to mani: add it with "
            f"`mani companies add {schedule.company_id} --name NAME`."
        )
    try:
        target = moodle_target(session=session, company=schedule.company_id, settings=settings)
    except MoodleNotFound as error:  # no IOMAD company id for it: the input cannot be used
        raise UnusableInput(str(error)) from None
    # The job type must be one the selection can serve with this action (the template's
    # variables, a certificate template's fields): the same check `create_job` makes.
    validate_job_options(
        session=session, job_type=schedule.job_type, company_id=schedule.company_id, action=schedule.action_type,
        cloud_preference=schedule.cloud_preference,
        available_variables=set(available_variables(schedule.job_type, site_url=target.site_url)) | {"email", "fullname"},
        template_data={}, settings=settings,
    )
    with target.open() as source:
        check_against_moodle(schedule=schedule, source=source, iomad_company_id=target.iomad_company_id)


def add_schedule(
    *, session: Session, spec: ScheduleInput, actor: str, source: str, now: datetime | None = None,
    settings: Settings | None = None,
) -> SchedulePublic:
    """Check (against Moodle too) and store a schedule; its first run is at `next_run_at`."""
    settings = settings or get_settings()
    now = now or utcnow()
    schedule = check_input(spec, now=now)
    _check(session=session, schedule=schedule, settings=settings)
    schedule.created_by = actor[:128]
    session.add(schedule)
    session.flush()
    record(session=session, actor=actor, source=source, action="schedule.add", target=f"schedule:{schedule.id}",
           details={"name": schedule.name, "type": schedule.job_type, "company": schedule.company_id,
                    "frequency": schedule.frequency, "next_run_at": _iso(schedule.next_run_at)})
    return get_schedule(session=session, ref=schedule.id)


def edit_schedule(
    *, session: Session, ref: str | int, changes: dict, actor: str, source: str, now: datetime | None = None,
    settings: Settings | None = None,
) -> SchedulePublic:
    """Change some of a schedule's inputs (ScheduleInput field names); everything is checked again
    and the next run is worked out anew. Windows continue where the last run's ended."""
    settings = settings or get_settings()
    now = now or utcnow()
    schedule = resolve_schedule_ref(session=session, ref=ref)
    unknown = set(changes) - set(ScheduleInput.__dataclass_fields__)
    if unknown:
        raise UnusableInput(f"Schedules have no field {sorted(unknown)[0]!r}.")
    spec = schedule_input_of(schedule).changed(**changes)
    checked = check_input(spec, now=now)
    _check(session=session, schedule=checked, settings=settings)
    changed = {}
    for name in ("name", "company_id", "job_type", "selection", "since", "action_type", "cloud_preference",
                 "frequency", "custom_interval", "time_of_day", "timezone", "start_at", "suppress_course_completion",
                 "suppresstarget", "catch_up", "grace_seconds"):
        if getattr(schedule, name) != getattr(checked, name):
            changed[name] = getattr(checked, name)
            setattr(schedule, name, getattr(checked, name))
    if schedule.enabled:
        schedule.next_run_at = checked.next_run_at
    schedule.updated_at = now
    session.add(schedule)
    session.flush()
    record(session=session, actor=actor, source=source, action="schedule.edit", target=f"schedule:{schedule.id}",
           details={"changed": sorted(changed), "next_run_at": _iso(schedule.next_run_at)})
    return get_schedule(session=session, ref=schedule.id)


def pause_schedule(*, session: Session, ref: str | int, actor: str, source: str) -> SchedulePublic:
    schedule = resolve_schedule_ref(session=session, ref=ref)
    schedule.enabled = False
    schedule.next_run_at = None
    schedule.updated_at = utcnow()
    session.add(schedule)
    record(session=session, actor=actor, source=source, action="schedule.pause", target=f"schedule:{schedule.id}")
    session.flush()
    return get_schedule(session=session, ref=schedule.id)


def resume_schedule(
    *, session: Session, ref: str | int, actor: str, source: str, now: datetime | None = None
) -> SchedulePublic:
    """Enable it again from the next occurrence on; the first window after it starts where the
    last run's ended, so a pause skips no one for the windowed types."""
    now = now or utcnow()
    schedule = resolve_schedule_ref(session=session, ref=ref)
    if not schedule.enabled:
        schedule.enabled = True
        schedule.next_run_at = recurrence_of(schedule).next_at_or_after(max(schedule.start_at, floor_minute(now)))
        schedule.updated_at = now
        session.add(schedule)
        record(session=session, actor=actor, source=source, action="schedule.resume",
               target=f"schedule:{schedule.id}", details={"next_run_at": _iso(schedule.next_run_at)})
        session.flush()
    return get_schedule(session=session, ref=schedule.id)


def remove_schedule(*, session: Session, ref: str | int, actor: str, source: str) -> int:
    """Delete the schedule and its run records (their jobs stay)."""
    schedule = resolve_schedule_ref(session=session, ref=ref)
    schedule_id = schedule.id
    session.execute(delete(ScheduleRun).where(ScheduleRun.schedule_id == schedule_id))
    session.delete(schedule)
    record(session=session, actor=actor, source=source, action="schedule.remove", target=f"schedule:{schedule_id}",
           details={"name": schedule.name})
    session.flush()
    return schedule_id


def next_run_times(
    *, session: Session, ref: str | int, count: int = DEFAULT_NEXT_COUNT, now: datetime | None = None
) -> list[datetime]:
    """The next `count` run times: from the stored next run, or (paused) from now or the start."""
    if count <= 0:
        raise UnusableInput(f"--count must be 1 or more, not {count}.")
    now = now or utcnow()
    schedule = resolve_schedule_ref(session=session, ref=ref)
    begin = schedule.next_run_at or max(schedule.start_at, floor_minute(now))
    return recurrence_of(schedule).upcoming(now=begin, count=count)


def preview_run_times(spec: ScheduleInput, *, count: int = DEFAULT_NEXT_COUNT, now: datetime | None = None) -> list[datetime]:
    """The next run times of a schedule not stored yet (the console's form shows them as you type)."""
    now = now or utcnow()
    schedule = check_input(spec, now=now)
    return recurrence_of(schedule).upcoming(now=schedule.next_run_at or max(schedule.start_at, now), count=count)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None
