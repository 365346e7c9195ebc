"""`mani schedules`: recurring jobs from a Moodle selection, fired by the workers' sweeper.

    mani schedules add --name "Daily welcome" --type welcome_std --moodle --company 2 \\
        --frequency daily --time 09:00 --timezone Europe/Berlin --since 24h
    mani schedules list | show ID | edit ID ... | pause ID | resume ID | remove ID | run ID | next ID
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Optional
from zoneinfo import ZoneInfo

import typer

from actors.enqueue import enqueue_after_commit
from backend.core.errors import UnusableInput
from backend.schedules.definition import ActionType, CatchUp, CloudPreference, ScheduleInput
from backend.schedules.queries import SchedulePublic, get_schedule, list_schedules
from backend.schedules.recurrence import Frequency
from backend.schedules.runs import add_manual_run, execute_run
from backend.schedules.service import (
    add_schedule,
    edit_schedule,
    next_run_times,
    pause_schedule,
    remove_schedule,
    resume_schedule,
)
from cli_common import JobType, JsonOption, ManiTyper, emit, handles_errors, iso, table, who
from models.db import session_scope

schedules_app = ManiTyper(help="Recurring jobs from Moodle: daily, weekly, monthly or every N days.")

ScheduleRef = Annotated[str, typer.Argument(help="The schedule's id (`mani schedules list`).")]
FrequencyChoice = StrEnum("FrequencyChoice", {f.value: f.value for f in Frequency})
ActionChoice = StrEnum("ActionChoice", {a.value: a.value for a in ActionType})
CloudChoice = StrEnum("CloudChoice", {c.value: c.value for c in CloudPreference})
CatchUpChoice = StrEnum("CatchUpChoice", {c.value: c.value for c in CatchUp})

# Options shared by `add` and `edit` (edit: each one given replaces the stored value).
Name = Annotated[Optional[str], typer.Option("--name", help="What the schedule is called.")]
Type = Annotated[Optional[JobType], typer.Option("--type", help="The job type, which is also the Moodle selection.")]
Moodle = Annotated[bool, typer.Option("--moodle", help="Read the recipients from Moodle (schedules always do).")]
Company = Annotated[Optional[str], typer.Option("--company", help="The IOMAD company id (added with `mani companies add`).")]
Since = Annotated[Optional[str], typer.Option(
    "--since", help="The first run's window start: a duration back from the run (24h, 7d) or a moment (ISO). "
    "Later runs start where the previous one ended. Default: one period.")]
Course = Annotated[Optional[int], typer.Option("--course", help="The course id (reengagement, reminder; certificate narrows to it).")]
InactiveFor = Annotated[Optional[str], typer.Option("--inactive-for", help="Reengagement: inactive at least this long (30d).")]
UnlessCourse = Annotated[Optional[bool], typer.Option(
    "--unless-course-complete/--even-if-course-complete",
    help="Leave out students who completed the course (suppress_course_completion).", show_default=False)]
UnlessActivity = Annotated[Optional[int], typer.Option(
    "--unless-activity", metavar="CMID",
    help="Leave out students who completed this activity (its course module id, as Moodle's suppresstarget names it). "
    "`edit --unless-activity 0` removes it.")]
FrequencyOpt = Annotated[Optional[FrequencyChoice], typer.Option(
    "--frequency", help="daily, weekly (the start's weekday), monthly (the start's day; on the 29th-31st a "
    "shorter month runs on its last day) or custom (every --interval-days N days, counted from the start date).")]
IntervalDays = Annotated[Optional[int], typer.Option("--interval-days", help="custom: every N days from the start date.")]
TimeOpt = Annotated[Optional[str], typer.Option(
    "--time", help="HH:MM local time. Default: the start's time of day (the first run is at the start).")]
Zone = Annotated[Optional[str], typer.Option(
    "--timezone", help="IANA time zone; 09:00 Europe/Berlin stays 09:00 local across daylight saving. Default UTC.")]
Start = Annotated[Optional[str], typer.Option(
    "--start", help="A date (2026-12-01) or an ISO time; local to --timezone unless it has an offset. Default: now.")]
Action = Annotated[Optional[ActionChoice], typer.Option("--action", help="email, certificate or both.")]
Cloud = Annotated[Optional[CloudChoice], typer.Option("--cloud", help="auto, force_cloud or force_local.")]
CatchUpOpt = Annotated[Optional[CatchUpChoice], typer.Option(
    "--catch-up", help="After workers were down: latest (one run for the latest missed occurrence, its window "
    "covering them all) or all (one run per missed occurrence).")]
Grace = Annotated[Optional[str], typer.Option(
    "--grace", help="How long a run whose Moodle is unreachable is retried (1h).")]


def _changes(**given) -> dict:
    values = {key: (value.value if isinstance(value, StrEnum) else value) for key, value in given.items()
              if value is not None}
    if values.get("unless_activity") == 0:
        values["unless_activity"] = None
    return values


def _summary(schedule: SchedulePublic) -> str:
    every = f"every {schedule.custom_interval} days" if schedule.frequency == "custom" else schedule.frequency
    return f"{every} at {schedule.time_of_day} {schedule.timezone}"


def _show(schedule: SchedulePublic) -> None:
    state = "enabled" if schedule.enabled else "paused"
    typer.echo(f"schedule {schedule.id}  {schedule.name}  ({state})")
    typer.echo(f"  {schedule.job_type} for company {schedule.company_id}, action {schedule.action_type}, "
               f"cloud {schedule.cloud_preference}")
    typer.echo(f"  {_summary(schedule)}, from {iso(schedule.start_at)}, catch-up {schedule.catch_up}")
    if schedule.selection.get("course_id"):
        typer.echo(f"  course {schedule.selection['course_id']}"
                   + (", unless the course is complete" if schedule.suppress_course_completion else "")
                   + (f", unless activity {schedule.suppresstarget} is complete" if schedule.suppresstarget else ""))
    typer.echo(f"  next run {iso(schedule.next_run_at) or '-'}; last run {iso(schedule.last_run_at) or '-'}")
    if schedule.runs:
        table(["RUN", "FOR", "STATUS", "JOB", "JOB STATUS", "ERROR"],
              [[r.id, iso(r.scheduled_for) + (" (now)" if r.manual else ""), r.status, r.job_id or "",
                r.job_status or "", r.error or ""] for r in schedule.runs],
              no_wrap=("RUN", "FOR", "STATUS", "JOB"))


@schedules_app.command("add")
@handles_errors
def schedules_add(
    name: Name = None, job_type: Type = None, moodle: Moodle = False, company: Company = None,
    frequency: FrequencyOpt = None, interval_days: IntervalDays = None, time: TimeOpt = None, timezone: Zone = None,
    start: Start = None, since: Since = None, course: Course = None, inactive_for: InactiveFor = None,
    unless_course_complete: UnlessCourse = None, unless_activity: UnlessActivity = None, action: Action = None,
    cloud: Cloud = None, catch_up: CatchUpOpt = None, grace: Grace = None, as_json: JsonOption = False,
) -> None:
    """Add a schedule; the workers' sweeper runs it from `next_run_at` on. Nothing is stored when a
    check fails (unknown time zone, interval 0, a course or activity outside the company, a type the
    selection cannot serve): one sentence, exit 2."""
    missing = [flag for flag, value in (("--name", name), ("--type", job_type), ("--company", company),
                                        ("--frequency", frequency)) if value is None]
    if missing:
        raise UnusableInput(f"mani schedules add needs {', '.join(missing)}.")
    if not moodle:
        raise UnusableInput("Schedules read their recipients from Moodle: add --moodle.")
    values = _changes(name=name, company_id=company, job_type=job_type, frequency=frequency,
                      interval_days=interval_days, time=time, timezone=timezone, start=start, since=since,
                      course_id=course, inactive_for=inactive_for, unless_course_complete=unless_course_complete,
                      unless_activity=unless_activity, action=action, cloud=cloud, catch_up=catch_up, grace=grace)
    with session_scope() as session:
        schedule = add_schedule(session=session, spec=ScheduleInput(**values), actor=who(), source="cli")
    emit(schedule, as_json=as_json, human=lambda: typer.echo(
        f"added schedule {schedule.id} ({schedule.name}): {_summary(schedule)}, first run {iso(schedule.next_run_at)}"))


@schedules_app.command("edit")
@handles_errors
def schedules_edit(
    ref: ScheduleRef, name: Name = None, job_type: Type = None, company: Company = None,
    frequency: FrequencyOpt = None, interval_days: IntervalDays = None, time: TimeOpt = None, timezone: Zone = None,
    start: Start = None, since: Since = None, course: Course = None, inactive_for: InactiveFor = None,
    unless_course_complete: UnlessCourse = None, unless_activity: UnlessActivity = None, action: Action = None,
    cloud: Cloud = None, catch_up: CatchUpOpt = None, grace: Grace = None, as_json: JsonOption = False,
) -> None:
    """Change a schedule: the options given replace the stored ones, everything is checked again,
    and the next run is worked out anew. Windows go on where the last run's ended."""
    changes = _changes(name=name, company_id=company, job_type=job_type, frequency=frequency,
                       interval_days=interval_days, time=time, timezone=timezone, start=start, since=since,
                       course_id=course, inactive_for=inactive_for, unless_course_complete=unless_course_complete,
                       unless_activity=unless_activity, action=action, cloud=cloud, catch_up=catch_up, grace=grace)
    if not changes:
        raise UnusableInput("Give at least one option to change (`mani schedules edit --help`).")
    with session_scope() as session:
        schedule = edit_schedule(session=session, ref=ref, changes=changes, actor=who(), source="cli")
    emit(schedule, as_json=as_json, human=lambda: typer.echo(
        f"schedule {schedule.id}: {_summary(schedule)}, next run {iso(schedule.next_run_at) or '- (paused)'}"))


