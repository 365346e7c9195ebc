"""What a schedule is asked to do, checked: its recurrence, its Moodle selection, its job options.

`ScheduleInput` is what `mani schedules add` and the console's form hand in; `check_input` turns
it into the stored fields, or raises UnusableInput (exit 2) with one sentence, before anything is
stored. The Moodle checks (the course and the activity belong to the company) are in
`service.add_schedule`, which has the Moodle source.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta, timezone
from enum import StrEnum

from backend.core.errors import UnusableInput
from backend.moodle.source import SelectionOptions, SelectionType, parse_duration, parse_since
from backend.moodle.source.options import DEFAULT_INACTIVE_FOR, WINDOWED
from backend.schedules.recurrence import (
    Frequency,
    Recurrence,
    format_time_of_day,
    parse_time_of_day,
    parse_timezone,
)
from models import Schedule

DEFAULT_GRACE_SECONDS = 3600


class ActionType(StrEnum):
    EMAIL = "email"
    CERTIFICATE = "certificate"
    BOTH = "both"


class CloudPreference(StrEnum):
    AUTO = "auto"
    FORCE_CLOUD = "force_cloud"
    FORCE_LOCAL = "force_local"


class CatchUp(StrEnum):
    """What a worker that was down does with the occurrences it missed."""

    LATEST = "latest"  # one run, for the latest missed occurrence (its window covers them all)
    ALL = "all"  # one run per missed occurrence, each with its own window


@dataclass(frozen=True, slots=True)
class ScheduleInput:
    """A schedule as a person asks for it; text where the command line takes text."""

    name: str
    company_id: str
    job_type: str
    frequency: str
    interval_days: int | None = None
    time: str | None = None
    timezone: str = "UTC"
    start: str | None = None
    since: str | None = None
    course_id: int | None = None
    inactive_for: str | None = None
    unless_course_complete: bool = False
    unless_activity: int | None = None
    action: str = "email"
    cloud: str = "auto"
    catch_up: str = "latest"
    grace: str | None = None
    enabled: bool = True
    extra: dict = field(default_factory=dict)

    def changed(self, **changes) -> ScheduleInput:
        return replace(self, **changes)


def _choice(enum: type[StrEnum], value: str, option: str) -> str:
    try:
        return enum(value).value
    except ValueError:
        names = ", ".join(member.value for member in enum)
        raise UnusableInput(f"{option} {value!r} is not one of {names}.") from None


def parse_start(text: str, *, zone) -> tuple[datetime, bool]:
    """`--start`: a date (its midnight, local) or an ISO time (local unless it has an offset).
    Returns the moment (UTC) and whether a time of day was given."""
    value = str(text).strip()
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            return datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(timezone.utc), False
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise UnusableInput(
            f"--start {text!r} is not a date or time: use 2026-12-01 or 2026-12-01T09:00 (ISO 8601)."
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return moment.astimezone(timezone.utc), True


def floor_minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def check_input(spec: ScheduleInput, *, now: datetime) -> Schedule:
    """The stored fields (an unsaved Schedule) for `spec`, or UnusableInput with one sentence."""
    name = (spec.name or "").strip()
    if not name:
        raise UnusableInput("--name must not be empty.")
    if len(name) > 255:
        raise UnusableInput("--name is longer than 255 characters.")
    job_type = _choice(SelectionType, spec.job_type, "--type")
    frequency = _choice(Frequency, spec.frequency, "--frequency")
    action = _choice(ActionType, spec.action, "--action")
    cloud = _choice(CloudPreference, spec.cloud, "--cloud")
    catch_up = _choice(CatchUp, spec.catch_up, "--catch-up")
    zone = parse_timezone(spec.timezone)
    if spec.start:
        start_at, has_time = parse_start(spec.start, zone=zone)
    else:
        start_at, has_time = floor_minute(now), True
    local_start = start_at.astimezone(zone)
    if spec.time:
        at = parse_time_of_day(spec.time)
    else:
        at = local_start.time().replace(second=0, microsecond=0) if has_time else local_start.time().replace(
            hour=0, minute=0, second=0, microsecond=0
        )
    recurrence = Recurrence(
        frequency=frequency, start=local_start.date(), at=at, zone=zone, interval_days=spec.interval_days
    )
    grace = DEFAULT_GRACE_SECONDS if spec.grace in (None, "") else parse_duration(spec.grace, option="--grace")
    inactive_for = DEFAULT_INACTIVE_FOR if not spec.inactive_for else parse_duration(spec.inactive_for)
    if spec.unless_activity is not None and spec.unless_activity <= 0:
        raise UnusableInput(f"--unless-activity must be a course module id (1 or more), not {spec.unless_activity}.")
    kind = SelectionType(job_type)
    if spec.unless_course_complete and kind not in (SelectionType.REENGAGEMENT, SelectionType.REMINDER):
        raise UnusableInput(f"--unless-course-complete applies to reengagement and reminder, not {kind}.")
    if spec.since and kind not in WINDOWED:
        raise UnusableInput(f"--since applies to welcome_std, welcome_lic and certificate, not {kind}.")
    if spec.company_id is None or not str(spec.company_id).strip():
        raise UnusableInput("--company is needed: the mani company (its IOMAD company id, or one with moodle_company_id).")
    selection = {"course_id": spec.course_id}
    if kind == SelectionType.REENGAGEMENT:
        selection["inactive_for"] = inactive_for
    elif spec.inactive_for:
        raise UnusableInput(f"--inactive-for applies to reengagement only, not {kind}.")
    schedule = Schedule(
        name=name, company_id=str(spec.company_id).strip(), job_type=job_type, selection=selection,
        since=(spec.since or None), action_type=action, cloud_preference=cloud, frequency=frequency,
        custom_interval=spec.interval_days, time_of_day=format_time_of_day(at), timezone=spec.timezone,
        start_at=start_at, suppress_course_completion=bool(spec.unless_course_complete),
        suppresstarget=spec.unless_activity, enabled=spec.enabled, catch_up=catch_up, grace_seconds=grace,
    )
    # The selection's own checks (course needed, options that do not go together), as of now.
    first = recurrence.next_at_or_after(max(start_at, floor_minute(now)))
    # (The IOMAD id is looked up when the schedule is checked against Moodle; any valid one does here.)
    selection_options(schedule, since=initial_since(schedule, at=first), at=int(first.timestamp()), iomad_company_id=1)
    if spec.since:
        parse_since(spec.since, at=int(first.timestamp()))
    schedule.next_run_at = first if spec.enabled else None
    return schedule


def recurrence_of(schedule: Schedule) -> Recurrence:
    zone = parse_timezone(schedule.timezone)
    return Recurrence(
        frequency=Frequency(schedule.frequency), start=schedule.start_at.astimezone(zone).date(),
        at=parse_time_of_day(schedule.time_of_day), zone=zone, interval_days=schedule.custom_interval,
    )


def initial_since(schedule: Schedule, *, at: datetime) -> int | None:
    """The first window's start for a run at `at`: the schedule's `--since` (a duration back from
    the run, or a moment), else one period before the run. None for selections without a window."""
    if SelectionType(schedule.job_type) not in WINDOWED:
        return None
    at_unix = int(at.timestamp())
    if schedule.since:
        return parse_since(schedule.since, at=at_unix)
    return int(recurrence_of(schedule).period_before(at).timestamp())


_STORED = object()


def window_for(schedule: Schedule, *, at: datetime, covered_until=_STORED) -> tuple[int | None, int]:
    """(since, at) in unix seconds for a run at `at`: it starts one second after the previous
    run's window ended (closed windows, so nobody is in two), or where the first one starts.
    `covered_until` replaces the stored one (runs claimed together chain their windows)."""
    at_unix = int(at.timestamp())
    if SelectionType(schedule.job_type) not in WINDOWED:
        return None, at_unix
    covered = schedule.covered_until if covered_until is _STORED else covered_until
    if covered is not None:
        return covered + 1, at_unix
    return initial_since(schedule, at=at), at_unix


def selection_options(schedule: Schedule, *, since: int | None, at: int, iomad_company_id: int) -> SelectionOptions:
    """The Moodle selection a run reads (raises MoodleOptionsInvalid, exit 2, for what cannot go together)."""
    kind = SelectionType(schedule.job_type)
    chosen = schedule.selection or {}
    options: dict = {"type": kind, "company_id": iomad_company_id, "at": at,
                     "course_id": chosen.get("course_id")}
    if kind in WINDOWED:
        options["since"] = since
    if kind == SelectionType.REENGAGEMENT:
        options["inactive_for"] = int(chosen.get("inactive_for") or DEFAULT_INACTIVE_FOR)
        options["include_completed"] = not schedule.suppress_course_completion
    if schedule.suppresstarget is not None:
        options["unless_activity_cmid"] = schedule.suppresstarget
    return SelectionOptions(**options)


def schedule_input_of(schedule: Schedule) -> ScheduleInput:
    """The input that makes this schedule again (`edit` changes some of it and checks it all)."""
    chosen = schedule.selection or {}
    inactive = chosen.get("inactive_for")
    return ScheduleInput(
        name=schedule.name, company_id=schedule.company_id, job_type=schedule.job_type,
        frequency=schedule.frequency, interval_days=schedule.custom_interval, time=schedule.time_of_day,
        timezone=schedule.timezone, start=schedule.start_at.isoformat(), since=schedule.since,
        course_id=chosen.get("course_id"),
        inactive_for=f"{inactive}s" if inactive and inactive != DEFAULT_INACTIVE_FOR else None,
        unless_course_complete=schedule.suppress_course_completion, unless_activity=schedule.suppresstarget,
        action=schedule.action_type, cloud=schedule.cloud_preference, catch_up=schedule.catch_up,
        grace=f"{schedule.grace_seconds}s", enabled=schedule.enabled,
    )


def period_seconds(schedule: Schedule) -> int:
    """Roughly one period, for "how late is late" in the metrics."""
    days = {"daily": 1, "weekly": 7, "monthly": 28}.get(schedule.frequency, schedule.custom_interval or 1)
    return int(timedelta(days=days).total_seconds())
