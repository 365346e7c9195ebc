"""Handing a claimed batch to the company's own AWS worker (`cloud_mode = sqs | api_gateway`).

The batch was claimed like any other (`engine.claim_batch`: a lease, its recipients
`processing`). Here it becomes the seeds' Job JSON (`backend.cloud.job_message`): one message
per batch, temporary passwords sealed for the worker with the company's `cloud_callback_secret`
(`handoff_crypto`), `callback_url` = `{public_url}/api/v1/callbacks`. A batch too big for one
SQS message goes by claim check to the company's bucket (storage s3/r2), or is split.

- `sqs`: `send_message_batch` to `sqs_queue_url` with the company's region and keys (or the
  host's IAM role); the message ids are kept on the batch (`handoff_ref`).
- `api_gateway`: `POST cloud_endpoint` with `Authorization: Bearer cloud_auth_token` and
  `X-Signature` (HMAC-SHA256 of the body with `cloud_callback_secret`); 429 and 5xx are retried
  with backoff (honouring Retry-After), other answers refuse the batch.

A handed-off batch keeps `processing` with no lease (the sweeper and claims leave it alone)
until the worker's callbacks settle it (`backend.moodle.inbound`). A queue or endpoint that
refuses or cannot be reached is transient: the batch waits out the company's
`cloud_retry_policy` (no recipient attempt is spent), then `cloud_fallback_behavior` decides:
`queue_local` sends the job's remaining batches with mani's own provider, `fail` fails them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import select, update

from backend.cloud.job_message import DEFAULT_LIMIT, build_job_message, message_bodies, recipient_entry
from backend.companies.resolution import resolve
from backend.core import outbound
from backend.core.errors import UnusableInput
from backend.core.field_cipher import field_cipher
from backend.core.followups import Followups
from backend.core.settings import Settings
from backend.delivery.engine import BATCHES, RECIPIENTS, Claim, SessionFactory, lock_job, settle_batch
from backend.companies.readiness import HANDOFF_MODES, sqs_client
from backend.moodle import signing
from backend.storage.registry import get_storage
from models import BATCH_WAITING, BatchStatus, Job, RecipientStatus, utcnow

log = logging.getLogger(__name__)

CALLBACK_PATH = "/api/v1/callbacks"
# API Gateway's HTTP API takes 10 MB, a Lambda invocation 6 MB; the intake claim-checks
# anything over SQS's limit itself, so a body only has to fit the invocation.
API_GATEWAY_LIMIT = 5 * 1024 * 1024
# One SQS message's body (the stack's MaximumMessageSize is 256 KiB; a margin for attributes).
SQS_MESSAGE_LIMIT = DEFAULT_LIMIT
SQS_ENTRIES_PER_CALL = 10
HTTP_TRIES = 4
HTTP_BACKOFF = 0.5
MAX_RETRY_AFTER = 30.0
TIMEOUT = 10.0


def is_handoff(job: Job) -> bool:
    """Whether the job's batches go to the company's own worker (decided at dispatch)."""
    return job.route == "cloud" and (job.provider or "") in HANDOFF_MODES


class HandoffFailed(Exception):
    """The queue or endpoint did not take the batch. `transient`: worth another try later."""

    def __init__(self, reason: str, *, transient: bool = True):
        super().__init__(reason)
        self.reason, self.transient = reason, transient


@dataclass(slots=True)
class Handoff:
    """What a handoff run ends with: Followups when done with the batch, or `send_locally`."""

    followups: Followups = field(default_factory=Followups)
    send_locally: bool = False


def callback_url_of(resolved: Any) -> str:
    base = str(resolved.get("public_url") or "").rstrip("/")
    if not base:
        raise HandoffFailed("public_url is not set, so the worker would have nowhere to report", transient=False)
    return base + CALLBACK_PATH


def round_of(previous_handoff) -> int:
    """0 for a batch's first handoff; after a retry, its previous handoff's time in ms (`JobMessage.handoff_round`).

    A handoff tried again because the queue did not take it keeps the round (its `handoff_at` is
    only stamped on success), so a part that did arrive is not sent twice.
    """
    return int(previous_handoff.timestamp() * 1000) if previous_handoff else 0


def batch_message(*, job: Job, batch_number: int, rows: list[dict], resolved: Any, settings: Settings,
                  handoff_round: int = 0) -> dict:
    """The Job JSON of one batch, passwords sealed for the worker, nothing else secret in it."""
    secret = resolved.get("cloud_callback_secret")
    if not secret:
        raise HandoffFailed("cloud_callback_secret is not set (the stack's CallbackSecret)", transient=False)
    decrypt = field_cipher(settings=settings).decrypt if any(row.get("secret") for row in rows) else None
    recipients = [
        recipient_entry(
            job_id=job.uuid, recipient_id=row["id"], email=row["email"], secret=secret,
            password=decrypt(row["secret"]) if row.get("secret") and decrypt else None,
            userid=row.get("userid"), firstname=row.get("firstname"), lastname=row.get("lastname"),
            username=row.get("username"), variables=row.get("variables") or {},
        )
        for row in rows
    ]
    template_data = {"site_name": settings.site_name, "login_url": settings.login_url, **(job.template_data or {})}
    return build_job_message(
        job_id=job.uuid, tenant_id=job.company_id, job_type=job.type, action=job.action or "email",
        callback_url=callback_url_of(resolved), recipients=recipients, batch=batch_number,
        template_data=template_data, certificate_template=(job.template_data or {}).get("certificate_template"),
        presigned_url_ttl=resolved.get("presigned_url_ttl"), certificate_verify_url=settings.certificate_verify_url,
        handoff_round=handoff_round,
    )


def _claim_check_store(resolved: Any, settings: Settings) -> Callable[[str, bytes], str] | None:
    """Stores an oversized batch in the company's bucket (storage s3 or r2), or None: split it."""
    if resolved.get("storage") not in ("s3", "r2") or not resolved.get("bucket"):
        return None
    storage = get_storage(settings=settings, company_settings=resolved)

    def store(key: str, payload: bytes) -> str:
        storage.put(key, payload, content_type="application/json")
        return storage.bucket

    return store


