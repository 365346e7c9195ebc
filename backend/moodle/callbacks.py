"""Signed status callbacks to Moodle: created with the status change, delivered with retries.

A delivery names the recipients it reports on; the body is built from their current rows at
every attempt, and stamped and signed at every attempt. So a retry a day later passes
Moodle's 300 s window, and a late retry never reports an older status than one already sent:
the receiver ends with the same result however often, and in whatever order, it is delivered.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import httpx
from sqlalchemy import or_, update
from sqlmodel import Session, select

from backend.companies.resolution import resolve
from backend.core import audit, outbound
from backend.core.errors import NotFound
from backend.core.settings import get_settings
from backend.moodle import signing
from models import Batch, DeliveryStatus, Job, Recipient, RecipientStatus, utcnow
from models.callbacks import CallbackAttempt, CallbackDelivery

# Seconds before retry 1, 2, ...: spans a day, so Moodle can be down overnight.
DEFAULT_RETRY_SCHEDULE = (5, 30, 120, 600, 3600, 21600, 86400)
DEFAULT_MAX_UPDATES = 1000
DEFAULT_TIMEOUT = 15.0
CONNECT_TIMEOUT = 3.0
LEASE_SECONDS = 120
# A delayed message may arrive a little early (clocks of two hosts); don't drop it for that.
EARLY_TOLERANCE = timedelta(seconds=2)
PENDING, DELIVERED, FAILED = DeliveryStatus.PENDING, DeliveryStatus.DELIVERED, DeliveryStatus.FAILED

# mani's recipient statuses in the words Moodle's plugin knows (seed 000, Task 4.2.3).
MOODLE_STATUS = {
    RecipientStatus.PENDING: "pending",
    RecipientStatus.PROCESSING: "processing",
    RecipientStatus.RETRY_PENDING: "processing",
    RecipientStatus.SENT: "completed",
    RecipientStatus.SKIPPED: "completed",
    RecipientStatus.COMPLAINED: "completed",
    RecipientStatus.FAILED: "failed",
    RecipientStatus.PERMANENTLY_FAILED: "failed",
    RecipientStatus.BOUNCED: "failed",
    RecipientStatus.CANCELLED: "failed",
    # Not sent: the address is on the company's suppression list (error_message says why).
    RecipientStatus.SUPPRESSED: "failed",
}
MOODLE_JOB_STATUS = {"completed": "completed", "partial_failure": "completed", "failed": "failed",
                     "cancelled": "failed"}


@dataclass(slots=True)
class DeliveryOutcome:
    delivery_id: int
    # delivered, retry (next_attempt_at is set), failed (dead), skipped (not due, taken, or done).
    result: str
    status_code: int | None = None
    error: str | None = None
    next_attempt_at: datetime | None = None
    attempt: int = 0


def _timeout() -> httpx.Timeout:
    """A few seconds for Moodle to accept the connection, `callback_timeout` for everything else."""
    total = float(_setting("callback_timeout", DEFAULT_TIMEOUT))
    return httpx.Timeout(total, connect=min(float(_setting("callback_connect_timeout", CONNECT_TIMEOUT)), total))


def _setting(name: str, default):
    value = getattr(get_settings(), name, None)
    return default if value in (None, "", []) else value


def retry_schedule() -> tuple[int, ...]:
    return tuple(int(v) for v in _setting("callback_retry_schedule", DEFAULT_RETRY_SCHEDULE))


def moodle_status(status: str) -> str:
    """The word Moodle's plugin stores for one of mani's recipient statuses."""
    return MOODLE_STATUS.get(status, status)


def resolve_target(*, session: Session, job: Job) -> tuple[str | None, str | None]:
    """(callback URL, secret) for a job: the job's URL else its company's; the company's or the global
    `callback_secret`. Never `cloud_callback_secret`, which opens mani's inbound callbacks."""
    resolved = resolve(session=session, company_id=job.company_id)
    url = job.callback_url or resolved_value(resolved, "callback_url")
    secret = resolved_value(resolved, "callback_secret")
    return url or None, secret or None


# mani's own inbound endpoints: a callback URL ending here would post mani's callbacks to itself.
OWN_PATHS = ("/api/v1/callbacks", "/api/v1/jobs", "/webhooks/")


def points_to_mani(url: str, own_hosts: Iterable[str] = ()) -> bool:
    """Does `url` lead to one of mani's own endpoints (by path, or by one of `own_hosts`, `host[:port]`)?"""
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return False
    host = (parts.hostname or "").lower().rstrip(".")
    path = "/" + parts.path.lstrip("/")
    if any(path.rstrip("/") == own.rstrip("/") or path.startswith(own) for own in OWN_PATHS):
        return True
    for own in own_hosts:
        own_parts = urlsplit(own if "://" in own else f"//{own}")
        own_port = own_parts.port or (443 if own_parts.scheme == "https" else 80 if own_parts.scheme else port)
        if (own_parts.hostname or "").lower().rstrip(".") == host and own_port == port:
            return True
    return False


