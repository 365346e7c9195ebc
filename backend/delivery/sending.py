"""Running one batch: claim it, render and send in chunks, record each chunk, settle.

The network work happens outside any transaction; each chunk's results are written in one
short transaction that also renews the batch's lease.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from backend.companies.resolution import resolve
from backend.core.field_cipher import field_cipher
from backend.core.followups import Followups
from backend.core.settings import Settings, get_settings
from backend.delivery import circuit, handoff
from backend.delivery.engine import (
    Claim,
    Outcomes,
    SessionFactory,
    claim_batch,
    fail_for_outage,
    mark_sending,
    record_outcomes,
    release_after_error,
    settle_batch,
)
from backend.mail.outgoing import certificate_attachment, outgoing_message
from backend.mail.providers import get_provider
from backend.mail.providers.base import Outcome, OutgoingMessage, SendResult
from backend.mail.ratelimit import RateLimitTimeout, get_limiter
from models import Batch, BatchStatus, Job, JobStatus, Recipient, utcnow
from models.db import session_scope

log = logging.getLogger(__name__)

# How long to wait after a throttling answer that named no time.
DEFAULT_THROTTLE_SECONDS = 2.0
# A worker thread waits for its company's rate limit at most this long; a longer wait sends the
# batch back to the broker with a delay (plus up to RATE_JITTER_SECONDS, so waiting batches of
# one company do not all wake at once).
RATE_WAIT_INLINE_SECONDS = 0.5
RATE_JITTER_SECONDS = 0.5
RATE_CACHE_SECONDS = 5.0
# The sending loop looks at the job's state (pause, cancel) at least this often: a chunk is
# sized to take about this long.
STATE_CHECK_SECONDS = 1.0
FIRST_CHUNK = 10
STOPPED = (JobStatus.PAUSED, JobStatus.CANCELLED)


@dataclass(slots=True)
class BatchPlan:
    """What a batch run needs to know beyond its rows, resolved once per batch."""

    provider_name: str
    sender: str
    retry_schedule: list[int]
    company_settings: dict[str, Any] = field(default_factory=dict)
    rate_limit: float | None = None


def plan_batch(*, session, job: Job, settings: Settings) -> BatchPlan:
    resolved = resolve(session=session, company_id=job.company_id)
    schedule = resolved.get("cloud_retry_policy") or settings.retry_schedule
    sender = resolved.get("sender") or settings.sender
    sender_name = resolved.get("sender_name")
    if sender_name and "<" not in sender:
        sender = f"{sender_name} <{sender}>"
    # A company's rate limit holds on every route: its own relay has limits too.
    rate = resolved.get("rate_limit") if job.company_id else None
    return BatchPlan(
        provider_name=job.provider or resolved.get("email_provider") or settings.email_provider,
        sender=sender,
        retry_schedule=[int(s) for s in schedule],
        company_settings=dict(resolved),
        rate_limit=float(rate) if rate else None,
    )


@dataclass(slots=True)
class Stop:
    """Why a run stopped before its rows were done, and when the batch may run again."""

    until: datetime
    outage: circuit.Wait | None = None


def run_batch(*, batch_id: int, settings: Settings | None = None, sessions: SessionFactory = session_scope) -> Followups:
    """Send what is due in one batch. Safe to call for any batch id, any number of times.

    Never waits in the worker thread: a batch whose route is down or whose company's rate limit
    is used up goes back to the broker with a delay and frees the thread for other work.
    """
    settings = settings or get_settings()
    with sessions() as session:
        wait = _rate_wait(session=session, batch_id=batch_id, settings=settings)
        if wait is not None:
            # Not claimed, nothing written: the delayed message is the batch's turn.
            return Followups(delayed_batches=[(batch_id, wait + random.uniform(0, RATE_JITTER_SECONDS))])
        claim = claim_batch(session=session, batch_id=batch_id, settings=settings)
        if claim is None or isinstance(claim, Followups):
            return claim or Followups()
        plan = plan_batch(session=session, job=claim.job, settings=settings)
    if handoff.is_handoff(claim.job):
        # The whole batch goes in one message: all its rows are in flight until the worker reports.
        with sessions() as session:
            marked = mark_sending(session=session, batch_id=batch_id, ids=[row["id"] for row in claim.rows])
        claim.rows = [row for row in claim.rows if row["id"] in marked]
        done = handoff.hand_off(claim=claim, settings=settings, sessions=sessions,
                                keep_lease=lambda: LeaseKeeper(batch_id=batch_id, settings=settings, sessions=sessions))
        if not done.send_locally:
            return done.followups
        # cloud_fallback_behavior queue_local: this batch goes out with mani's own provider now.
        with sessions() as session:
            plan = plan_batch(session=session, job=claim.job, settings=settings)
    try:
        with LeaseKeeper(batch_id=batch_id, settings=settings, sessions=sessions):
            certificates = _prepare_certificates(claim=claim, sessions=sessions)
            stop = _send_rows(claim=claim, plan=plan, certificates=certificates, settings=settings, sessions=sessions)
    except Exception as error:
        release_after_error(batch_id=batch_id, error=f"{type(error).__name__}: {error}", sessions=sessions)
        raise
    with sessions() as session:
        if stop is not None and stop.outage is not None and stop.outage.expired:
            return fail_for_outage(session=session, job_id=claim.job.id, wait=stop.outage, settings=settings)
        return settle_batch(session=session, batch_id=batch_id, not_before=stop.until if stop else None)


def _rate_wait(*, session, batch_id: int, settings: Settings) -> float | None:
    """Seconds until the batch's company may send again, when longer than a worker may wait."""
    row = session.execute(
        select(Job.company_id).join(Batch, Batch.job_id == Job.id).where(Batch.id == batch_id)
    ).first()
    if row is None or not row.company_id:
        return None
    rate = _company_rate(session=session, company_id=row.company_id)
    if not rate:
        return None
    wait = get_limiter(key=row.company_id, rate=rate, settings=settings).reserve(0)
    return wait if wait > RATE_WAIT_INLINE_SECONDS else None


