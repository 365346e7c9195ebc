"""Admin actions on jobs: retry, pause, resume, cancel. Each writes an audit entry.

They change the store only and return the `Followups` to enqueue: the caller commits, then
hands them to `actors.enqueue.enqueue_after_commit`; the sweeper covers a broker that is down.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select, update
from sqlmodel import Session

from backend.core.audit import record
from backend.core.errors import InvalidTransition, NotFound
from backend.core.followups import Followups
from backend.jobs.job_queries import get_job
from models import (
    BATCH_FINAL,
    JOB_FINAL,
    Batch,
    BatchStatus,
    Job,
    JobStatus,
    Recipient,
    RecipientStatus,
    utcnow,
)

RECIPIENTS = Recipient.__table__
BATCHES = Batch.__table__
RETRYABLE = [RecipientStatus.FAILED, RecipientStatus.PERMANENTLY_FAILED]
PAUSABLE = {JobStatus.PENDING, JobStatus.QUEUED, JobStatus.PROCESSING, JobStatus.RETRY_PENDING}


@dataclass(slots=True)
class ActionResult:
    job: Job
    count: int = 0
    followups: Followups = field(default_factory=Followups)


def retry_job(
    *,
    session: Session,
    job_ref: str | int,
    email: str | None = None,
    recipient_ids: list[int] | None = None,
    actor: str,
    source: str,
) -> ActionResult:
    """Put failed and permanently failed recipients back to `retry_pending`, attempts reset."""
    job = get_job(session=session, job_ref=job_ref)
    if job.status in (JobStatus.CANCELLED, JobStatus.PAUSED):
        raise InvalidTransition(f"job {job.id} is {job.status}: {'resume' if job.status == JobStatus.PAUSED else 'it cannot be retried'} first")
    conditions = [RECIPIENTS.c.job_id == job.id, RECIPIENTS.c.status.in_(RETRYABLE)]
    if email:
        norm = email.strip().lower()
        exists = session.execute(
            select(RECIPIENTS.c.status).where(RECIPIENTS.c.job_id == job.id, RECIPIENTS.c.email_norm == norm)
        ).scalar_one_or_none()
        if exists is None:
            raise NotFound(f"job {job.id} has no recipient {email}")
        if exists not in RETRYABLE:
            raise InvalidTransition(f"{email} is {exists}, not failed: nothing to retry")
        conditions.append(RECIPIENTS.c.email_norm == norm)
    if recipient_ids:
        conditions.append(RECIPIENTS.c.id.in_(recipient_ids))
    now = utcnow()
    touched = list(session.execute(
        update(RECIPIENTS)
        .where(*conditions)
        .values(status=RecipientStatus.RETRY_PENDING, attempts=0, next_attempt_at=None, updated_at=now)
        .returning(RECIPIENTS.c.batch_id)
    ).scalars())
    count, batch_ids = len(touched), sorted(set(touched) - {None})
    if count == 0:
        raise InvalidTransition(f"job {job.id} has no failed recipients to retry")
    session.execute(
        update(BATCHES)
        .where(BATCHES.c.id.in_(batch_ids), BATCHES.c.status.in_(list(BATCH_FINAL) + [BatchStatus.RETRY_PENDING]))
        # No `enqueued_at`: the caller's enqueue stamps it, or the sweeper sends it at once.
        .values(status=BatchStatus.RETRY_PENDING, next_attempt_at=now, finished_at=None, enqueued_at=None)
    )
    job.failed_count = max(0, job.failed_count - count)
    if job.status in JOB_FINAL:
        job.status = JobStatus.RETRY_PENDING
        job.finished_at = None
    job.updated_at = now
    session.add(job)
    record(session=session, actor=actor, source=source, action="job.retry", target=job.uuid,
           details={"recipients": count, "email": email, "recipient_ids": recipient_ids})
    return ActionResult(job=job, count=count, followups=Followups(batch_ids=batch_ids))


def pause_job(*, session: Session, job_ref: str | int, actor: str, source: str) -> ActionResult:
    job = get_job(session=session, job_ref=job_ref)
    if job.status not in PAUSABLE:
        raise InvalidTransition(f"job {job.id} is {job.status}: only a waiting or running job can be paused")
    job.status, job.updated_at = JobStatus.PAUSED, utcnow()
    session.add(job)
    record(session=session, actor=actor, source=source, action="job.pause", target=job.uuid)
    return ActionResult(job=job, count=_open_count(session, job.id))


def resume_job(*, session: Session, job_ref: str | int, actor: str, source: str) -> ActionResult:
    job = get_job(session=session, job_ref=job_ref)
    if job.status != JobStatus.PAUSED:
        raise InvalidTransition(f"job {job.id} is {job.status}, not paused")
    now = utcnow()
    was_dispatched = job.route is not None
    job.status = JobStatus.PROCESSING if job.started_at else (JobStatus.QUEUED if was_dispatched else JobStatus.PENDING)
    job.updated_at = now
    session.add(job)
    batch_ids = list(session.execute(
        update(BATCHES)
        .where(BATCHES.c.job_id == job.id, BATCHES.c.status.in_([BatchStatus.QUEUED, BatchStatus.RETRY_PENDING]))
        .values(enqueued_at=None)
        .returning(BATCHES.c.id)
    ).scalars()) if was_dispatched else []
    record(session=session, actor=actor, source=source, action="job.resume", target=job.uuid)
    followups = Followups(batch_ids=sorted(batch_ids)) if was_dispatched else Followups(dispatch_job_ids=[job.id])
    return ActionResult(job=job, count=_open_count(session, job.id), followups=followups)


def cancel_job(*, session: Session, job_ref: str | int, actor: str, source: str) -> ActionResult:
    """Stop a job for good: recipients not yet sent end `cancelled`."""
    job = get_job(session=session, job_ref=job_ref)
    if job.status in JOB_FINAL:
        raise InvalidTransition(f"job {job.id} is already {job.status}")
    now = utcnow()
    count = session.execute(
        update(RECIPIENTS)
        .where(RECIPIENTS.c.job_id == job.id,
               RECIPIENTS.c.status.in_([RecipientStatus.PENDING, RecipientStatus.RETRY_PENDING, RecipientStatus.FAILED]))
        .values(status=RecipientStatus.CANCELLED, secret=None, updated_at=now)
    ).rowcount
    # Batches a worker holds right now are closed by that worker when its current chunk ends.
    session.execute(
        update(BATCHES)
        .where(BATCHES.c.job_id == job.id, BATCHES.c.status.in_([BatchStatus.QUEUED, BatchStatus.RETRY_PENDING]))
        .values(status=BatchStatus.CANCELLED, finished_at=now)
    )
    job.status, job.finished_at, job.updated_at = JobStatus.CANCELLED, now, now
    session.add(job)
    record(session=session, actor=actor, source=source, action="job.cancel", target=job.uuid, details={"recipients": count})
    session.flush()
    from backend.moodle import callbacks

    return ActionResult(job=job, count=count,
                        followups=Followups(callback_ids=callbacks.on_job_finished(session=session, job=job)))


def _open_count(session: Session, job_id: int) -> int:
    from sqlalchemy import func

    return session.execute(
        select(func.count()).where(
            RECIPIENTS.c.job_id == job_id,
            RECIPIENTS.c.status.in_([RecipientStatus.PENDING, RecipientStatus.PROCESSING, RecipientStatus.RETRY_PENDING]),
        )
    ).scalar_one()