def inbound_secret(*, session: Session, company_id: str | None) -> str | None:
    """The key external workers sign their callbacks to mani with: `cloud_callback_secret` (the
    company's, else the global one). It must not be the key mani signs Moodle's callbacks with
    (`callback_secret`): a body mani signed for Moodle must not verify when posted back to mani."""
    return resolved_value(resolve(session=session, company_id=company_id), "cloud_callback_secret") or None


def resolved_value(resolved, name: str):
    """One value of `company_settings.resolve(...)`, whether it reads as attributes or a mapping."""
    value = getattr(resolved, name, None)
    if value is None and hasattr(resolved, "get"):
        value = resolved.get(name)
    return value


# Creating deliveries (called by the engine, the webhooks and the inbound API) ---------------

def _create(session: Session, *, job: Job, url: str, kind: str, recipient_ids: Sequence[int],
            batch_id: int | None = None, include_job_status: bool = False) -> list[int]:
    now = utcnow()
    size = int(_setting("callback_max_updates", DEFAULT_MAX_UPDATES))
    chunks = [list(recipient_ids[i:i + size]) for i in range(0, len(recipient_ids), size)] or [[]]
    deliveries = [
        CallbackDelivery(job_id=job.id, batch_id=batch_id, kind=kind, url=url, recipient_ids=chunk,
                         include_job_status=include_job_status, next_attempt_at=now, created_at=now,
                         updated_at=now)
        for chunk in chunks
    ]
    session.add_all(deliveries)
    session.flush()
    return [d.id for d in deliveries]


def on_batch_finished(*, session: Session, batch: Batch) -> list[int]:
    """Record the callback for a finished batch (none without a callback URL); returns delivery ids."""
    job = session.get(Job, batch.job_id)
    url, _ = resolve_target(session=session, job=job)
    if not url:
        return []
    ids = session.exec(select(Recipient.id).where(Recipient.batch_id == batch.id).order_by(Recipient.id)).all()
    return _create(session, job=job, url=url, kind="batch", recipient_ids=ids, batch_id=batch.id)


def on_job_finished(*, session: Session, job: Job) -> list[int]:
    """Record the final callback: the job's status, and recipients no batch callback covers."""
    url, _ = resolve_target(session=session, job=job)
    if not url:
        return []
    covered = select(CallbackDelivery.batch_id).where(
        CallbackDelivery.job_id == job.id, CallbackDelivery.kind == "batch"
    )
    # Normally empty: every batch reported itself. A job cancelled or failed before its
    # batches ran has recipients nobody reported yet.
    uncovered = session.exec(
        select(Recipient.id)
        .where(Recipient.job_id == job.id)
        .where(or_(Recipient.batch_id.is_(None), Recipient.batch_id.not_in(covered)))
        .order_by(Recipient.id)
    ).all()
    return _create(session, job=job, url=url, kind="final", recipient_ids=uncovered, include_job_status=True)


def on_recipients_changed(*, session: Session, job: Job, recipient_ids: Iterable[int]) -> list[int]:
    """Report recipients changed outside a batch run (bounces, external workers).

    Joins a pending delivery of the same job that no attempt has touched yet, so a burst of
    bounce events becomes one request, not one per recipient.
    """
    ids = sorted(set(recipient_ids))
    url, _ = resolve_target(session=session, job=job) if ids else (None, None)
    if not url:
        return []
    size = int(_setting("callback_max_updates", DEFAULT_MAX_UPDATES))
    open_delivery = session.exec(
        select(CallbackDelivery)
        .where(CallbackDelivery.job_id == job.id, CallbackDelivery.kind == "updates")
        .where(CallbackDelivery.status == PENDING, CallbackDelivery.attempts == 0)
        .where(CallbackDelivery.lease_until.is_(None))
        .order_by(CallbackDelivery.id.desc())
        .with_for_update()
    ).first()
    if open_delivery is not None:
        merged = sorted(set(open_delivery.recipient_ids) | set(ids))
        if len(merged) <= size:
            open_delivery.recipient_ids = merged
            open_delivery.updated_at = utcnow()
            session.add(open_delivery)
            session.flush()
            return [open_delivery.id]
    return _create(session, job=job, url=url, kind="updates", recipient_ids=ids)


# The body ---------------------------------------------------------------------------------

