"""Read queries for the console: dashboard counters, job history, job detail pages, audit log.

Everything here only reads, and returns plain dataclasses (never ORM objects), so that a
console worker can hand the result to the UI thread after its session has closed. Each query
is shaped for an index (see `bench/console.py` for the figures): the dashboard touches the
jobs and batches tables plus a range of `recipients.sent_at`; recipient pages use keyset
paging on `recipients.id` within one job, so a 50,000-recipient job opens as fast as a small one.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import and_, func, or_, select
from sqlmodel import Session

from backend.errors import NotFound
from models import JOB_ACTIVE, AuditEntry, Batch, Company, Job, JobStatus, Recipient, RecipientStatus, utcnow

J, B, R, A = Job.__table__.c, Batch.__table__.c, Recipient.__table__.c, AuditEntry.__table__.c

# Recipient statuses an admin reads as "went wrong" (the job detail's "problems" filter).
PROBLEM_STATUSES = (
    RecipientStatus.FAILED, RecipientStatus.PERMANENTLY_FAILED, RecipientStatus.RETRY_PENDING,
    RecipientStatus.BOUNCED, RecipientStatus.COMPLAINED,
)
# What "retry all failed" picks up (backend.jobs.retry_job without email or ids).
RETRYABLE_STATUSES = (RecipientStatus.FAILED, RecipientStatus.PERMANENTLY_FAILED)
_WAITING = (JobStatus.PENDING, JobStatus.QUEUED, JobStatus.RETRY_PENDING)


@dataclass(slots=True)
class JobRow:
    id: int
    uuid: str
    type: str
    company_id: str | None
    status: str
    total: int
    sent: int
    failed: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    last_progress_at: datetime | None
    source_name: str | None = None
    created_by: str | None = None
    rate_per_minute: float | None = None  # since the job started
    recent_per_minute: float = 0.0  # over the last minute
    problems: list[str] = field(default_factory=list)

    @property
    def done(self) -> int:
        return self.sent + self.failed


@dataclass(slots=True)
class DashboardSnapshot:
    now: datetime
    active_jobs: int
    queued_jobs: int
    queued_recipients: int
    processing_jobs: int
    sent_last_hour: int
    failed_recent: int
    rate_last_minute: float
    rate_since_start: float | None
    jobs: list[JobRow]
    problems: list[str]


def _job_row(row, *, sent: int | None = None, failed: int | None = None) -> JobRow:
    return JobRow(
        id=row.id, uuid=row.uuid, type=row.type, company_id=row.company_id, status=row.status,
        total=row.total or 0, sent=max(sent or 0, row.sent_count or 0), failed=max(failed or 0, row.failed_count or 0),
        created_at=row.created_at, started_at=row.started_at, finished_at=row.finished_at,
        last_progress_at=row.last_progress_at, source_name=row.source_name, created_by=row.created_by,
    )


_JOB_COLUMNS = (
    J.id, J.uuid, J.type, J.company_id, J.status, J.total, J.sent_count, J.failed_count, J.created_at,
    J.started_at, J.finished_at, J.last_progress_at, J.source_name, J.created_by,
)


def _as_utc(value: datetime | None) -> datetime | None:
    """Aggregates (max/min) skip the column type: SQLite hands them back as naive or text."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        from datetime import timezone

        value = value.replace(tzinfo=timezone.utc)
    return value


