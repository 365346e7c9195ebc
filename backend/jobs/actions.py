"""Admin actions on jobs: retry, pause, resume, cancel. Each writes an audit entry.

They change the store only and return what happened (`ActionResultPublic`) with the
`Followups` to enqueue: the caller commits, then hands them to
`actors.enqueue.enqueue_after_commit`; the sweeper covers a broker that is down.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select, update
from sqlmodel import Session

from backend.core.audit import record
from backend.core.errors import InvalidTransition, NotFound
from backend.core.followups import Followups
from backend.jobs.public import ActionResultPublic
from backend.jobs.queries import cancellable_recipients, count_recipients, resolve_job_ref, retryable_recipients
from backend.moodle import callbacks
from models import (
    BATCH_FINAL,
    BATCH_WAITING,
    JOB_FINAL,
    JOB_PAUSABLE,
    RECIPIENT_OPEN,
    RECIPIENT_RETRYABLE,
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


@dataclass(frozen=True, slots=True)
class ActionResult:
    public: ActionResultPublic
    followups: Followups = field(default_factory=Followups)


def _result(job: Job, action: str, *, recipients: int, changed: int = 0, followups: Followups | None = None,
            **counts: int) -> ActionResult:
    public = ActionResultPublic(id=job.id, job_id=job.uuid, action=action, status=job.status, changed=changed,
                                recipients=recipients, **counts)
    return ActionResult(public=public, followups=followups or Followups())


def _job(session: Session, job_ref: str | int) -> Job:
    """The job row, locked (PostgreSQL) until the action commits: a worker finishing the job,
    or another admin, waits for it instead of overwriting it; the counts read after it are
    those the action changed."""
    job_id = resolve_job_ref(session=session, job_ref=job_ref)
    return session.execute(
        select(Job).where(Job.id == job_id).with_for_update().execution_options(populate_existing=True)
    ).scalar_one()


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
    job = _job(session, job_ref)
    if job.status in (JobStatus.CANCELLED, JobStatus.PAUSED):
        then = "resume" if job.status == JobStatus.PAUSED else "it cannot be retried"
        raise InvalidTransition(f"job {job.id} is {job.status}: {then} first")
    # The same recipients `queries.count_retryable` counts for the question asked before.
    conditions = [retryable_recipients(job.id)]
    if email:
        norm = email.strip().lower()
        exists = session.execute(
            select(RECIPIENTS.c.status).where(RECIPIENTS.c.job_id == job.id, RECIPIENTS.c.email_norm == norm)
        ).scalar_one_or_none()
        if exists is None:
            raise NotFound(f"job {job.id} has no recipient {email}")
        if exists not in RECIPIENT_RETRYABLE:
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
        .where(BATCHES.c.id.in_(batch_ids), BATCHES.c.status.in_(sorted(BATCH_FINAL | {BatchStatus.RETRY_PENDING})))
        # No `enqueued_at`: should the caller's message be lost, the sweeper sees a retry nobody
        # enqueued and sends it (a duplicate is harmless: a batch is claimed before it is sent).
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
    return _result(job, "retry", recipients=count, changed=count, retried=count,
                   followups=Followups(batch_ids=batch_ids))


def pause_job(*, session: Session, job_ref: str | int, actor: str, source: str) -> ActionResult:
    job = _job(session, job_ref)
    if job.status not in JOB_PAUSABLE:
        raise InvalidTransition(f"job {job.id} is {job.status}: only a waiting or running job can be paused")
    job.status, job.updated_at = JobStatus.PAUSED, utcnow()
    session.add(job)
    record(session=session, actor=actor, source=source, action="job.pause", target=job.uuid)
    return _result(job, "pause", recipients=count_recipients(session=session, job_id=job.id, status=RECIPIENT_OPEN))


def resume_job(*, session: Session, job_ref: str | int, actor: str, source: str) -> ActionResult:
    job = _job(session, job_ref)
    if job.status != JobStatus.PAUSED:
        raise InvalidTransition(f"job {job.id} is {job.status}, not paused")
    was_dispatched = job.route is not None
    job.status = JobStatus.PROCESSING if job.started_at else (JobStatus.QUEUED if was_dispatched else JobStatus.PENDING)
    job.updated_at = utcnow()
    session.add(job)
    if was_dispatched:
        batch_ids = session.execute(
            update(BATCHES)
            .where(BATCHES.c.job_id == job.id, BATCHES.c.status.in_(sorted(BATCH_WAITING)))
            .values(enqueued_at=None)
            .returning(BATCHES.c.id)
        ).scalars()
        followups = Followups(batch_ids=sorted(batch_ids))
    else:
        followups = Followups(dispatch_job_ids=[job.id])
    record(session=session, actor=actor, source=source, action="job.resume", target=job.uuid)
    return _result(job, "resume", recipients=count_recipients(session=session, job_id=job.id, status=RECIPIENT_OPEN),
                   followups=followups)


def cancel_job(*, session: Session, job_ref: str | int, actor: str, source: str) -> ActionResult:
    """Stop a job for good: recipients not yet sent end `cancelled`."""
    job = _job(session, job_ref)
    if job.status in JOB_FINAL:
        raise InvalidTransition(f"job {job.id} is already {job.status}")
    now = utcnow()
    # The same recipients `queries.count_cancellable` counts for the question asked before.
    count = session.execute(
        update(RECIPIENTS)
        .where(cancellable_recipients(job.id))
        .values(status=RecipientStatus.CANCELLED, secret=None, updated_at=now)
    ).rowcount
    # Batches a worker holds right now are closed by that worker when its current chunk ends.
    session.execute(
        update(BATCHES)
        .where(BATCHES.c.job_id == job.id, BATCHES.c.status.in_(sorted(BATCH_WAITING)))
        .values(status=BatchStatus.CANCELLED, finished_at=now)
    )
    job.status, job.finished_at, job.updated_at = JobStatus.CANCELLED, now, now
    session.add(job)
    record(session=session, actor=actor, source=source, action="job.cancel", target=job.uuid, details={"recipients": count})
    session.flush()
    followups = Followups(callback_ids=callbacks.on_job_finished(session=session, job=job))
    return _result(job, "cancel", recipients=count, changed=count, cancelled=count, followups=followups)
