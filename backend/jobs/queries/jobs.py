"""Finding a job (number, #number, uuid or unique prefix; one search) and one job's detail."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import and_, func, or_, select
from sqlalchemy.sql import ColumnElement
from sqlmodel import Session

from backend.companies.readiness import HANDOFF_MODES
from backend.companies.resolution import resolve
from backend.core.errors import NotFound, UnusableInput
from backend.delivery import circuit
from backend.jobs.public import (
    BatchPublic,
    HandoffBatchPublic,
    HandoffPublic,
    JobDetailPublic,
    JobPublic,
    ProviderOutagePublic,
    RejectionPublic,
)
from models import (
    BATCH_FINAL,
    JOB_FINAL,
    RECIPIENT_CANCELLABLE,
    RECIPIENT_DELIVERED,
    RECIPIENT_OPEN,
    RECIPIENT_RETRYABLE,
    Batch,
    Company,
    Job,
    ProviderCircuit,
    Recipient,
    RecipientStatus,
    Rejection,
    utcnow,
)

from backend.jobs.queries.activity import callback_stats, delivery_rates
from backend.jobs.queries.recipients import _recipient_filters
from backend.jobs.queries.tables import B, J, R, Statuses, _in


# Finding a job -----------------------------------------------------------------------------------


def resolve_job_ref(*, session: Session, job_ref: int | str) -> int:
    """A job's number from what a person typed: `12`, `#12`, its uuid, or a unique uuid prefix.

    All digits: the job with that number, if there is one; otherwise (and for anything else)
    the uuid prefix. NotFound when nothing matches; UnusableInput, saying how many, when the
    prefix is shared.
    """
    text = str(job_ref).strip()
    number = text.removeprefix("#")
    if not number:
        raise UnusableInput("name a job: its number, its uuid, or the start of its uuid")
    if number.isdigit():
        found = session.execute(select(J.id).where(J.id == int(number))).scalar_one_or_none()
        if found is not None:
            return found
    prefix = J.uuid.startswith(number.lower(), autoescape=True)
    matches = session.execute(select(J.id).where(prefix).limit(2)).scalars().all()
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise NotFound(f"no job {text!r}: `mani jobs list` shows the jobs")
    shared = session.execute(select(func.count()).where(prefix)).scalar_one()
    raise UnusableInput(f"job {text!r} is ambiguous: {shared:,} job uuids start with it; give more of it")


def _job_search(text: str) -> ColumnElement:
    """A job by number (`12`, `#12`), uuid prefix, source file or creator; with an @, by a
    recipient's address, exact or its beginning (on the `email_norm` index)."""
    lowered = text.lower()
    matches = [J.uuid.startswith(lowered, autoescape=True), J.source_name.contains(text, autoescape=True),
               J.created_by == text]
    if text.removeprefix("#").isdigit():
        matches.append(J.id == int(text.removeprefix("#")))
    if "@" in text:
        matches.append(J.id.in_(
            select(R.job_id).where(R.email_norm >= lowered, R.email_norm < lowered + "\uffff").distinct()
        ))
    return or_(*matches)


def _job_filters(*, status, job_type, company_id, since, until, search) -> list:
    conditions = []
    if status:
        conditions.append(_in(J.status, status))
    if job_type:
        conditions.append(J.type == job_type)
    if company_id:
        conditions.append(J.company_id == company_id)
    if since:
        conditions.append(J.created_at >= since)
    if until:
        conditions.append(J.created_at < until)
    text = (search or "").strip()
    if text:
        conditions.append(_job_search(text))
    return conditions


JOB_COLUMNS = (
    J.id, J.uuid, J.type, J.action, J.company_id, J.status, J.total, J.sent_count, J.failed_count, J.created_at,
    J.started_at, J.finished_at, J.last_progress_at, J.source_name, J.created_by,
)


def _job_fields(row, *, sent: int = 0, failed: int = 0, last_progress_at: datetime | None = None) -> dict:
    """A job row's public fields; `sent`/`failed` from counts that may be ahead of the job's own."""
    return dict(
        id=row.id, job_id=row.uuid, type=row.type, action=row.action, status=row.status, company_id=row.company_id,
        total=row.total or 0, sent=max(sent, row.sent_count or 0), failed=max(failed, row.failed_count or 0),
        created_at=row.created_at, started_at=row.started_at, finished_at=row.finished_at,
        last_progress_at=last_progress_at or row.last_progress_at, source_name=row.source_name,
        created_by=row.created_by,
    )