def dashboard_snapshot(
    *,
    session: Session,
    now: datetime | None = None,
    stuck_after: float = 300.0,
    failure_threshold: float = 0.10,
    failure_min_sample: int = 20,
    limit: int = 200,
) -> DashboardSnapshot:
    """Counters and the active jobs with their progress, rates and problems.

    Progress comes from the batches' counters (the engine updates them on every commit), or
    the job's own counters when those are ahead; rates from `recipients.sent_at`.
    """
    now = now or utcnow()
    active = [s.value for s in JOB_ACTIVE]
    job_rows = session.execute(
        select(*_JOB_COLUMNS).where(J.status.in_(active)).order_by(J.created_at.desc(), J.id.desc()).limit(limit)
    ).all()
    active_count = session.execute(select(func.count()).where(J.status.in_(active))).scalar_one()
    by_status = dict(
        session.execute(select(J.status, func.count()).where(J.status.in_(active)).group_by(J.status)).all()
    )
    ids = [row.id for row in job_rows]
    progress: dict[int, tuple[int, int, datetime | None]] = {}
    recent: dict[int, int] = {}
    if ids:
        for job_id, sent, failed, last_finished in session.execute(
            select(B.job_id, func.sum(B.sent_count), func.sum(B.failed_count), func.max(B.finished_at))
            .where(B.job_id.in_(ids)).group_by(B.job_id)
        ):
            progress[job_id] = (int(sent or 0), int(failed or 0), _as_utc(last_finished))
    minute_ago, hour_ago = now - timedelta(minutes=1), now - timedelta(hours=1)
    for job_id, count in session.execute(
        select(R.job_id, func.count()).where(R.sent_at >= minute_ago, R.sent_at <= now).group_by(R.job_id)
    ):
        recent[job_id] = count
    sent_last_hour = session.execute(
        select(func.count()).where(R.sent_at >= hour_ago, R.sent_at <= now)
    ).scalar_one()
    failed_recent = session.execute(
        select(func.coalesce(func.sum(J.failed_count), 0)).where(
            or_(J.status.in_(active), J.finished_at >= hour_ago)
        )
    ).scalar_one()

    jobs: list[JobRow] = []
    problems: list[str] = []
    since_start_sent, since_start_seconds = 0, 0.0
    for row in job_rows:
        sent, failed, last_batch = progress.get(row.id, (0, 0, None))
        job = _job_row(row, sent=sent, failed=failed)
        if job.last_progress_at is None or (last_batch and last_batch > job.last_progress_at):
            job.last_progress_at = last_batch or job.last_progress_at
        job.recent_per_minute = float(recent.get(row.id, 0))
        if job.started_at and job.status == JobStatus.PROCESSING:
            elapsed = max((now - job.started_at).total_seconds(), 1.0)
            job.rate_per_minute = job.sent * 60.0 / elapsed
            since_start_sent += job.sent
            since_start_seconds = max(since_start_seconds, elapsed)
        job.problems = job_problems(
            job, now=now, stuck_after=stuck_after, failure_threshold=failure_threshold,
            failure_min_sample=failure_min_sample,
        )
        problems.extend(f"job {job.id}: {problem}" for problem in job.problems)
        jobs.append(job)
    waiting = [s.value for s in _WAITING]
    queued_recipients = sum(max(j.total - j.done, 0) for j in jobs)
    return DashboardSnapshot(
        now=now,
        active_jobs=active_count,
        queued_jobs=sum(by_status.get(s, 0) for s in waiting),
        queued_recipients=queued_recipients,
        processing_jobs=by_status.get(JobStatus.PROCESSING.value, 0),
        sent_last_hour=sent_last_hour,
        failed_recent=int(failed_recent or 0),
        rate_last_minute=float(sum(recent.values())),
        rate_since_start=(since_start_sent * 60.0 / since_start_seconds) if since_start_seconds else None,
        jobs=jobs,
        problems=problems,
    )


def job_problems(
    job: JobRow, *, now: datetime, stuck_after: float, failure_threshold: float, failure_min_sample: int
) -> list[str]:
    """What is wrong with one job, in words for the problems banner."""
    found = []
    if job.status == JobStatus.PROCESSING:
        since = job.last_progress_at or job.started_at or job.created_at
        idle = (now - since).total_seconds()
        if idle > stuck_after:
            found.append(f"stuck: no progress for {format_duration(idle)}")
    if job.done >= failure_min_sample and job.failed / job.done > failure_threshold:
        found.append(f"failure rate {job.failed / job.done:.0%}")
    return found


def format_duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86400:
        return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"
    return f"{seconds // 86400}d{(seconds % 86400) // 3600}h"


# History ----------------------------------------------------------------------------------------


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
        select(*_JOB_COLUMNS).where(where).order_by(J.created_at.desc(), J.id.desc()).limit(limit).offset(offset)
    ).all()
    return [_job_row(row) for row in rows], total


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
    row = _job_row(job)
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
