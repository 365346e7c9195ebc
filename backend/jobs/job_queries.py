"""Reading jobs and recipients, for the CLI, the console and the API."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, or_, select
from sqlmodel import Session

from backend.delivery.engine import recipient_counts
from backend.core.errors import NotFound, UnusableInput
from models import Batch, Job, Recipient, Rejection

JOB_LIST_LIMIT = 100


def get_job(*, session: Session, job_ref: str | int) -> Job:
    """A job by numeric id, full uuid, or a unique uuid prefix of at least 4 characters."""
    ref = str(job_ref).strip()
    job = None
    if ref.isdigit():
        job = session.get(Job, int(ref))
    if job is None and len(ref) >= 4:
        matches = session.execute(select(Job).where(Job.uuid.startswith(ref.lower())).limit(2)).scalars().all()
        if len(matches) > 1:
            raise UnusableInput(f"job id {ref!r} is ambiguous: give more of it")
        job = matches[0] if matches else None
    if job is None:
        raise NotFound(f"no job {ref!r}: `mani jobs list` shows the jobs")
    return job


def list_jobs(
    *,
    session: Session,
    status: str | None = None,
    job_type: str | None = None,
    company_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    search: str | None = None,
    limit: int = JOB_LIST_LIMIT,
    offset: int = 0,
) -> list[Job]:
    """Newest first. `search` matches a job uuid prefix or a recipient's email."""
    query = select(Job)
    if status:
        query = query.where(Job.status == status)
    if job_type:
        query = query.where(Job.type == job_type)
    if company_id:
        query = query.where(Job.company_id == company_id)
    if since:
        query = query.where(Job.created_at >= since)
    if until:
        query = query.where(Job.created_at < until)
    if search:
        term = search.strip().lower()
        by_email = select(Recipient.job_id).where(Recipient.email_norm == term)
        query = query.where(or_(Job.uuid.startswith(term), Job.id.in_(by_email)))
    query = query.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit).offset(offset)
    return list(session.execute(query).scalars())


def job_counts(*, session: Session, job_id: int) -> dict[str, int]:
    return recipient_counts(session=session, job_id=job_id)


def list_batches(*, session: Session, job_id: int) -> list[Batch]:
    return list(session.execute(select(Batch).where(Batch.job_id == job_id).order_by(Batch.number)).scalars())


def list_recipients(
    *,
    session: Session,
    job_id: int,
    status: str | None = None,
    search: str | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> list[Recipient]:
    query = select(Recipient).where(Recipient.job_id == job_id)
    if status:
        query = query.where(Recipient.status == status)
    if search:
        query = query.where(Recipient.email_norm.contains(search.strip().lower()))
    query = query.order_by(Recipient.id).offset(offset)
    if limit is not None:
        query = query.limit(limit)
    return list(session.execute(query).scalars())


def count_recipients(*, session: Session, job_id: int, status: str | None = None, search: str | None = None) -> int:
    query = select(func.count()).select_from(Recipient).where(Recipient.job_id == job_id)
    if status:
        query = query.where(Recipient.status == status)
    if search:
        query = query.where(Recipient.email_norm.contains(search.strip().lower()))
    return session.execute(query).scalar_one()


def list_rejections(*, session: Session, job_id: int) -> list[Rejection]:
    return list(session.execute(select(Rejection).where(Rejection.job_id == job_id).order_by(Rejection.line)).scalars())


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def job_summary(*, session: Session, job: Job) -> dict:
    """The `mani jobs show --json` document."""
    return {
        "job_id": job.uuid,
        "id": job.id,
        "type": job.type,
        "action": job.action,
        "status": job.status,
        "company_id": job.company_id,
        "total": job.total,
        "sent": job.sent_count,
        "failed": job.failed_count,
        "skipped_duplicates": job.skipped_duplicates,
        "rejected": job.rejected_count,
        "counts": job_counts(session=session, job_id=job.id),
        "route": job.route,
        "provider": job.provider,
        "route_reason": job.route_reason,
        "callback_url": job.callback_url,
        "source": job.source,
        "source_name": job.source_name,
        "created_by": job.created_by,
        "error": job.error,
        "batches": [
            {
                "number": batch.number,
                "status": batch.status,
                "size": batch.size,
                "sent": batch.sent_count,
                "failed": batch.failed_count,
                "attempts": batch.attempts,
            }
            for batch in list_batches(session=session, job_id=job.id)
        ],
        "created_at": _iso(job.created_at),
        "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at),
        "updated_at": _iso(job.updated_at),
    }


def recipient_document(recipient: Recipient) -> dict:
    """One recipient as `mani jobs recipients --json` prints it."""
    return {
        "userid": recipient.userid,
        "email": recipient.email,
        "status": recipient.status,
        "attempts": recipient.attempts,
        "error": recipient.last_error,
        "certificate_url": recipient.certificate_url,
        "certificate_code": recipient.certificate_code,
        "sent_at": _iso(recipient.sent_at),
        "external_id": recipient.external_id,
    }
