"""The one read side: jobs, recipients, batches, rejections and callback deliveries, for the
CLI, the console and the HTTP API.

Everything here only reads (the engine keeps its own internal reads), and returns the frozen
models of `backend.jobs.public`, never ORM objects. Recipient pages use keyset paging on the
`recipients (job_id, id)` and `(job_id, status, id)` indexes, so a 50,000-recipient job opens
as fast as a small one (`bench/console.py` has the figures). User text never reaches a LIKE
pattern unescaped.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from datetime import datetime, timedelta, timezone

from sqlalchemy import and_, func, or_, select
from sqlalchemy.sql import ColumnElement
from sqlmodel import Session

from backend.companies.readiness import HANDOFF_MODES
from backend.companies.resolution import resolve
from backend.core.errors import NotFound, UnusableInput
from backend.delivery import circuit
from backend.jobs.public import (
    ActiveJobPublic,
    AuditEntryPublic,
    BatchPublic,
    CallbackAttemptPublic,
    CallbackDeliveryPublic,
    CallbackStatsPublic,
    DashboardPublic,
    DeliveryRatesPublic,
    HandoffBatchPublic,
    HandoffPublic,
    JobDetailPublic,
    JobPublic,
    ProviderOutagePublic,
    RecipientPagePublic,
    RecipientPublic,
    RejectionPublic,
    SuppressionPublic,
)
from models import (
    BATCH_FINAL,
    JOB_FINAL,
    JOB_OPEN,
    JOB_WAITING,
    NO_COMPANY,
    RECIPIENT_CANCELLABLE,
    RECIPIENT_DELIVERED,
    RECIPIENT_OPEN,
    RECIPIENT_RETRYABLE,
    AuditEntry,
    Batch,
    CallbackAttempt,
    CallbackDelivery,
    Company,
    DeliveryStatus,
    Job,
    JobStatus,
    ProviderCircuit,
    Recipient,
    RecipientStatus,
    Rejection,
    Suppression,
    utcnow,
)

J, B, R = Job.__table__.c, Batch.__table__.c, Recipient.__table__.c
A, D, T = AuditEntry.__table__.c, CallbackDelivery.__table__.c, CallbackAttempt.__table__.c
Statuses = str | Collection[str] | None


def _in(column, statuses: Statuses) -> ColumnElement:
    return column.in_([statuses] if isinstance(statuses, str) else sorted(statuses))


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


# Recipients ---------------------------------------------------------------------------------------


RECIPIENT_COLUMNS = (
    R.id, R.line, R.userid, R.email, R.firstname, R.lastname, R.status, R.attempts, R.last_error, R.sent_at,
    R.external_id, R.certificate_url, R.certificate_code, R.batch_id,
)


def _recipient(row) -> RecipientPublic:
    return RecipientPublic(
        id=row.id, line=row.line, userid=row.userid, email=row.email, firstname=row.firstname,
        lastname=row.lastname, status=row.status, attempts=row.attempts, error=row.last_error, sent_at=row.sent_at,
        external_id=row.external_id, certificate_url=row.certificate_url, certificate_code=row.certificate_code,
        batch_id=row.batch_id,
    )


def _recipient_filters(job_id: int, status: Statuses, search: str | None) -> list:
    conditions = [R.job_id == job_id]
    if status:
        conditions.append(_in(R.status, status))
    text = (search or "").strip().lower()
    if text:
        conditions.append(R.email_norm.contains(text, autoescape=True))
    return conditions


def list_recipients(
    *, session: Session, job_id: int, status: Statuses = None, search: str | None = None, limit: int | None = None,
    offset: int = 0,
) -> list[RecipientPublic]:
    """A job's recipients in id order; `search` matches part of the address."""
    query = select(*RECIPIENT_COLUMNS).where(*_recipient_filters(job_id, status, search)).order_by(R.id).offset(offset)
    if limit is not None:
        query = query.limit(limit)
    return [_recipient(row) for row in session.execute(query)]