@schedules_app.command("list")
@handles_errors
def schedules_list(
    company: Annotated[Optional[str], typer.Option("--company", help="Only this company's schedules.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Every schedule with its next run, its last run and that run's job status."""
    with session_scope(read_only=True) as session:
        schedules = list_schedules(session=session, company_id=company)
    emit(schedules, as_json=as_json, human=lambda: table(
        ["ID", "NAME", "TYPE", "COMPANY", "WHEN", "NEXT RUN", "LAST RUN", "JOB"],
        [[s.id, s.name, s.job_type, s.company_id, _summary(s), iso(s.next_run_at) or "paused",
          (f"{iso(s.last_run.scheduled_for)} {s.last_run.status}" if s.last_run else "-"),
          (f"{s.last_run.job_id} {s.last_run.job_status}" if s.last_run and s.last_run.job_id else "")]
         for s in schedules],
        no_wrap=("ID", "NEXT RUN"),
    ))


@schedules_app.command("show")
@handles_errors
def schedules_show(ref: ScheduleRef, as_json: JsonOption = False) -> None:
    """A schedule with last_run_at, next_run_at and its last runs with their job ids."""
    with session_scope(read_only=True) as session:
        schedule = get_schedule(session=session, ref=ref)
    emit(schedule, as_json=as_json, human=lambda: _show(schedule))


@schedules_app.command("pause")
@handles_errors
def schedules_pause(ref: ScheduleRef, as_json: JsonOption = False) -> None:
    """Stop running it until `resume`."""
    with session_scope() as session:
        schedule = pause_schedule(session=session, ref=ref, actor=who(), source="cli")
    emit(schedule, as_json=as_json, human=lambda: typer.echo(f"paused schedule {schedule.id}"))


@schedules_app.command("resume")
@handles_errors
def schedules_resume(ref: ScheduleRef, as_json: JsonOption = False) -> None:
    """Run it again from its next occurrence; the next window starts where the last one ended."""
    with session_scope() as session:
        schedule = resume_schedule(session=session, ref=ref, actor=who(), source="cli")
    emit(schedule, as_json=as_json, human=lambda: typer.echo(
        f"resumed schedule {schedule.id}: next run {iso(schedule.next_run_at)}"))


@schedules_app.command("remove")
@handles_errors
def schedules_remove(ref: ScheduleRef, as_json: JsonOption = False) -> None:
    """Delete a schedule and its run records; the jobs it made stay."""
    with session_scope() as session:
        removed = remove_schedule(session=session, ref=ref, actor=who(), source="cli")
    emit({"id": removed, "removed": True}, as_json=as_json, human=lambda: typer.echo(f"removed schedule {removed}"))


@schedules_app.command("run")
@handles_errors
def schedules_run(ref: ScheduleRef, as_json: JsonOption = False) -> None:
    """Run it now, outside the schedule: its window runs to now, and the next scheduled run starts
    there. Exit 1 when the run failed (the reason is printed)."""
    with session_scope() as session:
        run_id = add_manual_run(session=session, ref=ref, actor=who(), source="cli")
    outcome = execute_run(run_id=run_id, actor=who(), source="cli")
    if outcome.followups:
        enqueue_after_commit(outcome.followups)
    result = {"run_id": run_id, "status": str(outcome.status) if outcome.status else None,
              "job_id": outcome.job_id, "error": outcome.error}

    def human() -> None:
        if outcome.job_id:
            typer.echo(f"run {run_id}: job {outcome.job_id} created")
        else:
            typer.echo(f"run {run_id}: {outcome.status}" + (f" ({outcome.error})" if outcome.error else ""))

    emit(result, as_json=as_json, human=human)
    if outcome.status in ("failed", "retrying"):
        raise typer.Exit(1)


@schedules_app.command("next")
@handles_errors
def schedules_next(
    ref: ScheduleRef,
    count: Annotated[int, typer.Option("--count", help="How many run times.")] = 5,
    as_json: JsonOption = False,
) -> None:
    """The next run times, ISO 8601 with their offset (counted from the start when it is later)."""
    with session_scope(read_only=True) as session:
        schedule = get_schedule(session=session, ref=ref, runs=0)
        times = next_run_times(session=session, ref=ref, count=count)
    zone = ZoneInfo(schedule.timezone)
    local = [moment.astimezone(zone).isoformat() for moment in times]
    emit(local, as_json=as_json, human=lambda: typer.echo("\n".join(local)))