def search_jobs(
    *,
    session: Session,
    status: Statuses = None,
    job_type: str | None = None,
    company_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    search: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[JobPublic], int]:
    """Jobs newest first, filtered, and how many match: (page, total). See `_job_search` for `search`."""
    where = and_(True, *_job_filters(status=status, job_type=job_type, company_id=company_id, since=since,
                                     until=until, search=search))
    total = session.execute(select(func.count()).select_from(Job.__table__).where(where)).scalar_one()
    rows = session.execute(
        select(*JOB_COLUMNS).where(where).order_by(J.created_at.desc(), J.id.desc()).limit(limit).offset(offset)
    ).all()
    return [JobPublic(**_job_fields(row)) for row in rows], total


def get_job(*, session: Session, job_id: int) -> JobPublic:
    """One job as a list row; NotFound when there is no such job."""
    row = session.execute(select(*JOB_COLUMNS).where(J.id == job_id)).one_or_none()
    if row is None:
        raise NotFound(f"no job {job_id}: `mani jobs list` shows the jobs")
    return JobPublic(**_job_fields(row))


def company_choices(*, session: Session) -> list[tuple[str, str]]:
    """(id, name) of every company, by name."""
    table = Company.__table__.c
    return [(row.id, row.name) for row in session.execute(select(table.id, table.name).order_by(table.name, table.id))]


def job_company_ids(*, session: Session) -> list[str]:
    """Every company id some job names (a Job JSON tenant need not be added as a company)."""
    return list(session.execute(select(J.company_id).where(J.company_id.is_not(None)).distinct()).scalars())


# One job ----------------------------------------------------------------------------------------------


def recipient_counts(*, session: Session, job_id: int) -> dict[str, int]:
    """Recipients by status: {"sent": 1860, ...}."""
    return {str(status): count for status, count in session.execute(
        select(R.status, func.count()).where(R.job_id == job_id).group_by(R.status)
    )}


def cancellable_recipients(job_id: int) -> ColumnElement:
    """The recipients a cancel ends `cancelled` at once: the cancel's UPDATE and its question share it."""
    return and_(R.job_id == job_id, _in(R.status, RECIPIENT_CANCELLABLE))


def count_cancellable(*, session: Session, job_id: int) -> int:
    return session.execute(select(func.count()).where(cancellable_recipients(job_id))).scalar_one()


def retryable_recipients(job_id: int) -> ColumnElement:
    """The recipients "retry all failed" sends again: the retry's UPDATE and its question share it."""
    return and_(R.job_id == job_id, _in(R.status, RECIPIENT_RETRYABLE))


def count_retryable(*, session: Session, job_id: int) -> int:
    return session.execute(select(func.count()).where(retryable_recipients(job_id))).scalar_one()


def count_recipients(*, session: Session, job_id: int, status: Statuses = None, search: str | None = None) -> int:
    query = select(func.count()).select_from(Recipient.__table__).where(*_recipient_filters(job_id, status, search))
    return session.execute(query).scalar_one()


def list_batches(*, session: Session, job_id: int) -> list[BatchPublic]:
    return [
        BatchPublic(id=row.id, number=row.number, status=row.status, size=row.size, sent=row.sent_count,
                    failed=row.failed_count, attempts=row.attempts, error=row.last_error,
                    started_at=row.started_at, finished_at=row.finished_at)
        for row in session.execute(select(Batch.__table__).where(B.job_id == job_id).order_by(B.number))
    ]


CLAIM_CHECK_MARK = " (claim check)"