def recipients_page(
    *,
    session: Session,
    job_id: int,
    status: Statuses = None,
    search: str | None = None,
    after_id: int | None = None,
    before_id: int | None = None,
    last: bool = False,
    limit: int = 100,
) -> RecipientPagePublic:
    """One page of a job's recipients in id order, keyset-paged: after `after_id`, before
    `before_id`, the last page (`last`), or else the first. Never reads more than `limit` rows."""
    base = _recipient_filters(job_id, status, search)
    query = select(*RECIPIENT_COLUMNS).where(*base)
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
    return RecipientPagePublic(rows=[_recipient(row) for row in rows], total=total, start=start,
                               has_previous=start > 0, has_next=start + len(rows) < total)


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
            values["status"] = str(values["status"])
            for key in ("sent_at", "updated_at"):
                values[key] = values[key].isoformat() if values[key] else ""
            yield values
        last_id = rows[-1].id


# Callbacks to Moodle and delivery rates ---------------------------------------------------------------


def _deliveries(session: Session, *conditions, newest_first: bool = False, limit: int | None = 500,
                offset: int = 0) -> list[CallbackDeliveryPublic]:
    query = (
        select(D.id, D.job_id, J.uuid.label("job_uuid"), D.kind, D.batch_id, B.number.label("batch_number"),
               func.json_array_length(D.recipient_ids).label("updates"), D.url, D.status, D.attempts,
               D.last_status_code, D.last_error, D.next_attempt_at, D.created_at, D.delivered_at, D.updated_at)
        .select_from(CallbackDelivery.__table__.join(Job.__table__, J.id == D.job_id)
                     .outerjoin(Batch.__table__, B.id == D.batch_id))
        .where(*conditions).order_by(D.id.desc() if newest_first else D.id).offset(offset)
    )
    if limit is not None:
        query = query.limit(limit)
    return [CallbackDeliveryPublic(**row._mapping) for row in session.execute(query)]


def list_deliveries(*, session: Session, job_id: int | None = None, status: str | None = None,
                    newest_first: bool = True, limit: int | None = 100, offset: int = 0) -> list[CallbackDeliveryPublic]:
    """Callback deliveries, newest first unless told (a job's read best oldest first: batch 1, 2, ..., final)."""
    conditions = []
    if job_id is not None:
        conditions.append(D.job_id == job_id)
    if status is not None:
        if status not in set(DeliveryStatus):
            raise UnusableInput(f"Unknown delivery status {status!r}: use pending, delivered or failed.")
        conditions.append(D.status == status)
    return _deliveries(session, *conditions, newest_first=newest_first, limit=limit, offset=offset)


def failed_deliveries(*, session: Session, limit: int = 200) -> tuple[list[CallbackDeliveryPublic], int]:
    """Deliveries that used up their retry schedule, newest first, and how many there are."""
    failed = D.status == DeliveryStatus.FAILED
    total = session.execute(select(func.count()).where(failed)).scalar_one()
    return (_deliveries(session, failed, newest_first=True, limit=limit) if total and limit else []), total


def delivery_log(*, session: Session, delivery_id: int) -> tuple[CallbackDeliveryPublic, list[CallbackAttemptPublic]]:
    """One delivery and every attempt made (time, status code, duration, error, answer)."""
    found = _deliveries(session, D.id == delivery_id, limit=1)
    if not found:
        raise NotFound(f"No callback delivery {delivery_id}.")
    attempts = session.execute(select(CallbackAttempt.__table__).where(T.delivery_id == delivery_id).order_by(T.number))
    return found[0], [
        CallbackAttemptPublic(number=a.number, started_at=a.started_at, status_code=a.status_code, error=a.error,
                              duration_ms=a.duration_ms, update_count=a.update_count,
                              response_excerpt=a.response_excerpt, body_timestamp=a.body_timestamp)
        for a in attempts
    ]


def callback_stats(*, session: Session, job_id: int) -> CallbackStatsPublic:
    """A job's deliveries by outcome (the seeds' target: > 99 % delivered)."""
    counts = {str(status): n for status, n in session.execute(
        select(D.status, func.count()).where(D.job_id == job_id).group_by(D.status))}
    return CallbackStatsPublic(total=sum(counts.values()), delivered=counts.get(DeliveryStatus.DELIVERED, 0),
                               pending=counts.get(DeliveryStatus.PENDING, 0), failed=counts.get(DeliveryStatus.FAILED, 0))


def _rates(counts: dict) -> DeliveryRatesPublic:
    return DeliveryRatesPublic(delivered=sum(counts.values()), bounced=counts.get(RecipientStatus.BOUNCED, 0),
                               complained=counts.get(RecipientStatus.COMPLAINED, 0))