_rates: dict[str, tuple[float, float | None]] = {}


def _company_rate(*, session, company_id: str) -> float | None:
    """A company's `rate_limit`, read at most every few seconds per process (every batch asks)."""
    cached = _rates.get(company_id)
    if cached is not None and cached[0] > time.monotonic():
        return cached[1]
    rate = resolve(session=session, company_id=company_id).get("rate_limit")
    value = float(rate) if rate else None
    _rates[company_id] = (time.monotonic() + RATE_CACHE_SECONDS, value)
    return value


class LeaseKeeper:
    """Renews a batch's lease while this process works on it, so only a dead worker loses one.

    Chunk commits renew it too, but one slow chunk (a hanging SMTP server, a rate limit) could
    outlast the lease and let a second worker take the batch over and send it again.
    """

    def __init__(self, *, batch_id: int, settings: Settings, sessions: SessionFactory) -> None:
        self.batch_id, self.settings, self.sessions = batch_id, settings, sessions
        self.interval = max(0.5, settings.batch_lease_seconds / 3)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"lease-{batch_id}", daemon=True)

    def __enter__(self) -> "LeaseKeeper":
        self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop.set()
        self.thread.join(timeout=5)

    def _run(self) -> None:
        table = Batch.__table__
        while not self.stop.wait(self.interval):
            try:
                with self.sessions() as session:
                    session.execute(
                        update(table)
                        # A handed-off batch has no lease: the worker's reports settle it.
                        .where(table.c.id == self.batch_id, table.c.status == BatchStatus.PROCESSING,
                               table.c.handoff_at.is_(None))
                        .values(lease_until=utcnow() + timedelta(seconds=self.settings.batch_lease_seconds))
                    )
            except Exception as error:  # noqa: BLE001 - the database may be down for a moment
                log.warning("could not renew the lease of batch %s: %s", self.batch_id, error)


def _prepare_certificates(*, claim: Claim, sessions: SessionFactory) -> dict:
    if claim.job.action not in ("certificate", "both") or not claim.rows:
        return {}
    # Deferred: the certificate service loads fpdf2, which a mail-only worker never needs.
    from backend.certificates.service import issue_planned, record_batch
    from backend.certificates.service import plan_batch as plan_certificates

    # Three short steps: no transaction (SQLite's write lock) stays open while the batch renders.
    with sessions() as session:
        recipients = list(session.execute(
            select(Recipient).where(Recipient.id.in_([row["id"] for row in claim.rows])).order_by(Recipient.id)
        ).scalars())
        plan = plan_certificates(session=session, job=session.get(Job, claim.job.id), recipients=recipients)
    issue_planned(plan)
    with sessions() as session:
        results = record_batch(session=session, plan=plan)
    for row in claim.rows:
        result = results.get(row["id"])
        if result is not None and not getattr(result, "error", None):
            row["certificate_url"], row["certificate_code"] = result.url, result.code
            row["certificate_verify_url"] = result.verify_url
    return results


