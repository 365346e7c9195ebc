"""Firing schedules: claim what is due, then run each claimed occurrence into a job.

Every `mani worker`'s sweeper calls `claim_due` and `run_due` (actors.middleware). Exactly once,
on any number of hosts:

- **Claim.** A due schedule is claimed with a conditional UPDATE on `next_run_at` (as batches are
  claimed): only the process whose UPDATE still finds the `next_run_at` it read moves it on and
  writes the runs, in the same transaction. The runs' unique (schedule, occurrence) is a second
  guard. With `catch_up=latest` a worker that was down gets one run, for the latest missed
  occurrence; with `all`, one run per missed occurrence.
- **Windows.** Each run gets its window when it is claimed: from one second after the previous
  window's end (`covered_until`) to its own occurrence, not to the moment it fires; so a late run
  covers exactly its window, and windows neither overlap nor leave a gap.
- **Run.** `execute_run` reads Moodle first (no store transaction open meanwhile), then, in one
  transaction, takes the run with a conditional UPDATE on its status and attempts, writes the job
  and marks the run: a second process finds the run taken and writes nothing.
- **Failure.** Moodle unreachable: the run is recorded as `retrying` with the reason and tried
  again after `RETRY_SECONDS` while the schedule's grace lasts (from the occurrence), then
  `failed`. Every outcome is written to the audit log.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import and_, insert, select, update
from sqlmodel import Session

from backend.core.audit import record
from backend.core.errors import ManiError
from backend.core.followups import Followups
from backend.core.settings import Settings, get_settings
from backend.jobs.moodle_source import NothingToSend, moodle_target, submit_moodle
from backend.moodle.source import MoodleUnreachable, get_company
from backend.schedules.definition import initial_since, recurrence_of, selection_options, window_for
from backend.schedules.queries import resolve_schedule_ref
from models import SCHEDULE_RUN_OPEN, Schedule, ScheduleRun, ScheduleRunStatus, utcnow
from models.db import session_scope

log = logging.getLogger(__name__)

SCHEDULES = Schedule.__table__
RUNS = ScheduleRun.__table__
# How long a failed run waits before it is tried again (while grace lasts).
RETRY_SECONDS = 60
# Missed occurrences a `catch_up=all` schedule makes runs for at most (the latest ones).
MAX_CATCH_UP = 100
# Runs one sweep takes on at most; the next sweep takes the rest.
RUNS_PER_SWEEP = 10
SYSTEM = "system"


@dataclass
class RunOutcome:
    run_id: int
    status: ScheduleRunStatus | None  # None: another process had the run
    job_id: int | None = None
    error: str | None = None
    followups: Followups = field(default_factory=Followups)


def claim_due(*, session: Session, now: datetime | None = None) -> list[int]:
    """Claim every due schedule (conditional UPDATE on `next_run_at`) and write its runs; the run ids."""
    now = now or utcnow()
    due = session.execute(
        select(SCHEDULES.c.id, SCHEDULES.c.next_run_at)
        .where(SCHEDULES.c.enabled.is_(True), SCHEDULES.c.next_run_at <= now)
        .order_by(SCHEDULES.c.next_run_at)
    ).all()
    run_ids: list[int] = []
    for schedule_id, next_run_at in due:
        run_ids += _claim_one(session=session, schedule_id=schedule_id, seen=next_run_at, now=now)
    return run_ids


def _claim_one(*, session: Session, schedule_id: int, seen: datetime, now: datetime) -> list[int]:
    schedule = session.get(Schedule, schedule_id)
    recurrence = recurrence_of(schedule)
    missed = [seen] + recurrence.between(after=seen, until=now, limit=MAX_CATCH_UP)
    occurrences = missed if schedule.catch_up == "all" else missed[-1:]
    following = recurrence.next_at_or_after(now + timedelta(microseconds=1))
    windows = []
    covered = schedule.covered_until
    first_since = initial_since(schedule, at=missed[0])
    if covered is None and first_since is not None:
        # The first window starts where the first occurrence's `--since` says, even when a
        # worker that was down runs only the latest occurrence: nobody in between is skipped.
        covered = first_since - 1
    for occurrence in occurrences:
        since, at = window_for(schedule, at=occurrence, covered_until=covered)
        windows.append((occurrence, since, at))
        if since is not None:
            covered = max(covered or at, at)
    claimed = session.execute(
        update(SCHEDULES)
        .where(SCHEDULES.c.id == schedule_id, SCHEDULES.c.next_run_at == seen, SCHEDULES.c.enabled.is_(True))
        .values(next_run_at=following, last_run_at=occurrences[-1], covered_until=covered, updated_at=now)
    ).rowcount
    if claimed != 1:
        return []  # another process claimed it first
    run_ids = [
        session.execute(insert(RUNS).values(
            schedule_id=schedule_id, scheduled_for=occurrence, manual=False, window_since=since, window_at=at,
            status=ScheduleRunStatus.PENDING.value, attempts=0, next_attempt_at=now, created_at=now,
        ).returning(RUNS.c.id)).scalar_one()
        for occurrence, since, at in windows
    ]
    record(session=session, actor=SYSTEM, source="worker", action="schedule.claim", target=f"schedule:{schedule_id}",
           details={"runs": run_ids, "occurrences": [o.isoformat() for o in occurrences],
                    "missed": len(missed), "catch_up": schedule.catch_up, "next_run_at": following.isoformat()})
    return run_ids


def add_manual_run(*, session: Session, ref: str | int, actor: str, source: str, now: datetime | None = None) -> int:
    """A run now, outside the schedule (`mani schedules run`): its window runs to now, and the
    next scheduled run starts where it ends."""
    now = (now or utcnow()).replace(microsecond=0)
    schedule = resolve_schedule_ref(session=session, ref=ref)
    since, at = window_for(schedule, at=now)
    run_id = session.execute(insert(RUNS).values(
        schedule_id=schedule.id, scheduled_for=now, manual=True, window_since=since, window_at=at,
        status=ScheduleRunStatus.PENDING.value, attempts=0, next_attempt_at=now, created_at=now,
    ).returning(RUNS.c.id)).scalar_one()
    if since is not None:
        schedule.covered_until = max(schedule.covered_until or at, at)
    schedule.last_run_at = now
    session.add(schedule)
    record(session=session, actor=actor, source=source, action="schedule.run_now", target=f"schedule:{schedule.id}",
           details={"run": run_id})
    session.flush()
    return run_id


def due_runs(*, session: Session, now: datetime | None = None, limit: int = RUNS_PER_SWEEP) -> list[int]:
    """Open runs whose time has come, oldest occurrence first; rows another process holds are skipped."""
    now = now or utcnow()
    return list(session.execute(
        select(RUNS.c.id)
        .where(RUNS.c.status.in_(sorted(SCHEDULE_RUN_OPEN)), RUNS.c.next_attempt_at <= now)
        .order_by(RUNS.c.scheduled_for, RUNS.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).scalars())


def execute_run(
    *, run_id: int, settings: Settings | None = None, now: datetime | None = None, actor: str = SYSTEM,
    source: str = "worker",
) -> RunOutcome:
    """Run one claimed occurrence into a job (see the module's docstring), through the same
    `moodle_target` and `submit_moodle` as `mani submit --moodle`. Commits its own transactions;
    the caller enqueues `followups` (the job's dispatch) after it returns."""
    settings = settings or get_settings()
    clock = (lambda: now) if now is not None else utcnow
    with session_scope() as session:
        run = session.get(ScheduleRun, run_id)
        if run is None or run.status not in SCHEDULE_RUN_OPEN or run.next_attempt_at > clock():
            return RunOutcome(run_id=run_id, status=None)
        schedule = session.get(Schedule, run.schedule_id)
        attempts = run.attempts
        session.expunge_all()
    try:
        if run.window_since is not None and run.window_since > run.window_at:
            # An earlier (manual) run already covered this occurrence's window.
            return _settle(run, attempts, ScheduleRunStatus.EMPTY, clock(), actor, source,
                           error="the window was already covered by an earlier run")
        with session_scope(read_only=True) as session:
            target = moodle_target(session=session, company=schedule.company_id, settings=settings)
        with target.open() as moodle:
            options = selection_options(schedule, since=run.window_since, at=run.window_at,
                                        iomad_company_id=target.iomad_company_id)
            # Reach Moodle before the store's transaction opens: an unreachable database then
            # holds no lock while it times out.
            get_company(source=moodle, company_id=target.iomad_company_id)
            return _write_job(run, attempts, schedule, moodle, target, options, settings, clock, actor, source)
    except MoodleUnreachable as error:
        return _failed(run, attempts, schedule, str(error), clock(), actor, source, retry=True)
    except ManiError as error:
        return _failed(run, attempts, schedule, str(error), clock(), actor, source, retry=False)
    except Exception as error:  # noqa: BLE001 - a bug or an outage: recorded, retried while grace lasts
        log.exception("schedule run %s failed", run_id)
        return _failed(run, attempts, schedule, f"{type(error).__name__}: {error}", clock(), actor, source, retry=True)


def _take(session: Session, run: ScheduleRun, attempts: int, values: dict) -> bool:
    """The conditional UPDATE that makes this process the one that settles the run."""
    return session.execute(
        update(RUNS).where(and_(RUNS.c.id == run.id, RUNS.c.status.in_(sorted(SCHEDULE_RUN_OPEN)),
                                RUNS.c.attempts == attempts))
        .values(attempts=attempts + 1, **values)
    ).rowcount == 1


def _write_job(run, attempts, schedule, moodle, target, options, settings, clock, actor, source) -> RunOutcome:
    try:
        with session_scope() as session:
            if not _take(session, run, attempts, {"status": ScheduleRunStatus.CREATED.value}):
                return RunOutcome(run_id=run.id, status=None)
            made = submit_moodle(
                session=session, source=moodle, target=target, options=options, action=schedule.action_type,
                cloud_preference=schedule.cloud_preference, created_by=f"schedule:{schedule.id}", settings=settings,
            )
            created, job_id = made.created, made.job.id
            session.execute(update(RUNS).where(RUNS.c.id == run.id).values(job_id=job_id, finished_at=clock(), error=None))
            _audit(session, run, schedule, ScheduleRunStatus.CREATED, actor, source, job_id=job_id,
                   recipients=created.accepted, skipped=created.skipped_duplicates, rejected=len(created.rejected),
                   already_certified=made.already_certified or None)
        return RunOutcome(run_id=run.id, status=ScheduleRunStatus.CREATED, job_id=job_id, followups=created.followups)
    except NothingToSend as nobody:
        # Nobody in the window (or every completion already certified): a normal outcome, not a failure.
        return _settle(run, attempts, ScheduleRunStatus.EMPTY, clock(), actor, source, error=str(nobody),
                       schedule=schedule)


def _settle(run, attempts, status, now, actor, source, *, error=None, schedule=None) -> RunOutcome:
    with session_scope() as session:
        if not _take(session, run, attempts, {"status": status.value, "error": error, "finished_at": now}):
            return RunOutcome(run_id=run.id, status=None)
        _audit(session, run, schedule, status, actor, source, error=error)
    return RunOutcome(run_id=run.id, status=status, error=error)


def _failed(run, attempts, schedule, reason, now, actor, source, *, retry: bool) -> RunOutcome:
    grace_ends = run.scheduled_for + timedelta(seconds=schedule.grace_seconds)
    next_attempt = now + timedelta(seconds=RETRY_SECONDS)
    if retry and next_attempt <= grace_ends:
        values = {"status": ScheduleRunStatus.RETRYING.value, "error": reason, "next_attempt_at": next_attempt}
        status = ScheduleRunStatus.RETRYING
    else:
        values = {"status": ScheduleRunStatus.FAILED.value, "error": reason, "finished_at": now}
        status = ScheduleRunStatus.FAILED
    with session_scope() as session:
        if not _take(session, run, attempts, values):
            return RunOutcome(run_id=run.id, status=None)
        _audit(session, run, schedule, status, actor, source, error=reason, attempt=attempts + 1)
    log.warning("schedule %s run %s %s: %s", schedule.id, run.id, status, reason)
    return RunOutcome(run_id=run.id, status=status, error=reason)


def _audit(session, run, schedule, status, actor, source, **details) -> None:
    schedule_id = schedule.id if schedule is not None else run.schedule_id
    record(session=session, actor=actor, source=source, action="schedule.run", target=f"schedule:{schedule_id}",
           details={"run": run.id, "status": str(status), "scheduled_for": run.scheduled_for.isoformat(),
                    "window_since": run.window_since, "window_at": run.window_at, "manual": run.manual,
                    **{k: v for k, v in details.items() if v is not None}})


def run_due(*, settings: Settings | None = None, now: datetime | None = None) -> list[RunOutcome]:
    """One pass, as the sweeper makes it: claim due schedules, then run the open runs that are due."""
    with session_scope() as session:
        claim_due(session=session, now=now)
    with session_scope() as session:
        run_ids = due_runs(session=session, now=now)
    return [execute_run(run_id=run_id, settings=settings, now=now) for run_id in run_ids]