def delivery_rates(*, session: Session, job_id: int | None = None, company_id: str | None = None,
                   since: datetime | None = None) -> DeliveryRatesPublic:
    """Bounces and complaints over the messages that reached the provider, of a job, a company or all."""
    query = select(R.status, func.count()).where(_in(R.status, RECIPIENT_DELIVERED))
    if job_id is not None:
        query = query.where(R.job_id == job_id)
    if company_id is not None:
        query = query.where(R.job_id.in_(select(J.id).where(J.company_id == company_id)))
    if since is not None:
        query = query.where(R.sent_at >= since)
    return _rates(dict(session.execute(query.group_by(R.status)).all()))


def company_rates(*, session: Session) -> dict[str, DeliveryRatesPublic]:
    """`delivery_rates` of every company that has sent: {company id: rates}.

    Counted per job on the `recipients (job_id, status, id)` index, then summed per company:
    about three times faster than grouping a join by company (70 ms for 1,000,000 on SQLite)."""
    companies = dict(session.execute(select(J.id, J.company_id).where(J.company_id.is_not(None))).all())
    counts: dict[str, dict[str, int]] = {}
    for job_id, status, count in session.execute(
        select(R.job_id, R.status, func.count()).where(_in(R.status, RECIPIENT_DELIVERED)).group_by(R.job_id, R.status)
    ):
        if job_id in companies:
            by_status = counts.setdefault(companies[job_id], {})
            by_status[status] = by_status.get(status, 0) + count
    return {company_id: _rates(by_status) for company_id, by_status in counts.items()}


# Audit ------------------------------------------------------------------------------------------


def audit_entries(
    *, session: Session, search: str | None = None, limit: int = 200, offset: int = 0
) -> tuple[list[AuditEntryPublic], int]:
    """The audit log newest first; `search` matches actor, action, source or target."""
    conditions = []
    text = (search or "").strip()
    if text:
        conditions.append(or_(A.actor.contains(text, autoescape=True), A.action.contains(text, autoescape=True),
                              A.target.contains(text, autoescape=True), A.source == text))
    where = and_(True, *conditions)
    total = session.execute(select(func.count()).select_from(AuditEntry.__table__).where(where)).scalar_one()
    rows = session.execute(
        select(AuditEntry.__table__).where(where).order_by(A.at.desc(), A.id.desc()).limit(limit).offset(offset)
    ).all()
    return [
        AuditEntryPublic(id=r.id, at=r.at, actor=r.actor, source=r.source, action=r.action, target=r.target,
                         address=r.address, details=r.details or {})
        for r in rows
    ], total


# Suppression lists ------------------------------------------------------------------------------


def suppressions(
    *, session: Session, company_id: str | None, search: str | None = None, limit: int = 200, offset: int = 0
) -> tuple[list[SuppressionPublic], int]:
    """One company's suppression list, newest first; `search` matches the address or the reason."""
    S = Suppression.__table__.c
    conditions = [S.company_key == (NO_COMPANY if company_id is None else company_id)]
    text = (search or "").strip().lower()
    if text:
        conditions.append(or_(S.email_norm.contains(text, autoescape=True), S.reason.contains(text, autoescape=True)))
    total = session.execute(select(func.count()).select_from(Suppression.__table__).where(*conditions)).scalar_one()
    rows = session.execute(select(Suppression.__table__).where(*conditions)
                           .order_by(S.created_at.desc(), S.id.desc()).limit(limit).offset(offset)).all()
    return [
        SuppressionPublic(id=r.id, company_id=r.company_key or None, email=r.email_norm, source=r.source,
                          reason=r.reason, job_id=r.job_id, created_by=r.created_by, created_at=r.created_at)
        for r in rows
    ], total


# The dashboard ---------------------------------------------------------------------------------------


