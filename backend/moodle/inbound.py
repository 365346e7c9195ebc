"""Status updates from an external worker (the seeds' Lambda or Cloudflare worker).

The same contract as mani's own callbacks to Moodle: the Callback JSON, `X-Signature` over the
raw body, a 300 s window. A body already accepted inside its window is refused as a replay.

A job whose batches mani handed to the company's own worker (`backend.delivery.handoff`) is
checked with the company's `cloud_callback_secret` (the stack's `CallbackSecret`), and its
updates name mani's `recipient_id`. Each batch closes when none of its recipients is open any
more, with the batch callback to Moodle that mani's own path sends; a temporary password is
wiped once its recipient is reported final.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from sqlalchemy import delete, func, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, select

from backend.companies.resolution import resolve
from backend.core import contract
from backend.core.errors import Conflict, InvalidFields, MalformedInput, NotAuthorized, NotFound, Refused
from backend.core.followups import Followups
from backend.mail.addresses import normalize_email
from backend.moodle import callbacks, signing
from backend.moodle.contracts import CallbackIn
from models import (
    BATCH_FINAL,
    RECIPIENT_DELIVERED,
    RECIPIENT_FINAL,
    RECIPIENT_OPEN,
    Batch,
    BatchStatus,
    Job,
    Recipient,
    RecipientStatus,
    utcnow,
)
from models.callbacks import SeenCallback

S = RecipientStatus
# The seeds' words and mani's own, for what a worker reports.
WORKER_STATUS = {
    "completed": S.SENT, "sent": S.SENT, "delivered": S.SENT, "failed": S.PERMANENTLY_FAILED,
    "permanently_failed": S.PERMANENTLY_FAILED, "bounced": S.BOUNCED, "complained": S.COMPLAINED,
    "processing": S.PROCESSING, "pending": S.PENDING, "retry_pending": S.RETRY_PENDING, "retrying": S.RETRY_PENDING,
    "skipped": S.SKIPPED, "suppressed": S.SUPPRESSED, "cancelled": S.CANCELLED,
}
_CHUNK = 500
# What a worker's report may move a recipient to (BRIEF.md, "Status machines"). An open recipient
# goes anywhere; `sent` only learns of a later bounce or complaint, a bounce of a complaint;
# every other final status (skipped, suppressed, cancelled, permanently_failed, complained)
# is never re-opened or rewritten by a callback.
LATER_EVENTS = {S.SENT: frozenset({S.BOUNCED, S.COMPLAINED}), S.BOUNCED: frozenset({S.COMPLAINED})}


def legal_transition(current: str, new: str) -> bool:
    if current in RECIPIENT_OPEN:
        return True
    return new in LATER_EVENTS.get(current, frozenset())


@dataclass(slots=True)
class InboundResult:
    job_id: int
    job_uuid: str
    applied: int = 0
    unchanged: int = 0
    unknown: list = field(default_factory=list)
    # Updates that would break the recipient state machine: {"recipient", "from", "to"}.
    refused: list = field(default_factory=list)
    open_remaining: int = 0
    delivery_ids: list[int] = field(default_factory=list)

    @property
    def followups(self) -> Followups:
        """The callbacks the changes call for, and the job's finish once no recipient is open."""
        # Only a report that changed something can finish the job (a no-op never makes a callback).
        finished = self.open_remaining == 0 and (self.applied > 0 or bool(self.delivery_ids))
        return Followups(callback_ids=list(self.delivery_ids), finish_job_ids=[self.job_id] if finished else [])


def _job_of(session: Session, body: bytes) -> Job | None:
    """The job a body names, read before its signature is checked (it says which key checks it)."""
    try:
        # Only the job_id is wanted here; the body is checked in full once its signature is.
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    job_uuid = payload.get("job_id") if isinstance(payload, dict) else None
    if not isinstance(job_uuid, str) or len(job_uuid) > 36:
        return None
    return session.exec(select(Job).where(Job.uuid == job_uuid)).first()


def handed_off(session: Session, job_id: int) -> bool:
    """Whether any batch of the job went to the company's own worker."""
    return session.exec(select(Batch.id).where(Batch.job_id == job_id, Batch.handoff_at.is_not(None)).limit(1)).first() is not None


def _secrets(session: Session, job: Job | None) -> tuple[str | None, str | None]:
    """(the inbound key that checks this body, the key mani signs Moodle's callbacks for it with).

    Workers sign with `cloud_callback_secret` (the company's, else the global one); a job that
    was never handed off has no worker, but an external worker may still report on it the same way.
    """
    company_id = job.company_id if job is not None else None
    inbound = callbacks.inbound_secret(session=session, company_id=company_id)
    outbound = callbacks.resolve_target(session=session, job=job)[1] if job is not None else None
    return inbound, outbound


