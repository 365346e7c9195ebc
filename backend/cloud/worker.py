"""The cloud worker's run of one batch message, on mani's own core.

For each recipient of a Job JSON message (`job_message`): open its sealed password, issue its
certificate (`backend.certificates.issue`) into the stack's bucket with a presigned link, render and
compose its mail (`backend.mail.outgoing`, so the Message-ID is mani's deterministic one) and send it through
the provider (`backend.mail.providers.ses`); then report every settled recipient in one signed callback
(`signing`, a fresh `timestamp` on every try).

What the caller (the Lambda handler) supplies, in a `WorkerContext`:
- `once(task, work)`: runs `work()` at most once per `task` (job id, recipient id, round) and returns
  its saved result on a repeat: DynamoDB through Powertools' idempotency utility in Lambda.
  `work` raises `NotDone` for a recipient that must be tried again later; then nothing is saved.
- `attempts`: the ledger of attempts across deliveries of the message (a retry after a
  transient failure counts; throttling and provider outages do not).
- the opened provider, the storage, the time left, the HTTP poster.

Outcomes of a recipient:
- settled: sent (`completed`) or failed for good (`failed`: bad address, a template or
  certificate that cannot be made for it, a transient failure on the message's last receive);
- not done: throttled past the time left, a transient failure before the last receive, a
  provider outage, no time left. The message then goes back to the queue; what was settled is
  not done again, and is reported again with the rest.
"""

from __future__ import annotations

import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol

from backend.moodle import signing
from backend.certificates.issue import CertificateKit, derived_code, placeholder_values, storage_key, verify_url
from backend.cloud.handoff_crypto import HandoffCryptoError, decrypt_for_worker
from backend.cloud.job_message import JobMessage, MessageRecipient, parse_job_message, resolve_body
from backend.core.errors import UnusableInput
from backend.mail.outgoing import certificate_attachment, outgoing_message
from backend.mail.providers.base import Outcome, ProviderError
from backend.core.settings import Settings
from backend.storage.base import StorageError
from certificates import CertificateError

log = logging.getLogger(__name__)

SOURCE_WORKER = "worker"
COMPLETED, FAILED = "completed", "failed"
TRANSIENT_TRIES = 3  # per recipient within one delivery of the message
CALLBACK_TRIES = 4
CALLBACK_TIMEOUT = 10.0
DEFAULT_THROTTLE_WAIT = 1.0


class NotDone(Exception):
    """This recipient is not settled in this delivery; no result is saved, the message comes back."""


class TransientFailure(NotDone):
    """A failure worth another try later (SES 5xx, storage unreachable); it costs an attempt."""


class AttemptLedger(Protocol):
    def prior(self, job_id: str, recipient_ids: list[int]) -> dict[int, int]:
        """Attempts made in earlier deliveries of the message, per recipient (absent: none)."""

    def record(self, job_id: str, recipient_id: int, count: int = 1) -> None:
        """Count failed attempts for a recipient."""


