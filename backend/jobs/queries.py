"""Read queries for browsing the record: the job history, one job's detail with its recipients
read page by page and its callbacks to Moodle, and the audit log.

Everything here only reads, and returns plain dataclasses (never ORM objects), so that a
console worker can hand the result to the UI thread after its session has closed. Recipient
pages use keyset paging on the `recipients (job_id, id)` and `(job_id, status, id)` indexes,
so a 50,000-recipient job opens as fast as a small one (`bench/console.py` has the figures).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import and_, func, or_, select
from sqlmodel import Session

from backend.jobs.dashboard import JOB_COLUMNS, JobRow, job_row
from backend.core.errors import NotFound
from models import AuditEntry, Batch, Company, Job, Recipient, RecipientStatus
from models.callbacks import CallbackDelivery

if TYPE_CHECKING:
    from backend.moodle.callbacks import CallbackStats
    from backend.moodle.webhooks import DeliveryRates

J, B, R, A = Job.__table__.c, Batch.__table__.c, Recipient.__table__.c, AuditEntry.__table__.c
D = CallbackDelivery.__table__.c

# Recipient statuses an admin reads as "went wrong" (the job detail's "problems" filter).
PROBLEM_STATUSES = (
    RecipientStatus.FAILED, RecipientStatus.PERMANENTLY_FAILED, RecipientStatus.RETRY_PENDING,
    RecipientStatus.BOUNCED, RecipientStatus.COMPLAINED,
)
# What "retry all failed" picks up (backend.jobs.create.retry_job without email or ids).
RETRYABLE_STATUSES = (RecipientStatus.FAILED, RecipientStatus.PERMANENTLY_FAILED)


# Job history ----------------------------------------------------------------------------------------


def _job_filters(*, status, job_type, company_id, since, until, search) -> list:
    conditions = []
    if status:
        conditions.append(J.status.in_([status] if isinstance(status, str) else list(status)))
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
        lowered = text.lower()
        matches = [J.uuid.like(f"{lowered}%"), J.source_name.like(f"%{text}%"), J.created_by == text]
        if text.lstrip("#").isdigit():
            matches.append(J.id == int(text.lstrip("#")))
        if "@" in text:
            # Recipient address: exact or prefix, on the email_norm index.
            matches.append(J.id.in_(
                select(R.job_id).where(R.email_norm >= lowered, R.email_norm < lowered + "\uffff").distinct()
            ))
        conditions.append(or_(*matches))
    return conditions


def search_jobs(
    *,
    session: Session,
    status: str | Sequence[str] | None = None,
    job_type: str | None = None,
    company_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    search: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[JobRow], int]:
    """Jobs newest first, filtered; `search` matches a job id, a uuid prefix, the source file,
    the creator, or (with an @) a recipient address or its prefix. Returns (page, total)."""
    conditions = _job_filters(
        status=status, job_type=job_type, company_id=company_id, since=since, until=until, search=search
    )
    where = and_(True, *conditions)
    total = session.execute(select(func.count()).select_from(Job.__table__).where(where)).scalar_one()
    rows = session.execute(
        select(*JOB_COLUMNS).where(where).order_by(J.created_at.desc(), J.id.desc()).limit(limit).offset(offset)
    ).all()
    return [job_row(row) for row in rows], total


def company_choices(*, session: Session) -> list[tuple[str, str]]:
    """(id, name) of every company, by name."""
    table = Company.__table__.c
    return [(row.id, row.name) for row in session.execute(select(table.id, table.name).order_by(table.name, table.id))]


# Job detail -------------------------------------------------------------------------------------


@dataclass(slots=True)
class BatchRow:
    id: int
    number: int
    size: int
    status: str
    attempts: int
    sent: int
    failed: int
    last_error: str | None
    started_at: datetime | None
    finished_at: datetime | None


@dataclass(slots=True)
class JobDetail:
    job: JobRow
    company_name: str | None
    action: str
    route: str | None
    provider: str | None
    error: str | None
    skipped_duplicates: int
    rejected_count: int
    counts: dict[str, int]
    batches: list[BatchRow]

    @property
    def retryable(self) -> int:
        return sum(self.counts.get(status.value, 0) for status in RETRYABLE_STATUSES)


def resolve_job_id(*, session: Session, job_ref: int | str) -> int:
    """A job's id from its id, its uuid, or a unique uuid prefix."""
    text = str(job_ref).strip().lstrip("#")
    if text.isdigit():
        found = session.execute(select(J.id).where(J.id == int(text))).scalar_one_or_none()
        if found is not None:
            return found
    matches = session.execute(select(J.id).where(J.uuid.like(f"{text.lower()}%")).limit(2)).scalars().all()
    if len(matches) == 1:
        return matches[0]
    raise NotFound(f"no job {job_ref!r}" if not matches else f"job {job_ref!r} is ambiguous: give more of its id")