def handoff_of(*, session: Session, job: Job, now: datetime | None = None) -> HandoffPublic | None:
    """The batches of `job` handed to the company's own worker, with stuck flags; None if none were."""
    rows = session.execute(
        select(B.number, B.status, B.size, B.handoff_at, B.reported_at, B.handoff_ref)
        .where(B.job_id == job.id, B.handoff_at.is_not(None)).order_by(B.number)
    ).all()
    if not rows:
        return None
    now = now or utcnow()
    stuck_after = int(resolve(session=session, company_id=None).get("cloud_stuck_after") or 3600)
    limit = now - timedelta(seconds=stuck_after)
    batches, modes = [], []
    for row in rows:
        is_open = row.status not in BATCH_FINAL
        mode, marked, ref = (row.handoff_ref or "").partition(":")
        if not marked:
            mode, ref = "", row.handoff_ref or ""
        modes.append(mode)
        batches.append(HandoffBatchPublic(
            number=row.number, status=row.status, size=row.size, handed_off_at=row.handoff_at,
            reported_at=row.reported_at, claim_check=ref.endswith(CLAIM_CHECK_MARK),
            message_ids=[part for part in ref.removesuffix(CLAIM_CHECK_MARK).split(",") if part],
            stuck=is_open and (row.reported_at or row.handoff_at) < limit,
        ))
    # `handoff_ref` is `mode:ids` (backend.delivery.handoff.record_handoff); the job's provider
    # stops saying the mode once cloud_fallback_behavior sent the rest of the job locally.
    mode = next((m for m in reversed(modes) if m in HANDOFF_MODES), None) or (
        job.provider if job.provider in HANDOFF_MODES else "handoff")
    return HandoffPublic(mode=mode, stuck_after=stuck_after, handed_off=len(batches),
                         open=sum(b.status not in BATCH_FINAL for b in batches),
                         stuck=sum(b.stuck for b in batches), batches=batches)


def job_detail(*, session: Session, job_ref: int | str) -> JobDetailPublic:
    """One job in full: its summary, recipient counts, batches, route, rates and callbacks."""
    job = session.get(Job, resolve_job_ref(session=session, job_ref=job_ref))
    counts = recipient_counts(session=session, job_id=job.id)
    delivered = sum(counts.get(s, 0) for s in RECIPIENT_DELIVERED)
    failed = counts.get(RecipientStatus.FAILED, 0) + counts.get(RecipientStatus.PERMANENTLY_FAILED, 0)
    company = session.get(Company, job.company_id) if job.company_id else None
    return JobDetailPublic(
        **_job_fields(job, sent=delivered, failed=failed),
        company_name=company.name if company else None, route=job.route, provider=job.provider,
        route_reason=job.route_reason, callback_url=job.callback_url, source=job.source, error=job.error,
        skipped_duplicates=job.skipped_duplicates, rejected=job.rejected_count, bounced=job.bounced_count,
        complained=job.complained_count, counts=counts,
        retryable=count_retryable(session=session, job_id=job.id),
        cancellable=count_cancellable(session=session, job_id=job.id),
        waiting=sum(counts.get(s, 0) for s in RECIPIENT_OPEN),
        batches=list_batches(session=session, job_id=job.id),
        handoff=handoff_of(session=session, job=job),
        rates=delivery_rates(session=session, job_id=job.id),
        callbacks=callback_stats(session=session, job_id=job.id),
        updated_at=job.updated_at,
        **_job_outage(session=session, job=job),
    )


def _job_outage(*, session: Session, job: Job) -> dict:
    if job.status in JOB_FINAL or job.route is None:
        return {}
    row = session.get(ProviderCircuit, circuit.route_key(job))
    return {"provider_down_since": row.down_since, "provider_error": row.last_error} if row else {}


def provider_outages(*, session: Session) -> list[ProviderOutagePublic]:
    """Every route whose provider is down for everyone right now, oldest outage first."""
    return [
        ProviderOutagePublic(company_id=row.company_id, provider=row.provider, route=row.key, down_since=row.down_since,
                             retry_at=row.retry_at, failures=row.failures, error=row.last_error)
        for row in circuit.open_circuits(session=session)
    ]


def list_rejections(*, session: Session, job_id: int) -> list[RejectionPublic]:
    query = select(Rejection.__table__).where(Rejection.__table__.c.job_id == job_id).order_by(Rejection.__table__.c.line)
    return [RejectionPublic(line=row.line, email=row.email, reason=row.reason) for row in session.execute(query)]