class MemoryAttempts:
    """An attempt ledger for one process (mani's own tests and the bench)."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, int], int] = {}

    def prior(self, job_id: str, recipient_ids: list[int]) -> dict[int, int]:
        return {rid: self.counts[(job_id, rid)] for rid in recipient_ids if (job_id, rid) in self.counts}

    def record(self, job_id: str, recipient_id: int, count: int = 1) -> None:
        self.counts[(job_id, recipient_id)] = self.counts.get((job_id, recipient_id), 0) + count


def run_directly(task: dict, work: Callable[[], dict]) -> dict:
    """`once` without a store: every delivery does the work (only for a single delivery)."""
    return work()


def http_post(url: str, body: bytes, headers: Mapping[str, str], timeout: float = CALLBACK_TIMEOUT) -> int:
    """POST with the standard library (the worker carries no HTTP client); the status code."""
    request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - the job's callback URL
            response.read()
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


@dataclass
class WorkerContext:
    settings: Settings
    sender: str
    secret: str  # the callback secret: signs callbacks, opens passwords, keys certificate codes
    provider: Any = None  # an opened provider (`with provider:`), or None for certificate-only jobs
    storage: Any = None
    presigned_url_ttl: int = 604800
    remaining: Callable[[], float] = lambda: 900.0
    once: Callable[[dict, Callable[[], dict]], dict] = run_directly
    attempts: AttemptLedger = field(default_factory=MemoryAttempts)
    receive_count: int = 1
    max_receive_count: int = 5
    post: Callable[..., int] = http_post
    # Seconds kept back for the callback; a recipient is not started with less time left.
    margin: float = 30.0
    concurrency: int = 8
    sleep: Callable[[float], None] = time.sleep

    @property
    def last_delivery(self) -> bool:
        return self.receive_count >= self.max_receive_count


@dataclass(slots=True)
class MessageReport:
    job_id: str
    settled: list[dict] = field(default_factory=list)
    not_done: dict[int, str] = field(default_factory=dict)
    callback_status: int | None = None
    callback_error: str | None = None

    @property
    def reported(self) -> bool:
        return self.callback_error is None

    @property
    def complete(self) -> bool:
        """Every recipient settled and reported: the message can leave the queue."""
        return not self.not_done and self.reported

    def reason(self) -> str:
        if self.callback_error:
            return f"callback not delivered: {self.callback_error}"
        if self.not_done:
            first = next(iter(self.not_done.values()))
            return f"{len(self.not_done)} recipient(s) not done yet (first: {first})"
        return "done"


def run_message(body: str, *, ctx: WorkerContext, fetch: Callable[[str, str], bytes]) -> MessageReport:
    """One queue message, start to end. InvalidJobMessage for a message no retry can use."""
    message = parse_job_message(resolve_body(body, fetch=fetch))
    report = deliver_recipients(message, ctx=ctx)
    if report.settled:
        report_to_callback(message, report, ctx=ctx)
    return report


def deliver_recipients(message: JobMessage, *, ctx: WorkerContext) -> MessageReport:
    """Settle what can be settled of the message's recipients (each at most once, in parallel)."""
    report = MessageReport(job_id=message.job_id)
    kit, kit_error = None, None
    if message.wants_certificates:
        try:
            kit = CertificateKit.for_job(_certificate_data(message), settings=ctx.settings)
        except UnusableInput as error:  # the template or its fonts: every recipient fails alike
            kit_error = f"certificate: {error}"
    prior = ctx.attempts.prior(message.job_id, [r.recipient_id for r in message.recipients]) if ctx.receive_count > 1 else {}

    def one(recipient: MessageRecipient) -> tuple[int, dict | None, str | None]:
        # `round` keys an admin's retry (a new handoff of the batch) apart from a redelivery.
        task = {"job_id": message.job_id, "recipient_id": recipient.recipient_id, "round": message.handoff_round}
        work = _Recipient(message, recipient, ctx=ctx, kit=kit, kit_error=kit_error,
                          attempts_before=prior.get(recipient.recipient_id, 0))
        try:
            return recipient.recipient_id, ctx.once(task, work.run), None
        except NotDone as error:
            return recipient.recipient_id, None, str(error) or type(error).__name__
        except Exception as error:  # noqa: BLE001 - one recipient's surprise must not lose the others
            log.exception("recipient %s of job %s", recipient.recipient_id, message.job_id)
            return recipient.recipient_id, None, f"{type(error).__name__}: {error}"

    workers = max(1, min(ctx.concurrency, len(message.recipients)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mani-recipient") as pool:
        for rid, result, problem in pool.map(one, message.recipients):
            if result is not None:
                report.settled.append(result)
            else:
                report.not_done[rid] = problem
    return report


def _certificate_data(message: JobMessage) -> dict:
    data = dict(message.template_data)
    if message.certificate_template:
        data.setdefault("certificate_template", message.certificate_template)
    return data


class _Recipient:
    """One recipient's work inside `once`: certificate, mail, send; returns the saved result."""

    def __init__(self, message: JobMessage, recipient: MessageRecipient, *, ctx: WorkerContext,
                 kit: CertificateKit | None, kit_error: str | None, attempts_before: int):
        self.message, self.recipient, self.ctx = message, recipient, ctx
        self.kit, self.kit_error = kit, kit_error
        self.attempts = self.attempts_before = attempts_before

    def result(self, status: str, *, error: str | None = None, timesent: int | None = None,
               certificate: dict | None = None, provider_id: str | None = None) -> dict:
        recipient = self.recipient
        return {"recipient_id": recipient.recipient_id, "userid": recipient.userid, "email": recipient.email,
                "status": status, "timesent": timesent, "error_message": error, "attempts": self.attempts,
                "certificate_url": (certificate or {}).get("certificate_url"),
                "certificate_code": (certificate or {}).get("certificate_code"), "provider_id": provider_id}

    def run(self) -> dict:
        if self.ctx.remaining() < self.ctx.margin:
            raise NotDone("no time left in this invocation")
        try:
            return self._run()
        except TransientFailure as error:
            self.attempts += 1
            if self.ctx.last_delivery:
                return self.result(FAILED, error=f"gave up after {self.attempts} attempts: {error}")
            self.ctx.attempts.record(self.message.job_id, self.recipient.recipient_id, self.attempts - self.attempts_before)
            raise

    def _run(self) -> dict:
        message, recipient, ctx = self.message, self.recipient, self.ctx
        if recipient.plain_password:
            return self.result(FAILED, error="the message carried a plain-text password; mani seals them "
                                             "for the worker (password_encrypted)")
        fields = recipient.fields()
        if recipient.password_encrypted:
            try:
                fields["password"] = decrypt_for_worker(recipient.password_encrypted, secret=ctx.secret,
                                                        job_id=message.job_id, recipient_id=recipient.recipient_id)
            except HandoffCryptoError as error:
                return self.result(FAILED, error=str(error))
        certificate, pdf = None, None
        if message.wants_certificates:
            if self.kit_error:
                return self.result(FAILED, error=self.kit_error)
            try:
                certificate, pdf = self._certificate(fields)
            except CertificateError as error:
                return self.result(FAILED, error=f"certificate: {error}")
            fields.update(certificate)
        if not message.wants_email:
            self.attempts += 1
            return self.result(COMPLETED, certificate=certificate)
        attachments = ([certificate_attachment(pdf=pdf, code=certificate["certificate_code"],
                                               recipient_id=recipient.recipient_id)] if pdf and self.kit.attach else [])
        try:
            outgoing = outgoing_message(
                recipient_id=recipient.recipient_id, job_uuid=message.job_id, job_type=message.job_type,
                fields=fields, variables=recipient.variables, template_data=message.template_data,
                sender=ctx.sender, settings=ctx.settings, attachments=attachments)
        except UnusableInput as error:  # a template that cannot render for this recipient
            return self.result(FAILED, error=f"cannot render the message: {error}")
        return self._send(outgoing, certificate)

    def _certificate(self, fields: dict) -> tuple[dict, bytes]:
        message, recipient, ctx = self.message, self.recipient, self.ctx
        code = derived_code(ctx.secret.encode("utf-8"), message.job_id, recipient.recipient_id)
        link = verify_url(code, settings=ctx.settings, base=message.certificate_verify_url)
        data = placeholder_values(template_data=message.template_data, variables=recipient.variables, fields=fields)
        _, pdf = self.kit.render(data, code=code, verify_link=link, issued_at=datetime.now(timezone.utc))
        key = storage_key(message.job_id, recipient.recipient_id, code)
        try:
            ctx.storage.put(key, pdf, content_type="application/pdf")
            url = ctx.storage.url(key, ttl=message.presigned_url_ttl or ctx.presigned_url_ttl)
        except StorageError as error:
            raise TransientFailure(str(error)) from None
        return {"certificate_url": url, "certificate_code": code, "certificate_verify_url": link}, pdf

    def _send(self, outgoing, certificate: dict | None) -> dict:
        ctx, tries = self.ctx, 0
        while True:
            try:
                (answer,) = ctx.provider.send([outgoing])
            except ProviderError as error:  # the provider as a whole (credentials, sender): not this recipient's
                raise NotDone(f"provider unusable: {error}") from None
            if answer.outcome == Outcome.SENT:
                self.attempts += 1
                return self.result(COMPLETED, timesent=int(time.time()), certificate=certificate,
                                   provider_id=answer.external_id)
            if answer.outcome == Outcome.PERMANENT:
                self.attempts += 1
                return self.result(FAILED, error=answer.error or "refused", certificate=certificate)
            if answer.outcome == Outcome.THROTTLED:
                wait = answer.retry_after or DEFAULT_THROTTLE_WAIT
                if ctx.remaining() - wait < ctx.margin:
                    raise NotDone(f"throttled: {answer.error or 'slow down'}")
                ctx.sleep(wait)
                continue
            tries += 1
            backoff = float(2 ** (tries - 1))
            if tries >= TRANSIENT_TRIES or ctx.remaining() - backoff < ctx.margin:
                self.attempts += tries - 1  # the last one is counted by run()
                raise TransientFailure(answer.error or "temporary failure")
            ctx.sleep(backoff)


def callback_update(result: Mapping[str, Any]) -> dict:
    """One `recipient_updates[]` entry of the seeds' Callback JSON, with mani's recipient id."""
    update = {
        "userid": result.get("userid"),
        "recipient_id": result["recipient_id"],
        "status": result["status"],
        "certificate_url": result.get("certificate_url"),
        "certificate_code": result.get("certificate_code"),
        "timesent": result.get("timesent"),
        "error_message": result.get("error_message"),
        "attempts": result.get("attempts"),
    }
    if result.get("userid") is None:
        update["email"] = result.get("email")  # without a user id the receiver matches by address
    return update


def callback_payload(message: JobMessage, settled: list[dict]) -> dict:
    """The callback body without its `timestamp` (stamped at every try)."""
    payload: dict[str, Any] = {"job_id": message.job_id, "source": SOURCE_WORKER,
                               "recipient_updates": [callback_update(r) for r in settled]}
    if message.batch is not None:
        payload["batch"] = message.batch
    return payload


def report_to_callback(message: JobMessage, report: MessageReport, *, ctx: WorkerContext) -> None:
    """POST the signed callback, retried within the time left; the outcome goes on the report."""
    payload = callback_payload(message, report.settled)
    for attempt in range(1, CALLBACK_TRIES + 1):
        body, signature = signing.signed_body(payload, ctx.secret)
        headers = {"Content-Type": "application/json", signing.SIGNATURE_HEADER: signature,
                   "User-Agent": "mani-cloud-worker"}
        try:
            status = ctx.post(message.callback_url, body, headers)
            report.callback_status = status
            # 409: mani already accepted this very body (a repeat within the same second).
            if 200 <= status < 300 or status == 409:
                report.callback_error = None
                return
            report.callback_error = f"HTTP {status}"
        except OSError as error:  # refused, reset, timed out, DNS
            report.callback_error = f"{type(error).__name__}: {error}"[:300]
        wait = float(2 ** (attempt - 1))
        if attempt == CALLBACK_TRIES or ctx.remaining() < wait + CALLBACK_TIMEOUT:
            return
        ctx.sleep(wait)