def _send_rows(
    *, claim: Claim, plan: BatchPlan, certificates: dict, settings: Settings, sessions: SessionFactory
) -> Stop | None:
    """Send the claimed rows chunk by chunk; a Stop when the run ended early and must resume later."""
    job = claim.job
    decrypt = _decryptor(settings) if any(row["secret"] for row in claim.rows) else None
    rows_by_id = {row["id"]: row for row in claim.rows}
    email_wanted = job.action != "certificate"
    provider = get_provider(plan.provider_name, settings=settings, company_settings=plan.company_settings) if email_wanted else None
    limiter = _limiter(job=job, plan=plan, settings=settings)
    key = circuit.route_key(job)
    # A bulk API (Mailgun, SendGrid) takes the batch in one call, and that call is the unit a
    # crash can repeat; for one-message-at-a-time providers, `commit_every` is, and a chunk is
    # kept to about STATE_CHECK_SECONDS so that a pause or cancel is seen within a second.
    bulk = provider is not None and getattr(provider, "bulk_api", False)
    if bulk:
        most = max(1, provider.max_batch)
    else:
        most = max(1, min(settings.commit_every, provider.max_batch if provider else settings.commit_every))
    if limiter is not None:
        most = max(1, min(most, int(plan.rate_limit * STATE_CHECK_SECONDS)))
    size = most if bulk else min(most, FIRST_CHUNK)
    start = 0
    # Only the chunk in flight is `processing`: a cancel ends everything else at once, and counts it.
    marked: set[int] | None = None
    with provider or _NoProvider():
        while start < len(claim.rows):
            chunk = claim.rows[start : start + size]
            began = time.monotonic()
            if marked is None:
                with sessions() as session:
                    marked = mark_sending(session=session, batch_id=claim.batch.id, ids=[row["id"] for row in chunk])
            chunk = [row for row in chunk if row["id"] in marked]
            if limiter is not None:
                try:
                    if getattr(provider, "paces_sends", False):
                        # The provider takes its slots itself: only look whether it would wait long.
                        wait = limiter.reserve(0)
                        if wait > RATE_WAIT_INLINE_SECONDS:
                            raise RateLimitTimeout("rate limit", wait=wait)
                    else:
                        _sleep(limiter.reserve(len(chunk), timeout=RATE_WAIT_INLINE_SECONDS))
                except RateLimitTimeout as refused:
                    # The rows not reached go back to waiting when the batch settles.
                    return Stop(until=utcnow() + timedelta(seconds=refused.wait + random.uniform(0, RATE_JITTER_SECONDS)))
            outcomes = Outcomes()
            messages: list[OutgoingMessage] = []
            for row in chunk:
                certificate = certificates.get(row["id"])
                if certificate is not None and getattr(certificate, "error", None):
                    outcomes.permanent.append({"rid": row["id"], "err": f"certificate: {certificate.error}"})
                    continue
                if not email_wanted:
                    outcomes.sent.append({"rid": row["id"], "ext": row.get("certificate_code")})
                    continue
                try:
                    messages.append(_message(row=row, job=job, plan=plan, certificate=certificate, decrypt=decrypt, settings=settings))
                except Exception as error:  # a template that cannot render for this row fails only this row
                    outcomes.permanent.append({"rid": row["id"], "err": f"cannot render the message: {error}"})
            if messages:
                _classify(provider.send(messages), rows_by_id=rows_by_id, plan=plan, outcomes=outcomes,
                          outage_run=settings.outage_transient_run)
            start += size
            if not bulk:
                per_message = (time.monotonic() - began) / max(1, len(chunk))
                size = most if per_message <= 0 else max(1, min(most, int(STATE_CHECK_SECONDS / per_message)))
            outage, marked = None, None
            with sessions() as session:
                job_status = record_outcomes(
                    session=session, job_id=job.id, batch_id=claim.batch.id, outcomes=outcomes, settings=settings,
                    circuit_key=key,
                )
                if outcomes.unavailable:
                    outage = circuit.trip(session=session, job=job, error=outcomes.unavailable[0]["err"], settings=settings)
                elif job_status not in STOPPED and not outcomes.throttled and start < len(claim.rows):
                    # The next chunk is taken in the same transaction: one commit per chunk.
                    marked = mark_sending(session=session, batch_id=claim.batch.id,
                                          ids=[row["id"] for row in claim.rows[start : start + size]])
            if outage is not None:
                log.warning("provider %s of job %s is down (%s); its batches wait until %s",
                            job.provider, job.id, outcomes.unavailable[0]["err"], outage.until.isoformat())
                return Stop(until=outage.until, outage=outage)
            if job_status in STOPPED or outcomes.throttled:
                # Stop here; the rows not reached go back to waiting when the batch settles.
                return None
    return None