def _userid(value: str | None):
    # Moodle user ids are integers; the Job JSON sends them as numbers, so answer in kind.
    if value is not None and value.isdigit():
        return int(value)
    return value


def recipient_update(recipient: Recipient) -> dict:
    """One entry of `recipient_updates` in the seed's Callback JSON shape."""
    delivered = recipient.status in (RecipientStatus.SENT, RecipientStatus.SKIPPED)
    update_ = {
        "userid": _userid(recipient.userid),
        "status": moodle_status(recipient.status),
        "mani_status": recipient.status,
        "certificate_url": recipient.certificate_url,
        "timesent": int(recipient.sent_at.timestamp()) if recipient.sent_at else None,
        "error_message": None if delivered else recipient.last_error,
        "attempts": recipient.attempts,
    }
    if recipient.userid is None:
        # Without a user id Moodle can only match by address (a CSV job given a callback URL).
        update_["email"] = recipient.email
    return update_


def build_payload(*, session: Session, delivery: CallbackDelivery, job: Job | None = None) -> dict:
    """The body of `delivery` from the current rows, without `timestamp` (added at send time)."""
    job = job or session.get(Job, delivery.job_id)
    updates: list[dict] = []
    ids = list(delivery.recipient_ids)
    for start in range(0, len(ids), 500):
        rows = session.exec(select(Recipient).where(Recipient.id.in_(ids[start:start + 500]))).all()
        updates.extend(recipient_update(r) for r in sorted(rows, key=lambda r: r.id))
    # `source` is signed with the rest: mani's inbound endpoint refuses a body that says it is mani's.
    payload: dict = {"job_id": job.uuid, "source": "mani", "recipient_updates": updates, "callback_id": delivery.id}
    if delivery.batch_id is not None:
        batch = session.get(Batch, delivery.batch_id)
        payload["batch"] = batch.number if batch else None
    if delivery.include_job_status:
        payload.update(
            final=True,
            status=MOODLE_JOB_STATUS.get(job.status, job.status),
            mani_status=job.status,
            counts={"total": job.total, "sent": job.sent_count, "failed": job.failed_count,
                    "bounced": job.bounced_count, "complained": job.complained_count},
        )
        if job.error:  # why the job failed as a whole (an outage longer than allowed, a route)
            payload["error"] = job.error
    return payload


# Delivering -------------------------------------------------------------------------------

def _claim(session: Session, delivery_id: int, now: datetime) -> bool:
    result = session.execute(
        update(CallbackDelivery)
        .where(CallbackDelivery.id == delivery_id, CallbackDelivery.status == PENDING)
        .where(or_(CallbackDelivery.lease_until.is_(None), CallbackDelivery.lease_until < now))
        .where(or_(CallbackDelivery.next_attempt_at.is_(None),
                   CallbackDelivery.next_attempt_at <= now + EARLY_TOLERANCE))
        .values(lease_until=now + timedelta(seconds=LEASE_SECONDS))
    )
    return result.rowcount == 1


def deliver(*, session: Session, delivery_id: int, http_client: httpx.Client,
            now: datetime | None = None) -> DeliveryOutcome:
    """Make one attempt if the delivery is due and not taken; records it and schedules the next.

    Commits once, after claiming the delivery and before the request: a network call must
    not hold the database's write lock. The caller's scope commits the result.
    """
    now = now or utcnow()
    if not _claim(session, delivery_id, now):
        session.commit()
        return DeliveryOutcome(delivery_id, "skipped")
    delivery = session.get(CallbackDelivery, delivery_id, populate_existing=True)
    job = session.get(Job, delivery.job_id)
    _, secret = resolve_target(session=session, job=job)
    payload = build_payload(session=session, delivery=delivery, job=job)
    session.commit()

    attempt = CallbackAttempt(delivery_id=delivery_id, number=delivery.attempts + 1, started_at=now,
                              update_count=len(payload["recipient_updates"]))
    started = time.monotonic()
    if secret is None:
        attempt.error = "No callback secret is configured for this job's company or globally."
    elif points_to_mani(delivery.url):
        attempt.error = "The callback URL is one of mani's own endpoints; mani does not post callbacks to itself."
    elif (unsafe := _unsafe(delivery.url)) is not None:
        attempt.error = unsafe
    else:
        body, signature = signing.signed_body(payload, secret, now=now.timestamp())
        attempt.body_timestamp = int(now.timestamp())
        try:
            # Streamed: only the status and the first bytes of the reply are read, and kept cleaned.
            with http_client.stream(
                "POST", delivery.url, content=body,
                headers={"Content-Type": "application/json", signing.SIGNATURE_HEADER: signature},
                timeout=_timeout(),
            ) as response:
                attempt.status_code = response.status_code
                attempt.response_excerpt = outbound.reply_excerpt(_first_bytes(response, 2048))
            if not response.is_success:
                attempt.error = f"HTTP {response.status_code}"
        except Exception as error:  # noqa: BLE001 - any failure to post is a failed attempt, recorded
            attempt.error = f"{type(error).__name__}: {error}"[:1000]
    attempt.duration_ms = int((time.monotonic() - started) * 1000)
    return _record(session, delivery, attempt, now)