# Sending ------------------------------------------------------------------------------------


def _sqs_groups(bodies: list[str]) -> list[list[str]]:
    """Bodies in send_message_batch calls: at most 10 entries and 256 KiB per call."""
    groups: list[list[str]] = [[]]
    size = 0
    for body in bodies:
        length = len(body.encode("utf-8"))
        if groups[-1] and (len(groups[-1]) == SQS_ENTRIES_PER_CALL or size + length > DEFAULT_LIMIT):
            groups.append([])
            size = 0
        groups[-1].append(body)
        size += length
    return groups


def send_sqs(bodies: list[str], *, resolved: Any, timeout: float = TIMEOUT) -> list[str]:
    """The batch's bodies on the company's queue; their SQS message ids in order."""
    # Deferred with boto3 itself (see readiness.sqs_client).
    from botocore.exceptions import BotoCoreError, ClientError

    url = resolved.get("sqs_queue_url")
    client = sqs_client(resolved, timeout=timeout, attempts=2)
    ids: list[str] = []
    for group in _sqs_groups(bodies):
        entries = [{"Id": str(i), "MessageBody": body} for i, body in enumerate(group)]
        try:
            answer = client.send_message_batch(QueueUrl=url, Entries=entries)
        except ClientError as error:
            detail = error.response.get("Error", {})
            raise HandoffFailed(f"the queue refused the batch: {detail.get('Code')}: {detail.get('Message')}") from None
        except (BotoCoreError, OSError) as error:
            raise HandoffFailed(f"the queue cannot be reached: {type(error).__name__}: {error}") from None
        failed = answer.get("Failed") or []
        if failed:
            first = failed[0]
            raise HandoffFailed(f"the queue refused {len(failed)} of {len(entries)} message(s): "
                                f"{first.get('Code')}: {first.get('Message')}")
        ids += [item["MessageId"] for item in sorted(answer.get("Successful", []), key=lambda item: int(item["Id"]))]
    return ids


