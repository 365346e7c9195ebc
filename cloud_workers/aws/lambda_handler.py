"""mani's Lambda worker (the seeds' `cloud_workers/aws/lambda_handler.py`), on mani's own core.

- `handler(event, context)`: the job queue's SQS event source (`ReportBatchItemFailures`).
  Each message is one batch of the seeds' Job JSON; `backend.cloud.worker.run_message` issues
  the certificates, sends the mail through SES and reports to `callback_url`. A message that
  is not finished (throttled past the time left, a transient failure, a callback that could not
  be delivered, or a message no retry can use) is listed in `batchItemFailures`, so SQS
  delivers it again and, after `maxReceiveCount`, moves it to the dead-letter queue.
- `ingest(event, context)`: the HTTP API's `POST /jobs` (and `GET /health`): checks the bearer
  token and the `X-Signature` of the body, then puts the body on the queue: 202, or 401/400
  with a reason.

Each recipient is done at most once, however often its message is delivered: Powertools'
idempotency utility keeps a DynamoDB record per (job id, recipient id), and a repeat gets the
saved result (reported again, not sent again).

Configuration, from the environment the stack sets: `CERTIFICATE_BUCKET`, `SENDER_ADDRESS`,
`SENDER_NAME`, `IDEMPOTENCY_TABLE`, `CALLBACK_SECRET_ARN` (read once per container from Secrets Manager),
`JOB_QUEUE_URL` and `INGEST_TOKEN_ARN` (intake), `PRESIGNED_URL_TTL`, `MAX_RECEIVE_COUNT`,
`SEND_RATE` (messages/s per container, 0 = unpaced), `SEND_CONCURRENCY`, `IDEMPOTENCY_DAYS`;
region and endpoints from the standard AWS variables (`AWS_REGION`, `AWS_ENDPOINT_URL`,
`AWS_ENDPOINT_URL_<SERVICE>`), which is how the tests point it at moto.
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from functools import partial
from typing import Any

import boto3
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyPersistenceLayerError,
)
from botocore.config import Config

from backend.moodle import signing
from backend.cloud.job_message import InvalidJobMessage, message_bodies, parse_job_message
from backend.cloud.worker import NotDone, WorkerContext, run_message
from backend.mail.providers.ses import SesProvider
from backend.mail.ratelimit import LocalRateLimiter
from backend.core.settings import Settings
from backend.storage.base import ObjectNotFound
from backend.storage.s3 import S3Storage

log = logging.getLogger("mani.worker")
log.setLevel(os.environ.get("LOG_LEVEL", "INFO"))

ATTEMPTS_PREFIX = "attempts#"


class MessageNotDone(Exception):
    """The message goes back to the queue (listed in batchItemFailures)."""


def _env(name: str, default: str | None = None) -> str:
    value = os.environ.get(name, default)
    if value in (None, ""):
        raise RuntimeError(f"the environment variable {name} is not set (the stack sets it).")
    return value


def _endpoint(service: str) -> str | None:
    """An endpoint override (moto in the tests); None on AWS, where boto3 picks the regional one."""
    return os.environ.get(f"AWS_ENDPOINT_URL_{service.upper()}") or os.environ.get("AWS_ENDPOINT_URL") or None


def _client(service: str):
    return boto3.session.Session().client(
        service, region_name=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"),
        endpoint_url=_endpoint(service), config=Config(retries={"max_attempts": 3, "mode": "standard"}))


def _secret(arn: str) -> str:
    return _client("secretsmanager").get_secret_value(SecretId=arn)["SecretString"]


class DynamoAttempts:
    """Attempts across deliveries of a message, in the idempotency table (`attempts#job#rid`)."""

    def __init__(self, table: str, *, ttl_seconds: int) -> None:
        self.table, self.ttl, self.client = table, ttl_seconds, _client("dynamodb")

    def _key(self, job_id: str, recipient_id: int) -> dict:
        return {"id": {"S": f"{ATTEMPTS_PREFIX}{job_id}#{recipient_id}"}}

    def prior(self, job_id: str, recipient_ids: list[int]) -> dict[int, int]:
        found: dict[int, int] = {}
        for start in range(0, len(recipient_ids), 100):  # BatchGetItem's limit
            keys = [self._key(job_id, rid) for rid in recipient_ids[start:start + 100]]
            request = {self.table: {"Keys": keys, "ProjectionExpression": "id, attempts"}}
            while request:
                answer = self.client.batch_get_item(RequestItems=request)
                for item in answer["Responses"].get(self.table, []):
                    found[int(item["id"]["S"].rsplit("#", 1)[1])] = int(item["attempts"]["N"])
                request = answer.get("UnprocessedKeys") or None
        return found

    def record(self, job_id: str, recipient_id: int, count: int = 1) -> None:
        self.client.update_item(
            TableName=self.table, Key=self._key(job_id, recipient_id),
            UpdateExpression="ADD attempts :n SET expiration = :e",
            ExpressionAttributeValues={":n": {"N": str(count)}, ":e": {"N": str(int(time.time()) + self.ttl)}})


@dataclass
class WorkerRuntime:
    """What a container builds once (cold start) and keeps for every invocation."""

    settings: Settings
    secret: str
    sender: str
    storage: S3Storage
    provider: SesProvider
    idempotency: IdempotencyConfig
    once_store: Any
    attempts: DynamoAttempts
    presigned_url_ttl: int
    max_receive_count: int
    concurrency: int
    margin: float

    @classmethod
    def from_env(cls) -> "WorkerRuntime":
        ttl_days = int(os.environ.get("IDEMPOTENCY_DAYS") or 14)
        table = _env("IDEMPOTENCY_TABLE")
        rate = float(os.environ.get("SEND_RATE") or 0)
        concurrency = int(os.environ.get("SEND_CONCURRENCY") or 8)
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        name = (os.environ.get("SENDER_NAME") or "").strip()
        sender = f"{name} <{_env('SENDER_ADDRESS')}>" if name else _env("SENDER_ADDRESS")
        provider = SesProvider(sender=sender, region=region, endpoint_url=_endpoint("sesv2"),
                               limiter=LocalRateLimiter(key="ses", rate=rate) if rate > 0 else None, workers=2)
        provider.__enter__()  # one SES client for the container's life
        # Records live as long as a message can: the queue's and the DLQ's 14 days, and a redrive.
        # `round` is the message's handoff round: an admin's retry is a new round (sent again), a
        # redelivered message the same one (answered from the record).
        config = IdempotencyConfig(event_key_jmespath="[job_id, recipient_id, round]", raise_on_no_idempotency_key=True,
                                   expires_after_seconds=ttl_days * 86400)
        persistence = DynamoDBPersistenceLayer(table_name=table, boto3_client=_client("dynamodb"))

        @idempotent_function(data_keyword_argument="task", config=config, persistence_store=persistence,
                             key_prefix="mani-recipient")
        def once_store(*, task: dict, work) -> dict:
            return work()

        return cls(
            settings=Settings(), secret=_secret(_env("CALLBACK_SECRET_ARN")), sender=sender,
            storage=S3Storage(bucket=_env("CERTIFICATE_BUCKET"), region=region, endpoint_url=_endpoint("s3"),
                              default_ttl=int(os.environ.get("PRESIGNED_URL_TTL") or 604800)),
            provider=provider, idempotency=config, once_store=once_store,
            attempts=DynamoAttempts(table, ttl_seconds=ttl_days * 86400),
            presigned_url_ttl=int(os.environ.get("PRESIGNED_URL_TTL") or 604800),
            max_receive_count=int(os.environ.get("MAX_RECEIVE_COUNT") or 5), concurrency=concurrency,
            margin=float(os.environ.get("CALLBACK_MARGIN_SECONDS") or 30),
        )

    def once(self, task: dict, work) -> dict:
        try:
            return self.once_store(task=task, work=work)
        except IdempotencyAlreadyInProgressError:
            raise NotDone("another delivery of this message is working on it") from None
        except IdempotencyPersistenceLayerError as error:
            raise NotDone(f"idempotency store unavailable: {error}") from None

    def fetch(self, bucket: str, key: str) -> bytes:
        if bucket != self.storage.bucket:
            raise InvalidJobMessage(f"the claim-check pointer names bucket {bucket}, not the stack's.")
        try:
            return self.storage.get(key)
        except ObjectNotFound:
            raise InvalidJobMessage(f"the claim-check payload {key} is not in the bucket.") from None


_lock = threading.Lock()
_worker: WorkerRuntime | None = None


def worker_runtime() -> WorkerRuntime:
    global _worker
    with _lock:
        if _worker is None:
            _worker = WorkerRuntime.from_env()
        return _worker


def reset() -> None:
    """Forget the cold-start state (tests change the environment between cases)."""
    global _worker, _intake
    with _lock:
        if _worker is not None:
            _worker.provider.__exit__(None, None, None)
        _worker = _intake = None


def _remaining(context) -> float:
    getter = getattr(context, "get_remaining_time_in_millis", None)
    return getter() / 1000.0 if getter else 900.0


def _process_record(record, *, runtime: WorkerRuntime, context) -> dict:
    receive_count = int(record.attributes.approximate_receive_count or 1)
    ctx = WorkerContext(
        settings=runtime.settings, sender=runtime.sender, secret=runtime.secret, provider=runtime.provider,
        storage=runtime.storage, presigned_url_ttl=runtime.presigned_url_ttl, remaining=partial(_remaining, context),
        once=runtime.once, attempts=runtime.attempts, receive_count=receive_count,
        max_receive_count=runtime.max_receive_count, margin=runtime.margin, concurrency=runtime.concurrency,
    )
    try:
        report = run_message(record.body, ctx=ctx, fetch=runtime.fetch)
    except InvalidJobMessage as error:
        log.error("message %s cannot be used (receive %s): %s", record.message_id, receive_count, error)
        raise
    log.info(json.dumps({"event": "message", "message_id": record.message_id, "job_id": report.job_id,
                         "settled": len(report.settled), "not_done": len(report.not_done),
                         "callback_status": report.callback_status, "receive_count": receive_count}))
    if not report.complete:
        raise MessageNotDone(report.reason())
    return {"job_id": report.job_id, "settled": len(report.settled)}


def handler(event: dict, context: Any) -> dict:
    """SQS event in, `{"batchItemFailures": [{"itemIdentifier": <messageId>}, ...]}` out."""
    runtime = worker_runtime()
    if context is not None and hasattr(context, "get_remaining_time_in_millis"):
        runtime.idempotency.register_lambda_context(context)
    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    return process_partial_response(event=event, context=context, processor=processor,
                                    record_handler=partial(_process_record, runtime=runtime, context=context))


# Intake (api_gateway mode) ------------------------------------------------------------------


@dataclass
class IntakeRuntime:
    token: str
    secret: str
    queue_url: str
    storage: S3Storage
    sqs: Any

    @classmethod
    def from_env(cls) -> "IntakeRuntime":
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        return cls(token=_secret(_env("INGEST_TOKEN_ARN")), secret=_secret(_env("CALLBACK_SECRET_ARN")),
                   queue_url=_env("JOB_QUEUE_URL"), sqs=_client("sqs"),
                   storage=S3Storage(bucket=_env("CERTIFICATE_BUCKET"), region=region, endpoint_url=_endpoint("s3")))

    def store(self, key: str, payload: bytes) -> str:
        self.storage.put(key, payload, content_type="application/json")
        return self.storage.bucket


_intake: IntakeRuntime | None = None


def intake_runtime() -> IntakeRuntime:
    global _intake
    with _lock:
        if _intake is None:
            _intake = IntakeRuntime.from_env()
        return _intake


def _answer(status: int, body: dict) -> dict:
    return {"statusCode": status, "headers": {"content-type": "application/json"}, "body": json.dumps(body)}


def _refuse(status: int, error: str, message: str) -> dict:
    return _answer(status, {"error": error, "message": message})


def ingest(event: dict, context: Any) -> dict:
    """API Gateway HTTP API (payload 2.0): `POST /jobs` queues a signed Job JSON; `GET /health`."""
    runtime = intake_runtime()
    headers = {str(k).lower(): v for k, v in (event.get("headers") or {}).items()}
    scheme, _, token = (headers.get("authorization") or "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return _refuse(401, "unauthorized", "Send Authorization: Bearer <cloud_auth_token>.")
    if not hmac.compare_digest(token.strip().encode(), runtime.token.encode()):
        return _refuse(401, "unauthorized", "The bearer token is not this stack's ingest token.")
    method = ((event.get("requestContext") or {}).get("http") or {}).get("method", "POST").upper()
    if method == "GET":
        attributes = runtime.sqs.get_queue_attributes(QueueUrl=runtime.queue_url,
                                                      AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]
        return _answer(200, {"ok": True, "queued": int(attributes.get("ApproximateNumberOfMessages", 0))})
    raw = event.get("body") or ""
    body = base64.b64decode(raw) if event.get("isBase64Encoded") else raw.encode("utf-8")
    given = (headers.get(signing.SIGNATURE_HEADER.lower()) or "").strip()
    if not given.isascii() or not hmac.compare_digest(signing.sign(body, runtime.secret), given):
        return _refuse(401, "bad_signature", "X-Signature is not the HMAC-SHA256 of the body with the callback secret.")
    try:
        payload = json.loads(body)
        if not isinstance(payload, dict):
            raise ValueError("not a JSON object")
    except (ValueError, UnicodeDecodeError) as error:
        return _refuse(400, "malformed_json", f"The body is not a JSON object ({error}).")
    try:
        message = parse_job_message(payload)
    except InvalidJobMessage as error:
        return _refuse(400, "invalid", str(error))
    if any(r.plain_password for r in message.recipients):
        return _refuse(400, "plain_password", "Temporary passwords must be sealed for the worker (password_encrypted).")
    bodies = message_bodies(payload, store=runtime.store)
    ids = [runtime.sqs.send_message(QueueUrl=runtime.queue_url, MessageBody=b)["MessageId"] for b in bodies]
    return _answer(202, {"accepted": True, "job_id": message.job_id, "recipients": len(message.recipients),
                         "message_ids": ids, "claim_check": bodies[0].startswith("[")})