def _unsafe(url: str) -> str | None:
    """Why the SSRF guard refuses `url` now (resolved at send time), or None."""
    try:
        outbound.check_url(url, what="callback URL")
    except outbound.UnsafeUrl as error:
        return str(error)
    return None


def _first_bytes(response: httpx.Response, limit: int) -> bytes:
    taken = bytearray()
    for chunk in response.iter_bytes():
        taken += chunk
        if len(taken) >= limit:
            break
    return bytes(taken[:limit])


def _record(session: Session, delivery: CallbackDelivery, attempt: CallbackAttempt,
            now: datetime) -> DeliveryOutcome:
    schedule = retry_schedule()
    delivery.attempts += 1
    delivery.lease_until = None
    delivery.last_status_code = attempt.status_code
    delivery.last_error = attempt.error
    delivery.updated_at = utcnow()
    if attempt.error is None:
        delivery.status, delivery.delivered_at, delivery.next_attempt_at = DELIVERED, now, None
        result = "delivered"
    elif delivery.retry_index < len(schedule):
        delivery.next_attempt_at = now + timedelta(seconds=schedule[delivery.retry_index])
        delivery.retry_index += 1
        result = "retry"
    else:
        delivery.status, delivery.next_attempt_at = FAILED, None
        result = "failed"
    session.add(attempt)
    session.add(delivery)
    session.flush()
    return DeliveryOutcome(delivery.id, result, attempt.status_code, attempt.error,
                           delivery.next_attempt_at, delivery.attempts)


def due_deliveries(*, session: Session, now: datetime | None = None, grace: float = 30.0,
                   limit: int = 1000) -> list[int]:
    """Pending deliveries whose attempt is overdue by `grace` seconds (a lost or never-sent message).

    Marks them due *now*, so the next sweep within `grace` does not enqueue them again.
    """
    now = now or utcnow()
    ids = session.exec(
        select(CallbackDelivery.id)
        .where(CallbackDelivery.status == PENDING)
        .where(CallbackDelivery.next_attempt_at <= now - timedelta(seconds=grace))
        .where(or_(CallbackDelivery.lease_until.is_(None), CallbackDelivery.lease_until < now))
        .order_by(CallbackDelivery.next_attempt_at)
        .limit(limit)
    ).all()
    if ids:
        session.execute(update(CallbackDelivery).where(CallbackDelivery.id.in_(ids)).values(next_attempt_at=now))
    return list(ids)


# Admin: redeliver (front ends read deliveries through backend.jobs.queries) ------------------

def get_delivery(*, session: Session, delivery_id: int) -> CallbackDelivery:
    delivery = session.get(CallbackDelivery, delivery_id)
    if delivery is None:
        raise NotFound(f"No callback delivery {delivery_id}.")
    return delivery


def redeliver(*, session: Session, delivery_ids: Iterable[int], actor: str, source: str,
              now: datetime | None = None) -> list[int]:
    """Make deliveries due now with a fresh retry schedule (delivered ones are sent again).

    The receiver gets the recipients' current state, so a redelivery never changes its
    result except to bring it up to date. The caller enqueues the returned ids after commit.
    """
    now = now or utcnow()
    done: list[int] = []
    for delivery_id in delivery_ids:
        delivery = get_delivery(session=session, delivery_id=delivery_id)
        previous = delivery.status
        delivery.status, delivery.retry_index, delivery.lease_until = PENDING, 0, None
        delivery.next_attempt_at, delivery.updated_at = now, now
        session.add(delivery)
        audit.record(session=session, actor=actor, source=source, action="callback.redeliver",
                     target=f"delivery:{delivery_id}", details={"job_id": delivery.job_id, "was": previous})
        done.append(delivery_id)
    session.flush()
    return done


def failed_delivery_ids(*, session: Session, job_id: int | None = None) -> list[int]:
    query = select(CallbackDelivery.id).where(CallbackDelivery.status == FAILED)
    if job_id is not None:
        query = query.where(CallbackDelivery.job_id == job_id)
    return list(session.exec(query.order_by(CallbackDelivery.id)).all())