def job_detail(*, session: Session, job_ref: int | str) -> JobDetail:
    """One job's summary, recipient counts by status, and batches."""
    job_id = resolve_job_id(session=session, job_ref=job_ref)
    job = session.get(Job, job_id)
    counts = {
        status: count for status, count in session.execute(
            select(R.status, func.count()).where(R.job_id == job_id).group_by(R.status)
        )
    }
    batches = [
        BatchRow(
            id=row.id, number=row.number, size=row.size, status=row.status, attempts=row.attempts,
            sent=row.sent_count, failed=row.failed_count, last_error=row.last_error,
            started_at=row.started_at, finished_at=row.finished_at,
        )
        for row in session.execute(select(Batch.__table__).where(B.job_id == job_id).order_by(B.number))
    ]
    row = job_row(job)
    delivered = sum(counts.get(s, 0) for s in ("sent", "bounced", "complained"))
    failed = counts.get("failed", 0) + counts.get("permanently_failed", 0)
    row.sent, row.failed = max(row.sent, delivered), max(row.failed, failed)
    company = session.get(Company, job.company_id) if job.company_id else None
    return JobDetail(
        job=row, company_name=company.name if company else None, action=job.action, route=job.route,
        provider=job.provider, error=job.error, skipped_duplicates=job.skipped_duplicates,
        rejected_count=job.rejected_count, counts=counts, batches=batches,
    )


@dataclass(slots=True)
class RecipientRow:
    id: int
    line: int | None
    email: str
    name: str
    status: str
    attempts: int
    last_error: str | None
    certificate_url: str | None
    sent_at: datetime | None
    batch_id: int | None


@dataclass(slots=True)
class RecipientPage:
    rows: list[RecipientRow]
    total: int  # rows matching the filter
    start: int  # 0-based position of rows[0] among them
    has_previous: bool
    has_next: bool


_RECIPIENT_COLUMNS = (
    R.id, R.line, R.email, R.firstname, R.lastname, R.status, R.attempts, R.last_error, R.certificate_url,
    R.sent_at, R.batch_id,
)


def _recipient_filters(job_id: int, status, search) -> list:
    conditions = [R.job_id == job_id]
    if status:
        conditions.append(R.status.in_([status] if isinstance(status, str) else list(status)))
    text = (search or "").strip().lower()
    if text:
        conditions.append(R.email_norm.like(f"%{text}%"))
    return conditions


def recipients_page(
    *,
    session: Session,
    job_id: int,
    status: str | Sequence[str] | None = None,
    search: str | None = None,
    after_id: int | None = None,
    before_id: int | None = None,
    last: bool = False,
    limit: int = 100,
) -> RecipientPage:
    """One page of a job's recipients in id order, keyset-paged: after `after_id`, before
    `before_id`, the last page (`last`), or else the first. Never reads more than `limit` rows."""
    base = _recipient_filters(job_id, status, search)
    query = select(*_RECIPIENT_COLUMNS).where(*base)
    if before_id is not None or last:
        if before_id is not None:
            query = query.where(R.id < before_id)
        rows = list(reversed(session.execute(query.order_by(R.id.desc()).limit(limit)).all()))
    else:
        if after_id is not None:
            query = query.where(R.id > after_id)
        rows = session.execute(query.order_by(R.id).limit(limit)).all()
    total = session.execute(select(func.count()).select_from(Recipient.__table__).where(*base)).scalar_one()
    start = 0
    if rows:
        start = session.execute(
            select(func.count()).select_from(Recipient.__table__).where(*base, R.id < rows[0].id)
        ).scalar_one()
    return RecipientPage(
        rows=[
            RecipientRow(
                id=row.id, line=row.line, email=row.email,
                name=" ".join(part for part in (row.firstname, row.lastname) if part),
                status=row.status, attempts=row.attempts, last_error=row.last_error,
                certificate_url=row.certificate_url, sent_at=row.sent_at, batch_id=row.batch_id,
            )
            for row in rows
        ],
        total=total,
        start=start,
        has_previous=start > 0,
        has_next=start + len(rows) < total,
    )


def count_recipients(*, session: Session, job_id: int, status: str | Sequence[str] | None = None) -> int:
    query = select(func.count()).select_from(Recipient.__table__).where(*_recipient_filters(job_id, status, None))
    return session.execute(query).scalar_one()


LOG_COLUMNS = (
    "recipient_id", "line", "userid", "email", "firstname", "lastname", "status", "attempts", "last_error",
    "sent_at", "updated_at", "external_id", "certificate_url", "certificate_code", "batch_id",
)


