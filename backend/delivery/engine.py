"""The job engine: dispatch a job into batches, send a batch, finish a job.

A batch is *claimed* with a conditional UPDATE and a lease before anything is sent, so a
duplicate or redelivered message is a no-op, and a worker that dies leaves a lease that runs
out. Results are written every `commit_every` sends in one short transaction (one statement
per outcome, never one commit per recipient), which is also what bounds the duplicates a crash
can cause: at most the sends since the dead worker's last commit, per worker thread.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import and_, bindparam, case, exists, func, or_, select, update
from sqlmodel import Session

from backend.core.followups import Followups
from backend.core.settings import Settings, get_settings
from backend.delivery import circuit, routing
from backend.moodle import callbacks
from models import (
    BATCH_FINAL,
    JOB_FINAL,
    JOB_RUNNING,
    RECIPIENT_DELIVERED,
    RECIPIENT_OPEN,
    Batch,
    BatchStatus,
    Job,
    JobStatus,
    Recipient,
    RecipientStatus,
    utcnow,
)
from models.db import session_scope

log = logging.getLogger(__name__)

BATCHES = Batch.__table__
RECIPIENTS = Recipient.__table__
JOBS = Job.__table__
OPEN_RECIPIENT = sorted(RECIPIENT_OPEN)
SessionFactory = Callable[[], AbstractContextManager[Session]]


def lock_job(*, session: Session, job_id: int) -> Job | None:
    """The job row, locked on PostgreSQL so that settling and finishing a job serialize."""
    return session.execute(select(Job).where(Job.id == job_id).with_for_update()).scalar_one_or_none()


# --- dispatch -----------------------------------------------------------------------------------


def count_dispatch_attempt(*, session: Session, job_id: int) -> int | None:
    """Record one more run of the dispatch actor, in its own transaction; None if not pending."""
    return session.execute(
        update(JOBS)
        .where(JOBS.c.id == job_id, JOBS.c.status == JobStatus.PENDING)
        .values(dispatch_attempts=JOBS.c.dispatch_attempts + 1)
        .returning(JOBS.c.dispatch_attempts)
    ).scalar_one_or_none()


def dispatch_job(*, session: Session, job_id: int, settings: Settings | None = None) -> Followups:
    """Route a stored job and hand out its batches. Idempotent: only a `pending` job moves."""
    settings = settings or get_settings()
    job = lock_job(session=session, job_id=job_id)
    if job is None or job.status != JobStatus.PENDING:
        return Followups()
    if job.dispatch_attempts > settings.max_batch_attempts:
        fail_job(session=session, job=job, reason=f"the job could not be dispatched in {job.dispatch_attempts - 1} runs")
        return Followups(callback_ids=_job_finished_callbacks(session=session, job=job))
    try:
        route = routing.choose_route(session=session, job=job)
    except routing.RouteUnavailable as unavailable:
        fail_job(session=session, job=job, reason=str(unavailable))
        return Followups(callback_ids=_job_finished_callbacks(session=session, job=job))
    now = utcnow()
    job.route, job.provider, job.route_reason = route.route, route.provider, route.reason
    job.status = JobStatus.QUEUED
    job.enqueued_at = job.enqueued_at or now
    job.updated_at = now
    session.add(job)
    batch_ids = list(
        session.execute(
            update(BATCHES)
            .where(BATCHES.c.job_id == job_id, BATCHES.c.status == BatchStatus.QUEUED)
            .values(enqueued_at=now)
            .returning(BATCHES.c.id)
        ).scalars()
    )
    return Followups(batch_ids=sorted(batch_ids))


def mark_jobs_enqueued(*, session: Session, job_ids: list[int]) -> None:
    """Stamp `enqueued_at` on jobs whose dispatch message the broker took (the sweeper waits for it)."""
    session.execute(update(JOBS).where(JOBS.c.id.in_(job_ids)).values(enqueued_at=utcnow()))


def fail_job(*, session: Session, job: Job, reason: str) -> None:
    """The job cannot run at all: every open recipient fails permanently with the reason."""
    now = utcnow()
    session.execute(
        update(RECIPIENTS)
        .where(RECIPIENTS.c.job_id == job.id, RECIPIENTS.c.status.in_(OPEN_RECIPIENT))
        .values(status=RecipientStatus.PERMANENTLY_FAILED, last_error=reason, secret=None, updated_at=now)
    )
    session.execute(
        update(BATCHES)
        .where(BATCHES.c.job_id == job.id, BATCHES.c.status.not_in(sorted(BATCH_FINAL)))
        .values(status=BatchStatus.FAILED, last_error=reason, finished_at=now, failed_count=BATCHES.c.size)
    )
    job.status = JobStatus.FAILED
    job.error = reason
    job.failed_count = job.total
    job.finished_at = job.updated_at = now
    session.add(job)


# --- claim --------------------------------------------------------------------------------------


@dataclass(slots=True)
class Claim:
    job: Job
    batch: Batch
    rows: list[dict]


def claim_batch(*, session: Session, batch_id: int, settings: Settings) -> Claim | Followups | None:
    """Take the batch under a lease and mark its due recipients `processing`.

    None: someone else holds it, it is finished, it is not due (a duplicate message), or its
    job is not running (paused). Followups: the batch was put back to sleep (its route is down),
    or settled without sending (cancelled, given up on, the outage lasted too long).
    """
    now = utcnow()
    head = session.execute(
        select(BATCHES.c.job_id, BATCHES.c.status, BATCHES.c.lease_until, BATCHES.c.next_attempt_at)
        .where(BATCHES.c.id == batch_id)
    ).first()
    if head is None:
        return None
    job = session.get(Job, head.job_id, populate_existing=True)
    is_due = head.next_attempt_at is None or head.next_attempt_at <= now + timedelta(seconds=1)
    if head.status in (BatchStatus.QUEUED, BatchStatus.RETRY_PENDING) and is_due and job.status in JOB_RUNNING:
        wait = circuit.gate(session=session, key=circuit.route_key(job), settings=settings, now=now)
        if wait is not None and wait.expired:
            return fail_for_outage(session=session, job_id=job.id, wait=wait, settings=settings)
        if wait is not None:
            return defer_batch(session=session, batch_id=batch_id, until=wait.until)
    lease_until = now + timedelta(seconds=settings.batch_lease_seconds)
    taken_over = and_(BATCHES.c.status == BatchStatus.PROCESSING, BATCHES.c.lease_until < now)
    claimable = or_(BATCHES.c.status.in_([BatchStatus.QUEUED, BatchStatus.RETRY_PENDING]), taken_over)
    due = or_(BATCHES.c.next_attempt_at.is_(None), BATCHES.c.next_attempt_at <= now + timedelta(seconds=1))
    # The job's state is checked in the claiming statement itself: a pause or cancel that
    # committed a moment ago is never overwritten by a claim that read the job before it.
    job_runs = exists().where(JOBS.c.id == BATCHES.c.job_id, JOBS.c.status.in_(sorted(JOB_RUNNING)))
    result = session.execute(
        update(BATCHES)
        .where(BATCHES.c.id == batch_id, claimable, due, job_runs)
        .values(
            status=BatchStatus.PROCESSING,
            attempts=BATCHES.c.attempts + 1,
            # A claim that takes over from a dead or crashed run counts towards giving up.
            recoveries=BATCHES.c.recoveries + case((taken_over, 1), else_=0),
            lease_until=lease_until,
            started_at=func.coalesce(BATCHES.c.started_at, now),
            next_attempt_at=None,
        )
    )
    if result.rowcount != 1:
        job = session.get(Job, head.job_id, populate_existing=True)
        dead_run = head.status == BatchStatus.PROCESSING and head.lease_until is not None and head.lease_until < now
        if job.status in JOB_FINAL and dead_run:
            return settle_batch(session=session, batch_id=batch_id)  # a cancelled job's batch a dead worker held
        return None
    batch = session.get(Batch, batch_id, populate_existing=True)
    if batch.recoveries >= settings.max_batch_attempts:
        reason = f"batch {batch.number} given up after {batch.recoveries} failed runs: {batch.last_error or 'worker lost'}"
        session.execute(
            update(RECIPIENTS)
            .where(RECIPIENTS.c.batch_id == batch_id, RECIPIENTS.c.status.in_(OPEN_RECIPIENT))
            .values(status=RecipientStatus.PERMANENTLY_FAILED, last_error=reason, secret=None, updated_at=now)
        )
        return settle_batch(session=session, batch_id=batch_id)
    session.execute(
        update(JOBS)
        .where(JOBS.c.id == job.id, JOBS.c.status.in_([JobStatus.QUEUED, JobStatus.RETRY_PENDING]))
        .values(status=JobStatus.PROCESSING, started_at=func.coalesce(JOBS.c.started_at, now), updated_at=now)
    )
    # The due rows, read, not yet marked: `mark_sending` takes each chunk just before it goes.
    # `processing` rows in a batch we just claimed are a dead run's leftovers: due as well.
    due_row = or_(
        and_(
            RECIPIENTS.c.status.in_([RecipientStatus.PENDING, RecipientStatus.RETRY_PENDING]),
            or_(RECIPIENTS.c.next_attempt_at.is_(None), RECIPIENTS.c.next_attempt_at <= now),
        ),
        RECIPIENTS.c.status == RecipientStatus.PROCESSING,
    )
    rows = [
        dict(row._mapping)
        for row in session.execute(
            select(RECIPIENTS).where(RECIPIENTS.c.batch_id == batch_id, due_row).order_by(RECIPIENTS.c.id)
        )
    ]
    return Claim(job=job, batch=batch, rows=rows)


SENDABLE = [RecipientStatus.PENDING, RecipientStatus.RETRY_PENDING, RecipientStatus.PROCESSING]


def mark_sending(*, session: Session, batch_id: int, ids: list[int]) -> set[int]:
    """Mark one chunk `processing` just before it is sent; the ids still open (a cancel may have
    ended some since the claim: those are not sent)."""
    if not ids:
        return set()
    return set(session.execute(
        update(RECIPIENTS)
        .where(RECIPIENTS.c.batch_id == batch_id, RECIPIENTS.c.id.in_(ids), RECIPIENTS.c.status.in_(SENDABLE))
        .values(status=RecipientStatus.PROCESSING, updated_at=utcnow())
        .returning(RECIPIENTS.c.id)
    ).scalars())


def defer_batch(*, session: Session, batch_id: int, until) -> Followups:
    """Put a waiting batch back to sleep until `until` without claiming it: no attempt is counted."""
    now = utcnow()
    session.execute(
        update(BATCHES)
        .where(BATCHES.c.id == batch_id, BATCHES.c.status.in_([BatchStatus.QUEUED, BatchStatus.RETRY_PENDING]))
        .values(next_attempt_at=until, enqueued_at=now)
    )
    return Followups(delayed_batches=[(batch_id, max(0.0, (until - now).total_seconds()))])


def fail_for_outage(*, session: Session, job_id: int, wait: circuit.Wait, settings: Settings) -> Followups:
    """The job's provider has been down longer than `max_outage_hours`: fail the job with the reason."""
    job = lock_job(session=session, job_id=job_id)
    if job is None or job.status in JOB_FINAL or job.status == JobStatus.PAUSED:
        return Followups()
    fail_job(session=session, job=job, reason=circuit.outage_reason(job=job, wait=wait, settings=settings))
    session.flush()
    return Followups(callback_ids=_job_finished_callbacks(session=session, job=job))