def post_api_gateway(bodies: list[str], *, resolved: Any, timeout: float = TIMEOUT,
                     sleep: Callable[[float], None] = time.sleep) -> list[str]:
    """Each body POSTed to `cloud_endpoint`, signed; the ids the intake answered with."""
    endpoint, token = resolved.get("cloud_endpoint"), resolved.get("cloud_auth_token")
    secret = resolved.get("cloud_callback_secret")
    try:  # resolved and checked now, at send time
        outbound.check_url(endpoint or "", what="cloud_endpoint")
    except outbound.UnsafeUrl as error:
        raise HandoffFailed(str(error), transient=False) from None
    refs: list[str] = []
    with httpx.Client(timeout=timeout) as client:
        for body in bodies:
            raw = body.encode("utf-8")
            headers = {"Authorization": f"Bearer {token}", signing.SIGNATURE_HEADER: signing.sign(raw, secret),
                       "Content-Type": "application/json", "User-Agent": "mani-handoff"}
            refs += _post_one(client, endpoint, raw, headers, sleep=sleep)
    return refs


def _post_one(client: httpx.Client, endpoint: str, raw: bytes, headers: dict, *, sleep) -> list[str]:
    problem = ""
    for attempt in range(1, HTTP_TRIES + 1):
        wait = HTTP_BACKOFF * 2 ** (attempt - 1)
        try:
            response = client.post(endpoint, content=raw, headers=headers)
        except httpx.HTTPError as error:
            problem = f"{endpoint} cannot be reached: {type(error).__name__}"
        else:
            if 200 <= response.status_code < 300:
                try:
                    answer = response.json()
                except ValueError:
                    answer = {}
                return [str(i) for i in answer.get("message_ids") or []] or [f"HTTP {response.status_code}"]
            problem = f"{endpoint} answered {response.status_code}: {_reason(response)}"
            if response.status_code != 429 and response.status_code < 500:
                raise HandoffFailed(problem, transient=False)
            wait = _retry_after(response) or wait
        if attempt < HTTP_TRIES:
            sleep(wait)
    raise HandoffFailed(f"{problem} (after {HTTP_TRIES} tries)")


def _reason(response: httpx.Response) -> str:
    try:
        answer = response.json()
        return str(answer.get("message") or answer.get("error") or "")[:200]
    except ValueError:
        return response.text[:200]


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return min(MAX_RETRY_AFTER, max(0.0, float(response.headers.get("retry-after", ""))))
    except ValueError:
        return None


# The run ------------------------------------------------------------------------------------


def hand_off(*, claim: Claim, settings: Settings, sessions: SessionFactory, keep_lease) -> Handoff:
    """Hand one claimed batch to the worker and record it; on failure retry later or fall back.

    `keep_lease` is a context manager factory that renews the batch's lease while the network
    call runs (`sending.LeaseKeeper`).
    """
    job, batch = claim.job, claim.batch
    if not claim.rows:
        with sessions() as session:
            return Handoff(settle_batch(session=session, batch_id=batch.id))
    with sessions() as session:
        resolved = resolve(session=session, company_id=job.company_id, settings=settings)
    mode = job.provider
    try:
        with keep_lease():
            message = batch_message(job=job, batch_number=batch.number, rows=claim.rows, resolved=resolved,
                                    settings=settings, handoff_round=round_of(batch.handoff_at))
            if mode == "sqs":
                bodies = message_bodies(message, limit=SQS_MESSAGE_LIMIT, store=_claim_check_store(resolved, settings))
                refs = send_sqs(bodies, resolved=resolved)
            else:
                bodies = message_bodies(message, limit=API_GATEWAY_LIMIT)
                refs = post_api_gateway(bodies, resolved=resolved)
    except UnusableInput as error:  # a recipient too big for any message, a password that cannot be sealed
        failure = HandoffFailed(str(error), transient=False)
    except HandoffFailed as error:
        failure = error
    except Exception as error:  # noqa: BLE001 - the storage of the claim check, a surprise of boto3
        failure = HandoffFailed(f"{type(error).__name__}: {error}")
    else:
        with sessions() as session:
            record_handoff(session=session, batch_id=batch.id, mode=mode, refs=refs, bodies=bodies)
        log.info("batch %s of job %s handed off by %s: %d message(s)", batch.number, job.uuid, mode, len(bodies))
        return Handoff()
    log.warning("batch %s of job %s was not handed off by %s: %s", batch.number, job.uuid, mode, failure.reason)
    with sessions() as session:
        return after_failure(session=session, claim=claim, failure=failure, resolved=resolved, settings=settings)


