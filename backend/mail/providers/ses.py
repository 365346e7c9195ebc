"""The `ses` provider: Amazon SES v2 `SendEmail` with the raw MIME of `backend.mail.mime.compose`,
so a recipient gets byte for byte what the SMTP and outbox providers would have sent.

SES takes one message per call, so `send` fans a chunk out over a small thread pool; each
message first takes a slot from the company's shared rate limit (`rate_limit`), which is what
keeps all workers on all hosts under the account's sending rate.

How answers become outcomes:
- `Throttling`, `TooManyRequestsException`, `LimitExceededException`, "Maximum sending rate
  exceeded" -> THROTTLED; the whole company backs off, and the rest of the chunk is returned
  THROTTLED without being tried.
- `MessageRejected`, `MailFromDomainNotVerifiedException`, an invalid or suppressed address
  -> PERMANENT.
- a refusal that names our own sender, bad credentials, a paused or suspended account ->
  configuration: the rest of the chunk is not tried, and if nothing was sent, `send` raises
  ProviderError (the engine releases the batch instead of failing 50,000 recipients).
- 5xx, an unreachable endpoint, a timeout -> TRANSIENT.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from backend.mail.mime import MessageError, compose, normalize_address, split_sender
from backend.mail.providers.base import Outcome, OutgoingMessage, ProviderError, SendResult
from backend.mail.ratelimit import RateLimiter, Unlimited, limiter_for

# SendEmail's own limit is one message (up to 50 destinations) per call; a chunk of this many
# is what one `send` fans out over the pool.
MAX_BATCH = 50
DEFAULT_WORKERS = 8
THROTTLE_CODES = frozenset(
    {"Throttling", "ThrottlingException", "TooManyRequestsException", "LimitExceededException",
     "MaximumSendingRateExceeded", "SendingQuotaExceeded", "RequestLimitExceeded"}
)
PERMANENT_CODES = frozenset(
    {"MessageRejected", "MailFromDomainNotVerifiedException", "MailFromDomainNotVerified",
     "InvalidParameterValue", "BadRequestException"}
)
CONFIG_CODES = frozenset(
    {"UnrecognizedClientException", "InvalidClientTokenId", "SignatureDoesNotMatch", "InvalidSignatureException",
     "AccessDeniedException", "AccessDenied", "ExpiredToken", "ExpiredTokenException", "AccountSuspendedException",
     "SendingPausedException", "AccountSendingPausedException", "NotFoundException", "ConfigurationSetDoesNotExist", "MissingAuthenticationToken"}
)
# SES names no wait; a second is its per-second quota window.
DEFAULT_THROTTLE_SECONDS = 1.0


def classify_client_error(code: str, message: str, status: int, *, sender_address: str) -> tuple[str, float | None]:
    """("sent"|"throttled"|"permanent"|"config"|"unavailable"|"transient", retry_after) for an SES error answer."""
    lowered = message.lower()
    if code in THROTTLE_CODES or "maximum sending rate exceeded" in lowered or status == 429:
        quota = "quota" in lowered and "daily" in lowered
        return "throttled", (600.0 if quota else DEFAULT_THROTTLE_SECONDS)
    if code in CONFIG_CODES or status in (401, 403):
        return "config", None
    if code in PERMANENT_CODES:
        domain = sender_address.rsplit("@", 1)[-1].lower()
        # "Did not have authority to send from ...", "identities failed the check ... noreply@ours":
        # the fault is our sender, not this recipient.
        if sender_address.lower() in lowered or f"@{domain}" in lowered or "send from" in lowered:
            return "config", None
        return "permanent", None
    if status >= 500:
        return "unavailable", None
    if 400 <= status < 500:
        return "permanent", None
    return "transient", None


class SesProvider:
    name = "ses"
    max_batch = MAX_BATCH

    def __init__(
        self,
        *,
        sender: str,
        region: str,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        endpoint_url: str | None = None,
        limiter: RateLimiter | None = None,
        workers: int = DEFAULT_WORKERS,
        timeout: float = 30.0,
        configuration_set: str | None = None,
    ):
        try:
            self._sender_name, self.sender_address = split_sender(sender)
        except MessageError as error:
            raise ProviderError(f"ses: {error}") from None
        if bool(access_key_id) != bool(secret_access_key):
            raise ProviderError("ses: set both aws_access_key_id and aws_secret_access_key, or neither (IAM role).")
        self.sender = sender
        self.region, self.endpoint_url = region, endpoint_url
        self._credentials = (access_key_id, secret_access_key)
        self.limiter = limiter or Unlimited()
        # The engine's own per-chunk acquire would pace twice: this provider paces per message.
        self.paces_sends = not isinstance(self.limiter, Unlimited)
        self.workers, self.timeout, self.configuration_set = max(1, workers), timeout, configuration_set
        self._client = None
        self._pool: ThreadPoolExecutor | None = None

    def __repr__(self) -> str:
        return f"<SesProvider region={self.region} endpoint={self.endpoint_url or 'aws'} sender={self.sender_address}>"

    def make_client(self):
        # Deferred, with botocore below: boto3 is loaded only by processes that send through SES.
        import boto3
        from botocore.config import Config

        access_key_id, secret_access_key = self._credentials
        config = Config(
            region_name=self.region,
            # Throttling is ours to wait out across all workers; botocore must not retry it silently.
            retries={"total_max_attempts": 1, "mode": "standard"},
            connect_timeout=min(10.0, self.timeout),
            read_timeout=self.timeout,
            max_pool_connections=self.workers,
        )
        return boto3.session.Session().client(
            "sesv2", endpoint_url=self.endpoint_url, aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key, config=config,
        )

    def __enter__(self) -> "SesProvider":
        self._client = self.make_client()
        self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="mani-ses")
        return self

    def __exit__(self, *exc_info) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        self._pool = self._client = None

    def send(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        if self._client is None:
            raise ProviderError("ses: use the provider as `with provider:` before sending.")
        state = _ChunkState()
        results = list(self._pool.map(lambda message: self._send_one(message, state), messages))
        if state.config_error and not any(r.outcome == Outcome.SENT for r in results):
            raise ProviderError(f"ses: {state.config_error}")
        return results

    def _send_one(self, message: OutgoingMessage, state: "_ChunkState") -> SendResult:
        from botocore.exceptions import BotoCoreError, ClientError

        rid = message.recipient_id
        stopped = state.stopped()
        if stopped is not None:
            return SendResult(rid, *stopped)
        try:
            raw = compose(message, sender=self.sender)
            to_address = normalize_address(message.to_address)
        except MessageError as error:
            return SendResult(rid, Outcome.PERMANENT, error=str(error))
        self.limiter.acquire(1)
        stopped = state.stopped()  # another thread may have been throttled while we waited
        if stopped is not None:
            return SendResult(rid, *stopped)
        request: dict[str, Any] = {
            "FromEmailAddress": self.sender_address,
            "Destination": {"ToAddresses": [to_address]},
            "Content": {"Raw": {"Data": raw}},
        }
        if self.configuration_set:
            request["ConfigurationSetName"] = self.configuration_set
        try:
            answer = self._client.send_email(**request)
        except ClientError as error:
            info = error.response.get("Error", {})
            code, text = str(info.get("Code", "")), str(info.get("Message", "")) or str(error)
            status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            kind, retry_after = classify_client_error(code, text, status, sender_address=self.sender_address)
            detail = f"{code or status}: {text}"[:500]
            if kind == "throttled":
                state.stop(Outcome.THROTTLED, detail, retry_after)
                self.limiter.backoff(retry_after or DEFAULT_THROTTLE_SECONDS)
                return SendResult(rid, Outcome.THROTTLED, error=detail, retry_after=retry_after)
            if kind == "config":
                state.stop(Outcome.TRANSIENT, detail, None, config=True)
                return SendResult(rid, Outcome.TRANSIENT, error=detail)
            if kind == "unavailable":
                state.stop(Outcome.UNAVAILABLE, detail, None)
                return SendResult(rid, Outcome.UNAVAILABLE, error=detail)
            return SendResult(rid, Outcome.PERMANENT if kind == "permanent" else Outcome.TRANSIENT, error=detail)
        except (BotoCoreError, OSError) as error:
            state.stop(Outcome.UNAVAILABLE, f"SES unreachable: {error}"[:500], None)
            return SendResult(rid, Outcome.UNAVAILABLE, error=f"SES unreachable: {error}"[:500])
        return SendResult(rid, Outcome.SENT, external_id=answer.get("MessageId"))


class _ChunkState:
    """What one thread learned that the others must not try past: throttling or bad configuration."""

    def __init__(self):
        self._lock = threading.Lock()
        self._stop: tuple[Outcome, str, float | None] | None = None
        self.config_error: str | None = None

    def stop(self, outcome: Outcome, detail: str, retry_after: float | None, *, config: bool = False) -> None:
        with self._lock:
            if self._stop is None:
                self._stop = (outcome, f"not tried: {detail}", retry_after)
            if config and self.config_error is None:
                self.config_error = detail

    def stopped(self) -> tuple[Outcome, None, str, float | None] | None:
        with self._lock:
            if self._stop is None:
                return None
            outcome, detail, retry_after = self._stop
            return outcome, None, detail, retry_after


def sender_of(company_settings: Mapping, settings: Any) -> str:
    """The From of a company's mail: `sender` (address or "Name <addr>") with `sender_name` if set."""
    sender = company_settings.get("sender") or settings.sender
    name = company_settings.get("sender_name")
    if name and "<" not in sender:
        sender = f"{name} <{sender}>"
    return sender


def from_settings(*, settings: Any, company_settings: Mapping | None = None) -> SesProvider:
    cs = company_settings or {}
    region = cs.get("aws_region")
    if not region:
        raise ProviderError("ses needs aws_region (mani companies set ID aws_region=eu-west-1).")
    return SesProvider(
        sender=sender_of(cs, settings),
        region=region,
        access_key_id=cs.get("aws_access_key_id"),
        secret_access_key=cs.get("aws_secret_access_key"),
        endpoint_url=cs.get("ses_endpoint_url"),
        limiter=limiter_for(cs, settings=settings),
    )