# --- record -------------------------------------------------------------------------------------


@dataclass(slots=True)
class Outcomes:
    """One chunk's results, grouped by what gets written."""

    sent: list[dict] = field(default_factory=list)
    retry: list[dict] = field(default_factory=list)
    permanent: list[dict] = field(default_factory=list)
    throttled: list[dict] = field(default_factory=list)
    # The provider was down for everyone: back to waiting, no attempt counted (circuit opens).
    unavailable: list[dict] = field(default_factory=list)


def record_outcomes(
    *, session: Session, job_id: int, batch_id: int, outcomes: Outcomes, settings: Settings,
    circuit_key: str | None = None,
) -> str:
    """Write one chunk's results and renew the lease; returns the job's current status.

    A chunk that sent something closes the route's circuit (`circuit_key`): it is up again."""
    now = utcnow()
    guard = and_(RECIPIENTS.c.id == bindparam("rid"), RECIPIENTS.c.status == RecipientStatus.PROCESSING)
    sent = failed = 0
    if outcomes.sent:
        sent = _executemany(session, update(RECIPIENTS).where(guard).values(
            status=RecipientStatus.SENT, sent_at=now, attempts=RECIPIENTS.c.attempts + 1,
            external_id=bindparam("ext"), last_error=None, next_attempt_at=None, secret=None, updated_at=now,
        ), outcomes.sent)
    if outcomes.retry:
        _executemany(session, update(RECIPIENTS).where(guard).values(
            status=RecipientStatus.RETRY_PENDING, attempts=RECIPIENTS.c.attempts + 1,
            last_error=bindparam("err"), next_attempt_at=bindparam("nxt"), updated_at=now,
        ), outcomes.retry)
    if outcomes.permanent:
        failed = _executemany(session, update(RECIPIENTS).where(guard).values(
            status=RecipientStatus.PERMANENTLY_FAILED, attempts=RECIPIENTS.c.attempts + 1,
            last_error=bindparam("err"), next_attempt_at=None, secret=None, updated_at=now,
        ), outcomes.permanent)
    if outcomes.throttled:
        # Throttling is the provider pacing us, not the recipient failing: no attempt is used.
        _executemany(session, update(RECIPIENTS).where(guard).values(
            status=RecipientStatus.RETRY_PENDING, last_error=bindparam("err"),
            next_attempt_at=bindparam("nxt"), updated_at=now,
        ), outcomes.throttled)
    if outcomes.unavailable:
        _executemany(session, update(RECIPIENTS).where(guard).values(
            status=RecipientStatus.PENDING, last_error=bindparam("err"), next_attempt_at=None, updated_at=now,
        ), outcomes.unavailable)
    if sent and circuit_key:
        circuit.close(session=session, key=circuit_key)
    session.execute(
        update(BATCHES)
        .where(BATCHES.c.id == batch_id)
        .values(
            lease_until=now + timedelta(seconds=settings.batch_lease_seconds),
            sent_count=BATCHES.c.sent_count + sent,
            failed_count=BATCHES.c.failed_count + failed,
        )
    )
    values: dict = {"updated_at": now}
    if sent or failed:
        values.update(
            sent_count=JOBS.c.sent_count + sent, failed_count=JOBS.c.failed_count + failed, last_progress_at=now
        )
    return session.execute(
        update(JOBS).where(JOBS.c.id == job_id).values(**values).returning(JOBS.c.status)
    ).scalar_one()