def record_handoff(*, session, batch_id: int, mode: str, refs: list[str], bodies: list[str]) -> None:
    """The batch is at the worker: `handoff_ref` is `mode:id,id[ (claim check)]` (read by the read side)."""
    now = utcnow()
    claim_checked = any(body.startswith("[") for body in bodies)
    ref = f"{mode}:" + ",".join(refs) + (" (claim check)" if claim_checked else "")
    session.execute(
        update(BATCHES)
        .where(BATCHES.c.id == batch_id, BATCHES.c.status == BatchStatus.PROCESSING)
        .values(handoff_at=now, handoff_ref=ref[:4000], lease_until=None, last_error=None)
    )


def after_failure(*, session, claim: Claim, failure: HandoffFailed, resolved: Any, settings: Settings) -> Handoff:
    """Wait for the next try (no recipient attempt is spent), or apply `cloud_fallback_behavior`."""
    now = utcnow()
    batch_id = claim.batch.id
    schedule = [int(s) for s in (resolved.get("cloud_retry_policy") or settings.retry_schedule)]
    tries = claim.batch.attempts  # claims of this batch, this one included; all of them handoffs
    if failure.transient and tries <= len(schedule):
        delay = schedule[tries - 1]
        session.execute(
            update(RECIPIENTS)
            .where(RECIPIENTS.c.batch_id == batch_id, RECIPIENTS.c.status == RecipientStatus.PROCESSING)
            .values(status=RecipientStatus.PENDING, next_attempt_at=now + timedelta(seconds=delay), updated_at=now)
        )
        session.execute(update(BATCHES).where(BATCHES.c.id == batch_id).values(
            last_error=f"handoff try {tries} failed: {failure.reason}"[:2000]))
        return Handoff(settle_batch(session=session, batch_id=batch_id))
    why = f"handoff by {claim.job.provider} failed" + (f" after {tries} tries" if failure.transient else "")
    reason = f"{why}: {failure.reason}"
    job = lock_job(session=session, job_id=claim.job.id)
    system = resolve(session=session, company_id=None, settings=settings)
    if (resolved.get("cloud_fallback_behavior") or system.get("cloud_fallback_behavior")) == "fail":
        return Handoff(_fail_waiting_batches(session=session, job=job, batch_id=batch_id,
                                             reason=f"{reason}; cloud_fallback_behavior is fail"))
    local = str(system.get("email_provider") or settings.email_provider or "outbox")
    if is_handoff(job):
        job.route, job.provider = "local", local
        job.route_reason = f"{job.route_reason or ''}; {reason}; fallback queue_local -> {local}"[:4000]
        job.updated_at = now
        session.add(job)
    claim.job.route, claim.job.provider, claim.job.route_reason = job.route, job.provider, job.route_reason
    session.execute(update(BATCHES).where(BATCHES.c.id == batch_id).values(last_error=reason[:2000]))
    return Handoff(send_locally=True)


def _fail_waiting_batches(*, session, job: Job, batch_id: int, reason: str) -> Followups:
    """This batch, and the job's batches still waiting for their handoff, fail with `reason`."""
    now = utcnow()
    waiting = list(session.execute(
        select(BATCHES.c.id).where(BATCHES.c.job_id == job.id, BATCHES.c.handoff_at.is_(None),
                                   BATCHES.c.status.in_(sorted(BATCH_WAITING)))
    ).scalars())
    followups = Followups()
    for target in sorted({batch_id, *waiting}):
        session.execute(
            update(RECIPIENTS)
            .where(RECIPIENTS.c.batch_id == target,
                   RECIPIENTS.c.status.in_([RecipientStatus.PENDING, RecipientStatus.PROCESSING,
                                            RecipientStatus.RETRY_PENDING]))
            .values(status=RecipientStatus.PERMANENTLY_FAILED, last_error=reason[:2000], secret=None, updated_at=now)
        )
        session.execute(update(BATCHES).where(BATCHES.c.id == target).values(last_error=reason[:2000]))
        followups = followups + settle_batch(session=session, batch_id=target)
    return followups