def guard_replay(*, session: Session, body: bytes, now: datetime, window: int) -> bool:
    """Remember this body's digest while a copy could still pass the window; False if already seen."""
    session.execute(delete(SeenCallback).where(SeenCallback.expires_at < now))
    values = {"digest": hashlib.sha256(body).hexdigest(), "expires_at": now + timedelta(seconds=2 * window + 60)}
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    statement = insert(SeenCallback).values(**values).on_conflict_do_nothing().returning(SeenCallback.digest)
    # RETURNING, not rowcount: psycopg reports -1 for an INSERT ... ON CONFLICT.
    return session.execute(statement).first() is not None


def _validate(payload: dict) -> list[dict]:
    """The updates, checked against the published Callback JSON and for what it cannot say."""
    updates = payload.get("recipient_updates")
    if not isinstance(updates, list):
        raise InvalidFields("recipient_updates must be a list.",
                            [{"field": "recipient_updates", "message": "must be a list"}])
    errors = []
    for index, entry in enumerate(updates):
        where = f"recipient_updates[{index}]"
        if not isinstance(entry, dict):
            errors.append({"field": where, "message": "must be an object"})
            continue
        rid = entry.get("recipient_id")
        if rid is not None and (isinstance(rid, bool) or not isinstance(rid, int)):
            errors.append({"field": f"{where}.recipient_id", "message": "must be mani's recipient id (a whole number)"})
        if rid is None and entry.get("userid") is None and not isinstance(entry.get("email"), str):
            errors.append({"field": f"{where}.userid", "message": "recipient_id, userid or email is required"})
        if str(entry.get("status", "")).lower() not in WORKER_STATUS:
            errors.append({"field": f"{where}.status", "message": f"must be one of {', '.join(WORKER_STATUS)}"})
    named = {e["field"] for e in errors}
    errors.extend(e for e in contract.problems(CallbackIn, payload) if e["field"] not in named)
    if errors:
        raise InvalidFields(f"{len(errors)} field(s) are not valid; nothing was applied.", errors[:200])
    return updates


def _lookup(session: Session, job_id: int, updates: list[dict]) -> tuple[dict, dict, dict]:
    ids = sorted({u["recipient_id"] for u in updates if u.get("recipient_id") is not None})
    userids = sorted({str(u["userid"]) for u in updates if u.get("recipient_id") is None and u.get("userid") is not None})
    emails = sorted({normalize_email(u["email"]) for u in updates
                     if u.get("recipient_id") is None and u.get("userid") is None})
    by_id, by_userid, by_email = {}, {}, {}
    for start in range(0, len(ids), _CHUNK):
        for row in session.exec(select(Recipient).where(
                Recipient.job_id == job_id, Recipient.id.in_(ids[start:start + _CHUNK]))):
            by_id[row.id] = row
    for start in range(0, len(userids), _CHUNK):
        for row in session.exec(select(Recipient).where(
                Recipient.job_id == job_id, Recipient.userid.in_(userids[start:start + _CHUNK]))):
            by_userid.setdefault(row.userid, row)
    for start in range(0, len(emails), _CHUNK):
        for row in session.exec(select(Recipient).where(
                Recipient.job_id == job_id, Recipient.email_norm.in_(emails[start:start + _CHUNK]))):
            by_email.setdefault(row.email_norm, row)
    return by_id, by_userid, by_email