def _executemany(session: Session, statement, params: list[dict]) -> int:
    result = session.execute(statement, params)
    return result.rowcount if result.rowcount is not None and result.rowcount >= 0 else len(params)


def release_after_error(*, batch_id: int, error: str, sessions: SessionFactory = session_scope) -> None:
    """After an unexpected error, let the next run claim the batch at once (it counts as a recovery)."""
    with sessions() as session:
        session.execute(
            update(BATCHES)
            .where(BATCHES.c.id == batch_id, BATCHES.c.status == BatchStatus.PROCESSING)
            .values(lease_until=utcnow() - timedelta(seconds=1), last_error=error[:2000])
        )


# --- settle and finish --------------------------------------------------------------------------


def settle_batch(*, session: Session, batch_id: int, not_before=None) -> Followups:
    """After a run: put the batch to sleep until its next retry (not before `not_before`: an open
    circuit, a rate limit), or close it."""
    now = utcnow()
    batch = session.get(Batch, batch_id, populate_existing=True)
    job = lock_job(session=session, job_id=batch.job_id)
    stopped_status = RecipientStatus.CANCELLED if job.status == JobStatus.CANCELLED else RecipientStatus.PENDING
    # Recipients still `processing` were not reached in this run (pause, cancel, throttling).
    session.execute(
        update(RECIPIENTS)
        .where(RECIPIENTS.c.batch_id == batch_id, RECIPIENTS.c.status == RecipientStatus.PROCESSING)
        .values(status=stopped_status, updated_at=now, **({"secret": None} if stopped_status == RecipientStatus.CANCELLED else {}))
    )
    if job.status == JobStatus.CANCELLED:
        session.execute(
            update(RECIPIENTS)
            .where(RECIPIENTS.c.batch_id == batch_id, RECIPIENTS.c.status.in_(OPEN_RECIPIENT))
            .values(status=RecipientStatus.CANCELLED, secret=None, updated_at=now)
        )
    counts = dict(
        session.execute(
            select(RECIPIENTS.c.status, func.count()).where(RECIPIENTS.c.batch_id == batch_id).group_by(RECIPIENTS.c.status)
        ).all()
    )
    batch.sent_count = sum(counts.get(s, 0) for s in RECIPIENT_DELIVERED)
    batch.failed_count = counts.get(RecipientStatus.PERMANENTLY_FAILED, 0)
    batch.lease_until = None
    followups = Followups()
    waiting = sum(counts.get(s, 0) for s in OPEN_RECIPIENT)
    if waiting and job.status == JobStatus.PAUSED:
        batch.status = BatchStatus.QUEUED
    elif waiting:
        next_at = session.execute(
            select(func.min(RECIPIENTS.c.next_attempt_at)).where(
                RECIPIENTS.c.batch_id == batch_id, RECIPIENTS.c.status.in_(OPEN_RECIPIENT)
            )
        ).scalar_one()
        next_at = next_at or now
        if not_before is not None and not_before > next_at:
            next_at = not_before
        batch.status = BatchStatus.RETRY_PENDING
        batch.next_attempt_at = next_at
        batch.enqueued_at = now
        followups.delayed_batches.append((batch_id, max(0.0, (next_at - now).total_seconds())))
    else:
        if job.status == JobStatus.CANCELLED:
            batch.status = BatchStatus.CANCELLED
        elif batch.failed_count == 0:
            batch.status = BatchStatus.COMPLETED
        elif batch.sent_count:
            batch.status = BatchStatus.PARTIAL_FAILURE
        else:
            batch.status = BatchStatus.FAILED
        batch.finished_at = now
        followups.callback_ids += _batch_finished_callbacks(session=session, batch=batch)
    session.add(batch)
    session.flush()
    if batch.status in BATCH_FINAL and job.status not in JOB_FINAL and _open_batches(session=session, job_id=job.id) == 0:
        followups.finish_job_ids.append(job.id)
    return followups


