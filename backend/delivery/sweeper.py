"""The sweeper finds work whose broker message is missing and asks for it again.

It runs beside every `mani worker` (`actors.middleware.SweeperMiddleware`) every few seconds, on
every host, and returns what to send as `Followups`. Each step is a conditional UPDATE
that also stamps `enqueued_at`, so several sweepers do not pile up messages, and any message
they do duplicate is harmless: batches are claimed, jobs dispatched and finished idempotently.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import and_, exists, or_, select, update
from sqlmodel import Session

from backend.core.followups import Followups
from backend.core.settings import Settings
from backend.moodle import callbacks
from models import BATCH_FINAL, JOB_RUNNING, Batch, BatchStatus, Job, JobStatus, utcnow

BATCHES = Batch.__table__
JOBS = Job.__table__
# A job stored this recently is still being enqueued by the process that created it.
FRESH_JOB_SECONDS = 2
# How late a delayed retry message may be before the sweeper assumes it was lost.
LATE_RETRY_SECONDS = 30
# With the broker's view: how long after its message was sent a batch may still be missing from
# the broker (the message goes out after the commit that stamped it).
IN_TRANSIT_SECONDS = 5


def sweep(*, session: Session, settings: Settings, send_queue_empty: bool | None = None,
          held: dict[str, set[int]] | None = None) -> Followups:
    """What needs a message again.

    `held` is the broker's own view (`actors.broker.held_messages`: actor name -> ids its
    messages carry, a dead worker's fetched messages left out). With it, a waiting batch or job
    whose message is not held is lost and sent again within seconds: after a worker's SIGKILL,
    after Redis restarted empty. Without it (the embedded broker), `requeue_after_seconds`
    decides; `send_queue_empty=False` then means a queued batch is most likely waiting its turn.
    """
    if held is not None:
        return _sweep_with_view(session=session, settings=settings, held=held)
    now = utcnow()
    stale = now - timedelta(seconds=settings.requeue_after_seconds)
    result = Followups()
    result.dispatch_job_ids = _stamp(session, JOBS, and_(
        JOBS.c.status == JobStatus.PENDING,
        or_(
            and_(JOBS.c.enqueued_at.is_(None), JOBS.c.created_at < now - timedelta(seconds=FRESH_JOB_SECONDS)),
            JOBS.c.enqueued_at < stale,
        ),
    ), now)
    running_job = JOBS.c.status.in_(sorted(JOB_RUNNING))
    job_is_running = exists().where(JOBS.c.id == BATCHES.c.job_id, running_job)
    lease = timedelta(seconds=settings.batch_lease_seconds)
    late = timedelta(seconds=min(LATE_RETRY_SECONDS, settings.requeue_after_seconds))
    lost_queued = and_(
        BATCHES.c.status == BatchStatus.QUEUED,
        or_(BATCHES.c.enqueued_at.is_(None), BATCHES.c.enqueued_at < stale)
        if send_queue_empty is not False
        else BATCHES.c.enqueued_at.is_(None),
    )
    dead_holder = and_(
        BATCHES.c.status == BatchStatus.PROCESSING,
        BATCHES.c.lease_until < now,
        or_(BATCHES.c.enqueued_at.is_(None), BATCHES.c.enqueued_at < now - lease),
    )
    # A retry nobody enqueued (an admin's retry while the broker was down, or on the embedded
    # broker of another process) is due now; a delayed retry message is lost once well overdue.
    lost_retry = and_(
        BATCHES.c.status == BatchStatus.RETRY_PENDING,
        or_(
            BATCHES.c.enqueued_at.is_(None),
            and_(BATCHES.c.next_attempt_at < now - late, BATCHES.c.enqueued_at < now - late),
        ),
    )
    result.batch_ids = _stamp(session, BATCHES, and_(job_is_running, or_(lost_queued, dead_holder, lost_retry)), now)
    open_batch = exists().where(BATCHES.c.job_id == JOBS.c.id, BATCHES.c.status.not_in(sorted(BATCH_FINAL)))
    result.finish_job_ids = list(
        session.execute(select(JOBS.c.id).where(running_job, ~open_batch)).scalars()
    )
    result.callback_ids = _due_callbacks(session=session, now=now)
    return result


def _sweep_with_view(*, session: Session, settings: Settings, held: dict[str, set[int]]) -> Followups:
    now = utcnow()
    sent_before = now - timedelta(seconds=IN_TRANSIT_SECONDS)
    result = Followups()
    pending_jobs = session.execute(select(JOBS.c.id).where(
        JOBS.c.status == JobStatus.PENDING,
        or_(and_(JOBS.c.enqueued_at.is_(None), JOBS.c.created_at < now - timedelta(seconds=FRESH_JOB_SECONDS)),
            JOBS.c.enqueued_at < sent_before),
    )).scalars()
    lost_jobs = sorted(set(pending_jobs) - held.get("dispatch_job", set()))
    if lost_jobs:
        result.dispatch_job_ids = _stamp(session, JOBS, and_(JOBS.c.id.in_(lost_jobs), JOBS.c.status == JobStatus.PENDING), now)
    running_job = JOBS.c.status.in_(sorted(JOB_RUNNING))
    job_is_running = exists().where(JOBS.c.id == BATCHES.c.job_id, running_job)
    waiting = BATCHES.c.status.in_([BatchStatus.QUEUED, BatchStatus.RETRY_PENDING])
    dead_holder = and_(BATCHES.c.status == BatchStatus.PROCESSING, BATCHES.c.lease_until < now,
                       BATCHES.c.handoff_at.is_(None))
    candidates = session.execute(select(BATCHES.c.id, BATCHES.c.next_attempt_at).where(
        job_is_running, waiting, or_(BATCHES.c.enqueued_at.is_(None), BATCHES.c.enqueued_at < sent_before),
    )).all()
    due_at = {batch_id: next_at for batch_id, next_at in candidates}
    lost = set(due_at) - held.get("send_batch", set())
    # A run whose lease ran out died (a live one renews it), or failed and waits for Dramatiq's
    # retry, whose backoff can reach minutes: it is sent again now, once per lease.
    lease = timedelta(seconds=settings.batch_lease_seconds)
    lost |= set(session.execute(select(BATCHES.c.id).where(
        job_is_running, dead_holder, or_(BATCHES.c.enqueued_at.is_(None), BATCHES.c.enqueued_at < now - lease),
    )).scalars())
    lost = sorted(lost)
    if lost:
        for batch_id in _stamp(session, BATCHES, and_(BATCHES.c.id.in_(lost), or_(waiting, dead_holder)), now):
            later = due_at.get(batch_id)
            if later is not None and later > now:  # a retry's delayed message: send it delayed again
                result.delayed_batches.append((batch_id, (later - now).total_seconds()))
            else:
                result.batch_ids.append(batch_id)
    open_batch = exists().where(BATCHES.c.job_id == JOBS.c.id, BATCHES.c.status.not_in(sorted(BATCH_FINAL)))
    result.finish_job_ids = list(session.execute(select(JOBS.c.id).where(running_job, ~open_batch)).scalars())
    result.callback_ids = _due_callbacks(session=session, now=now)
    return result


def _stamp(session: Session, table, condition, now) -> list[int]:
    return sorted(
        session.execute(update(table).where(condition).values(enqueued_at=now).returning(table.c.id)).scalars()
    )


def _due_callbacks(*, session: Session, now) -> list[int]:
    return list(callbacks.due_deliveries(session=session, now=now))