def apply_updates(*, session: Session, job: Job, updates: list[dict], now: datetime) -> InboundResult:
    """Write the updates in bulk; a final status is never moved back to an open one (late arrivals)."""
    result = InboundResult(job_id=job.id, job_uuid=job.uuid)
    handoff = handed_off(session, job.id)
    by_id, by_userid, by_email = _lookup(session, job.id, updates)
    changes: dict[int, dict] = {}
    batches: set[int] = set()
    for entry in updates:
        if entry.get("recipient_id") is not None:
            row = by_id.get(entry["recipient_id"])
        elif entry.get("userid") is not None:
            row = by_userid.get(str(entry["userid"]))
        else:
            row = by_email.get(normalize_email(entry["email"]))
        if row is None:
            result.unknown.append(next((entry.get(k) for k in ("recipient_id", "userid", "email")
                                        if entry.get(k) is not None), None))
            continue
        if row.batch_id is not None:
            batches.add(row.batch_id)
        status = WORKER_STATUS[str(entry["status"]).lower()]
        current = changes.get(row.id, {}).get("status", row.status)
        if status == current:
            result.unchanged += 1  # a no-op: nothing written, no callback
            continue
        if not legal_transition(current, status):
            result.unchanged += 1
            result.refused.append({"recipient": entry.get("userid") if entry.get("userid") is not None
                                   else entry.get("email"), "from": str(current), "to": str(status)})
            continue
        sent_at = row.sent_at
        if entry.get("timesent") is not None:
            sent_at = datetime.fromtimestamp(float(entry["timesent"]), tz=timezone.utc)
        elif status == S.SENT and sent_at is None:
            sent_at = now
        changes[row.id] = {
            "id": row.id, "status": status, "sent_at": sent_at, "updated_at": now,
            "last_error": None if status == S.SENT else (entry.get("error_message") or row.last_error),
            "attempts": entry["attempts"] if entry.get("attempts") is not None else row.attempts,
            "certificate_url": entry.get("certificate_url") or row.certificate_url,
            # The worker had the password in its message; once it reports, mani keeps no copy.
            "secret": None if status in RECIPIENT_FINAL else row.secret,
        }
    if changes:
        session.execute(update(Recipient), list(changes.values()))
    result.applied = len(changes)
    counts = dict(session.exec(
        select(Recipient.status, func.count()).where(Recipient.job_id == job.id).group_by(Recipient.status)
    ).all())
    # The worker did the sending, so the job's counters come from what it reported; a body of
    # no-ops changes nothing at all.
    if changes:
        session.execute(update(Job).where(Job.id == job.id).values(
            sent_count=sum(counts.get(s, 0) for s in RECIPIENT_DELIVERED),
            failed_count=counts.get(S.PERMANENTLY_FAILED, 0), bounced_count=counts.get(S.BOUNCED, 0),
            complained_count=counts.get(S.COMPLAINED, 0), last_progress_at=now, updated_at=now,
        ))
    result.open_remaining = sum(counts.get(s, 0) for s in RECIPIENT_OPEN)
    if handoff:
        result.delivery_ids = close_reported_batches(session=session, batch_ids=sorted(batches), now=now)
    elif changes:
        result.delivery_ids = callbacks.on_recipients_changed(session=session, job=job, recipient_ids=list(changes))
    return result


def close_reported_batches(*, session: Session, batch_ids: list[int], now: datetime) -> list[int]:
    """Stamp the handed-off batches reported on; close those with no open recipient left (with the
    batch callback to Moodle, as mani's own path sends). Returns the callback deliveries."""
    if not batch_ids:
        return []
    table = Batch.__table__
    session.execute(update(table).where(table.c.id.in_(batch_ids), table.c.handoff_at.is_not(None))
                    .values(reported_at=now))
    counts: dict[int, dict] = {}
    for batch_id, status, count in session.execute(
            select(Recipient.batch_id, Recipient.status, func.count())
            .where(Recipient.batch_id.in_(batch_ids)).group_by(Recipient.batch_id, Recipient.status)):
        counts.setdefault(batch_id, {})[status] = count
    delivery_ids: list[int] = []
    for batch in session.exec(select(Batch).where(Batch.id.in_(batch_ids), Batch.handoff_at.is_not(None))
                              .with_for_update()):
        own = counts.get(batch.id, {})
        if batch.status in BATCH_FINAL or any(own.get(s) for s in RECIPIENT_OPEN):
            continue
        batch.sent_count = sum(own.get(s, 0) for s in RECIPIENT_DELIVERED)
        batch.failed_count = own.get(S.PERMANENTLY_FAILED, 0)
        batch.status = (BatchStatus.COMPLETED if batch.failed_count == 0 else
                        BatchStatus.PARTIAL_FAILURE if batch.sent_count else BatchStatus.FAILED)
        batch.finished_at, batch.lease_until = now, None
        session.add(batch)
        session.flush()
        delivery_ids += callbacks.on_batch_finished(session=session, batch=batch)
    return delivery_ids


def receive_worker_callback(*, session: Session, body: bytes, signature: str | None,
                            now: datetime | None = None, window: int = signing.WINDOW_SECONDS) -> InboundResult:
    """Check and apply one signed worker callback. Raises NotAuthorized (no secret, a bad signature or
    a stale timestamp), MalformedInput, NotFound, InvalidFields, or Conflict for a replayed body."""
    now = now or utcnow()
    job = _job_of(session, body)
    secret, outbound = _secrets(session, job)
    if secret is not None and secret == outbound:
        raise NotAuthorized("cloud_callback_secret is also the key mani signs Moodle's callbacks with; give "
                            "callback_secret a key of its own, or mani's callbacks would be accepted back.",
                            code="same_key")
    if secret is None:
        raise NotAuthorized("No callback secret is configured, so nothing can be verified.", code="bad_signature")
    try:  # a bad signature or a stale timestamp is NotAuthorized (401) as it stands
        payload = signing.verify(body, signature, secret, now=now.timestamp(), window=window)
    except signing.NotJson as error:
        raise MalformedInput(str(error)) from None
    if payload.get("source") == "mani":
        raise Refused("This is one of mani's own callbacks; it is not accepted back.", code="own_callback")
    if job is None:
        raise NotFound("No job has this job_id.")
    updates = _validate(payload)
    if not guard_replay(session=session, body=body, now=now, window=window):
        raise Conflict("This body was already accepted.", code="replay")
    return apply_updates(session=session, job=job, updates=updates, now=now)