def _open_batches(*, session: Session, job_id: int) -> int:
    return session.execute(
        select(func.count()).where(BATCHES.c.job_id == job_id, BATCHES.c.status.not_in(sorted(BATCH_FINAL)))
    ).scalar_one()


def recipient_counts(*, session: Session, job_id: int) -> dict[str, int]:
    rows = session.execute(
        select(RECIPIENTS.c.status, func.count()).where(RECIPIENTS.c.job_id == job_id).group_by(RECIPIENTS.c.status)
    )
    return {status: count for status, count in rows}


def finish_job(*, session: Session, job_id: int) -> Followups:
    """Close a job whose batches are all final. Idempotent: a final job is left alone."""
    job = lock_job(session=session, job_id=job_id)
    if job is None or job.status in JOB_FINAL or job.status == JobStatus.PAUSED:
        return Followups()
    if _open_batches(session=session, job_id=job_id):
        return Followups()
    counts = recipient_counts(session=session, job_id=job_id)
    sent = sum(counts.get(s, 0) for s in RECIPIENT_DELIVERED)
    failed = counts.get(RecipientStatus.PERMANENTLY_FAILED, 0)
    job.sent_count, job.failed_count = sent, failed
    if failed == 0:
        job.status = JobStatus.COMPLETED
    elif sent:
        job.status = JobStatus.PARTIAL_FAILURE
    else:
        job.status = JobStatus.FAILED
    job.finished_at = job.updated_at = utcnow()
    session.add(job)
    session.flush()
    return Followups(callback_ids=_job_finished_callbacks(session=session, job=job))


def _batch_finished_callbacks(*, session: Session, batch: Batch) -> list[int]:
    return callbacks.on_batch_finished(session=session, batch=batch)


def _job_finished_callbacks(*, session: Session, job: Job) -> list[int]:
    return callbacks.on_job_finished(session=session, job=job)
