"""Recipients of a job: counts by filter, keyset pages, the streamed job log."""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy import func, select
from sqlmodel import Session

from backend.jobs.public import (
    RecipientPagePublic,
    RecipientPublic,
)
from models import (
    Recipient,
)

from backend.jobs.queries.tables import R, Statuses, _in


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