def _sleep(seconds: float) -> None:
    if seconds > 0:
        time.sleep(seconds)


class _NoProvider:
    def __enter__(self):
        return None

    def __exit__(self, *exc_info):
        return None


def _classify(results: Sequence[SendResult], *, rows_by_id: dict, plan: BatchPlan, outcomes: Outcomes,
              outage_run: int = 10) -> None:
    now = utcnow()
    results = _outage_runs(list(results), outage_run)
    for result in results:
        row = rows_by_id[result.recipient_id]
        if result.outcome == Outcome.SENT:
            outcomes.sent.append({"rid": row["id"], "ext": result.external_id})
        elif result.outcome == Outcome.PERMANENT:
            outcomes.permanent.append({"rid": row["id"], "err": result.error or "permanent failure"})
        elif result.outcome == Outcome.UNAVAILABLE:
            outcomes.unavailable.append({"rid": row["id"], "err": f"provider down: {result.error or 'unreachable'}"})
        elif result.outcome == Outcome.THROTTLED:
            delay = result.retry_after or DEFAULT_THROTTLE_SECONDS
            outcomes.throttled.append(
                {"rid": row["id"], "err": f"throttled: {result.error or 'provider asked to slow down'}",
                 "nxt": now + timedelta(seconds=delay)}
            )
        else:
            done = row["attempts"]  # attempts before this one
            if done < len(plan.retry_schedule):
                outcomes.retry.append(
                    {"rid": row["id"], "err": result.error or "temporary failure",
                     "nxt": now + timedelta(seconds=plan.retry_schedule[done])}
                )
            else:
                outcomes.permanent.append(
                    {"rid": row["id"], "err": f"gave up after {done + 1} attempts: {result.error or 'temporary failure'}"}
                )


def _outage_runs(results: list[SendResult], run: int) -> list[SendResult]:
    """`run` or more temporary failures on consecutive recipients, nothing sent between them, are
    the provider failing for everyone: they become UNAVAILABLE and cost the recipients nothing."""
    out = list(results)
    index = 0
    while index < len(out):
        if out[index].outcome != Outcome.TRANSIENT:
            index += 1
            continue
        end = index
        while end < len(out) and out[end].outcome == Outcome.TRANSIENT:
            end += 1
        if end - index >= run:
            for at in range(index, end):
                result = out[at]
                out[at] = SendResult(result.recipient_id, Outcome.UNAVAILABLE,
                                     error=f"{end - index} temporary failures in a row: {result.error}")
        index = end
    return out


def _message(*, row: dict, job: Job, plan: BatchPlan, certificate, decrypt, settings: Settings) -> OutgoingMessage:
    fields = {
        "email": row["email"],
        "userid": row["userid"],
        "firstname": row["firstname"],
        "lastname": row["lastname"],
        "username": row["username"],
        "password": decrypt(row["secret"]) if row["secret"] and decrypt else None,
    }
    if row.get("certificate_url"):
        fields["certificate_url"] = row["certificate_url"]
        fields["certificate_code"] = row.get("certificate_code")
        fields["certificate_verify_url"] = row.get("certificate_verify_url")
    pdf = getattr(certificate, "pdf", None)
    attachments = [certificate_attachment(pdf=pdf, code=row.get("certificate_code"), recipient_id=row["id"])] if pdf else []
    return outgoing_message(
        recipient_id=row["id"], job_uuid=job.uuid, job_type=job.type, fields=fields, variables=row["variables"],
        template_data=job.template_data, sender=plan.sender, settings=settings, attachments=attachments,
    )


def _decryptor(settings: Settings):
    return field_cipher(settings=settings).decrypt


def _limiter(*, job: Job, plan: BatchPlan, settings: Settings):
    """The company's limiter, shared by every worker sending for it, or None."""
    if not plan.rate_limit or not job.company_id:
        return None
    return get_limiter(key=job.company_id, rate=plan.rate_limit, settings=settings)