def iter_recipient_log(*, session: Session, job_id: int, chunk: int = 2000) -> Iterator[dict]:
    """Every recipient of a job as a flat dict (LOG_COLUMNS), streamed in keyset chunks.
    Never includes the encrypted temporary password."""
    columns = (
        R.id, R.line, R.userid, R.email, R.firstname, R.lastname, R.status, R.attempts, R.last_error, R.sent_at,
        R.updated_at, R.external_id, R.certificate_url, R.certificate_code, R.batch_id,
    )
    last_id = 0
    while True:
        rows = session.execute(
            select(*columns).where(R.job_id == job_id, R.id > last_id).order_by(R.id).limit(chunk)
        ).all()
        if not rows:
            return
        for row in rows:
            values = dict(zip(LOG_COLUMNS, row))
            for key in ("sent_at", "updated_at"):
                values[key] = values[key].isoformat() if values[key] else ""
            yield values
        last_id = rows[-1].id


# Audit ------------------------------------------------------------------------------------------


@dataclass(slots=True)
class AuditRow:
    id: int
    at: datetime
    actor: str
    source: str
    action: str
    target: str | None
    address: str | None
    details: dict


def audit_entries(
    *, session: Session, search: str | None = None, limit: int = 200, offset: int = 0
) -> tuple[list[AuditRow], int]:
    """The audit log newest first; `search` matches actor, action, source or target."""
    conditions = []
    text = (search or "").strip()
    if text:
        pattern = f"%{text}%"
        conditions.append(or_(A.actor.like(pattern), A.action.like(pattern), A.target.like(pattern), A.source == text))
    where = and_(True, *conditions)
    total = session.execute(select(func.count()).select_from(AuditEntry.__table__).where(where)).scalar_one()
    rows = session.execute(
        select(AuditEntry.__table__).where(where).order_by(A.at.desc(), A.id.desc()).limit(limit).offset(offset)
    ).all()
    return [
        AuditRow(id=r.id, at=r.at, actor=r.actor, source=r.source, action=r.action, target=r.target,
                 address=r.address, details=r.details or {})
        for r in rows
    ], total


# Callbacks to Moodle, the route and delivery rates of one job (job detail) ----------------------------


@dataclass(slots=True)
class DeliveryRow:
    """One callback delivery as the console lists it (`updates`: recipients it reports on)."""

    id: int
    job_id: int
    kind: str
    batch_number: int | None
    updates: int
    url: str
    status: str
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: datetime | None
    created_at: datetime
    delivered_at: datetime | None
    updated_at: datetime


@dataclass(slots=True)
class AttemptRow:
    number: int
    started_at: datetime
    status_code: int | None
    error: str | None
    duration_ms: int
    update_count: int
    response_excerpt: str | None


@dataclass(slots=True)
class JobOutcome:
    """Why the job took its route, its bounce/complaint rates and its callbacks' delivered share."""

    route_reason: str | None
    rates: DeliveryRates
    callbacks: CallbackStats


def delivery_rows(session: Session, *conditions, newest_first: bool = False, limit: int = 500) -> list[DeliveryRow]:
    """Callback deliveries matching `conditions` (on `callback_deliveries` columns), by id."""
    query = (
        select(D.id, D.job_id, D.kind, B.number.label("batch_number"),
               func.json_array_length(D.recipient_ids).label("updates"), D.url, D.status, D.attempts,
               D.last_status_code, D.last_error, D.next_attempt_at, D.created_at, D.delivered_at, D.updated_at)
        .select_from(CallbackDelivery.__table__.outerjoin(Batch.__table__, B.id == D.batch_id))
        .where(*conditions).order_by(D.id.desc() if newest_first else D.id).limit(limit)
    )
    return [DeliveryRow(**row._mapping) for row in session.execute(query)]


def job_outcome(*, session: Session, job_id: int) -> JobOutcome:
    from backend.moodle.callbacks import callback_stats
    from backend.moodle.webhooks import delivery_rates

    return JobOutcome(
        route_reason=session.execute(select(J.route_reason).where(J.id == job_id)).scalar_one_or_none(),
        rates=delivery_rates(session=session, job_id=job_id),
        callbacks=callback_stats(session=session, job_id=job_id),
    )


def job_deliveries(*, session: Session, job_id: int, limit: int = 500) -> list[DeliveryRow]:
    """A job's callback deliveries, oldest first (batch 1, 2, ..., then the final one)."""
    return delivery_rows(session, D.job_id == job_id, limit=limit)


def delivery_log(*, session: Session, delivery_id: int) -> tuple[DeliveryRow, list[AttemptRow]]:
    """One delivery and every attempt made (time, status code, duration, error, answer)."""
    from backend.moodle.callbacks import list_attempts

    found = delivery_rows(session, D.id == delivery_id, limit=1)
    if not found:
        raise NotFound(f"No callback delivery {delivery_id}.")
    return found[0], [
        AttemptRow(number=a.number, started_at=a.started_at, status_code=a.status_code, error=a.error,
                   duration_ms=a.duration_ms, update_count=a.update_count, response_excerpt=a.response_excerpt)
        for a in list_attempts(session=session, delivery_id=delivery_id)
    ]
