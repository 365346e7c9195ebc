"""Callbacks to Moodle and delivery rates, the audit log, suppression lists."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import and_, func, or_, select
from sqlmodel import Session

from backend.core.errors import NotFound, UnusableInput
from backend.jobs.public import (
    AuditEntryPublic,
    CallbackAttemptPublic,
    CallbackDeliveryPublic,
    CallbackStatsPublic,
    DeliveryRatesPublic,
    SuppressionPublic,
)
from models import (
    NO_COMPANY,
    RECIPIENT_DELIVERED,
    AuditEntry,
    Batch,
    CallbackAttempt,
    CallbackDelivery,
    DeliveryStatus,
    Job,
    RecipientStatus,
    Suppression,
)

from backend.jobs.queries.tables import A, B, D, J, R, T, _in


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