def _as_utc(value: datetime | str | None) -> datetime | None:
    """Aggregates (max/min) skip the column type: SQLite hands them back as naive or text."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def dashboard(
    *,
    session: Session,
    now: datetime | None = None,
    stuck_after: float = 300.0,
    failure_threshold: float = 0.10,
    failure_min_sample: int = 20,
    limit: int = 200,
) -> DashboardPublic:
    """Counters and the active jobs with their progress, rates and problems.

    Progress comes from the batches' counters (the engine updates them on every commit), or
    the job's own counters when those are ahead; rates from `recipients.sent_at`. It touches the
    jobs and batches tables plus a range of `recipients.sent_at` (`bench/console.py`)."""
    now = now or utcnow()
    open_jobs = _in(J.status, JOB_OPEN)
    job_rows = session.execute(
        select(*JOB_COLUMNS).where(open_jobs).order_by(J.created_at.desc(), J.id.desc()).limit(limit)
    ).all()
    by_status = {str(status): n for status, n in session.execute(
        select(J.status, func.count()).where(open_jobs).group_by(J.status))}
    ids = [row.id for row in job_rows]
    progress: dict[int, tuple[int, int, datetime | None]] = {}
    if ids:
        for job_id, sent, failed, last_finished in session.execute(
            select(B.job_id, func.sum(B.sent_count), func.sum(B.failed_count), func.max(B.finished_at))
            .where(B.job_id.in_(ids)).group_by(B.job_id)
        ):
            progress[job_id] = (int(sent or 0), int(failed or 0), _as_utc(last_finished))
    minute_ago, hour_ago = now - timedelta(minutes=1), now - timedelta(hours=1)
    recent = dict(session.execute(
        select(R.job_id, func.count()).where(R.sent_at >= minute_ago, R.sent_at <= now).group_by(R.job_id)
    ).all())
    sent_last_hour = session.execute(select(func.count()).where(R.sent_at >= hour_ago, R.sent_at <= now)).scalar_one()
    failed_recent = session.execute(
        select(func.coalesce(func.sum(J.failed_count), 0)).where(or_(open_jobs, J.finished_at >= hour_ago))
    ).scalar_one()

    outages = provider_outages(session=session)
    jobs: list[ActiveJobPublic] = []
    since_start_sent, since_start_seconds = 0, 0.0
    for row in job_rows:
        sent, failed, last_batch = progress.get(row.id, (0, 0, None))
        last_progress = max(filter(None, (row.last_progress_at, last_batch)), default=None)
        fields = _job_fields(row, sent=sent, failed=failed, last_progress_at=last_progress)
        rate = None
        if row.started_at and row.status == JobStatus.PROCESSING:
            elapsed = max((now - row.started_at).total_seconds(), 1.0)
            rate = fields["sent"] * 60.0 / elapsed
            since_start_sent += fields["sent"]
            since_start_seconds = max(since_start_seconds, elapsed)
        issues = job_issues(fields, now=now, stuck_after=stuck_after, failure_threshold=failure_threshold,
                            failure_min_sample=failure_min_sample)
        jobs.append(ActiveJobPublic(**fields, rate_per_minute=rate, recent_per_minute=float(recent.get(row.id, 0)),
                                    problems=[long for long, _ in issues], flags=[short for _, short in issues]))
    return DashboardPublic(
        now=now,
        active_jobs=sum(by_status.values()),
        queued_jobs=sum(by_status.get(s, 0) for s in JOB_WAITING),
        queued_recipients=sum(max(job.total - job.done, 0) for job in jobs),
        processing_jobs=by_status.get(JobStatus.PROCESSING, 0),
        sent_last_hour=sent_last_hour,
        failed_recent=int(failed_recent or 0),
        rate_last_minute=float(sum(recent.values())),
        rate_since_start=(since_start_sent * 60.0 / since_start_seconds) if since_start_seconds else None,
        jobs=jobs,
        problems=[outage.describe() for outage in outages]
        + [f"job {job.id}: {problem}" for job in jobs for problem in job.problems],
        outages=outages,
    )


def job_issues(job: dict, *, now: datetime, stuck_after: float, failure_threshold: float,
               failure_min_sample: int) -> list[tuple[str, str]]:
    """(in words, in a few characters) for each thing wrong with one job (`_job_fields`)."""
    found = []
    if job["status"] == JobStatus.PROCESSING:
        since = job["last_progress_at"] or job["started_at"] or job["created_at"]
        idle = (now - since).total_seconds()
        if idle > stuck_after:
            found.append((f"stuck: no progress for {format_duration(idle)}", f"stuck {format_duration(idle)}"))
    done = job["sent"] + job["failed"]
    if done >= failure_min_sample and job["failed"] / done > failure_threshold:
        share = f"{job['failed'] / done:.0%}"
        found.append((f"failure rate {share}", f"{share} failed"))
    return found


def format_duration(seconds: float) -> str:
    """25m, 1h01m, 1d1h: a duration as the dashboard shows it."""
    seconds = int(max(seconds, 0))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86400:
        return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"
    return f"{seconds // 86400}d{(seconds % 86400) // 3600}h"
