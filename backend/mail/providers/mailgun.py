"""The `mailgun` provider: batch sending through the official `mailgun` client.

One API call carries up to 1,000 recipients. Every recipient's own rendered subject, text and
html travel as their `recipient-variables` and the message fields are just
`%recipient.subject%`, `%recipient.text%`, `%recipient.html%`: so each person gets exactly the
message rendered for them, and (because recipient variables are present) Mailgun sends one
message per `to`, so nobody sees another's address. Our Message-ID goes in
`h:X-Mani-Message-Id` and `v:mani-message-id` per recipient (Mailgun writes its own
Message-Id); `external_id` is the id Mailgun answers for the call.

A message with attachments goes alone, as the raw MIME of `backend.mail.mime.compose`
(`messages.mime`), since attachments of a batch call are shared by all its recipients.

How answers become outcomes: 200 -> SENT; 429 -> THROTTLED (Retry-After honoured, and the
company's limiter backs off); 400/413 for a call of several recipients -> split in halves to
find the bad ones, for one recipient -> PERMANENT; 401/403/404 (key or domain) -> configuration:
ProviderError when nothing was sent yet, else TRANSIENT; 5xx, timeouts, refused connections
-> UNAVAILABLE (Mailgun is down for everyone: no attempt counted, the rest is not tried).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from backend.mail.mime import MessageError, compose, format_address, normalize_address, split_sender
from backend.mail.providers.base import ClientProvider, Outcome, OutgoingMessage, ProviderError, SendResult
from backend.mail.providers.ses import sender_of
from backend.mail.ratelimit import RateLimiter, limiter_for

MAX_BATCH = 1000
# Mailgun takes messages up to 25 MB; stay well clear with the recipient variables.
MAX_REQUEST_BYTES = 10 * 1024 * 1024
DEFAULT_API_URL = "https://api.mailgun.net"


class _BriefErrors(logging.Filter):
    """The client logs a failed request's exception, and its own redaction filter then expands
    it attribute by attribute, request body included (names, temporary passwords): log the
    exception's type and first words instead. Installed ahead of the client's filters."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_short(a)[:200] if isinstance(a, BaseException) else a for a in record.args)
        if record.exc_info:
            record.exc_text = _short(record.exc_info[1])[:200] if record.exc_info[1] else None
            record.exc_info = None
        return True


for _name in ("mailgun.endpoints", "mailgun.client"):
    _logger = logging.getLogger(_name)
    if not any(isinstance(f, _BriefErrors) for f in _logger.filters):
        _logger.filters.insert(0, _BriefErrors())


class _Config(Exception):
    """Mailgun refused our key or domain: no message of this call is at fault."""


class MailgunProvider(ClientProvider):
    name = "mailgun"
    max_batch = MAX_BATCH
    # One API call carries a whole batch; results are recorded per call.
    bulk_api = True

    def __init__(
        self,
        *,
        api_key: str,
        domain: str,
        sender: str,
        api_url: str | None = None,
        limiter: RateLimiter | None = None,
        timeout: float = 60.0,
    ):
        if not api_key or not domain:
            raise ProviderError("mailgun needs mailgun_domain and mailgun_api_key (mani companies set ID ...).")
        try:
            name, address = split_sender(sender)
            self.from_header = format_address(name, address)
        except MessageError as error:
            raise ProviderError(f"mailgun: {error}") from None
        self.sender, self.domain = sender, domain
        self.api_url = (api_url or DEFAULT_API_URL).rstrip("/")
        self._api_key, self.timeout = api_key, timeout
        self._pace(limiter, MAX_BATCH)
        self._client = None
        self._sent_any = False

    def __repr__(self) -> str:
        return f"<MailgunProvider {self.api_url} domain={self.domain}>"

    def make_client(self):
        # Deferred: the Mailgun client library is loaded only by processes that send through Mailgun.
        from mailgun.client import Client
        from mailgun.config import RetryPolicy

        # No retries inside the client: a 429 is waited out by the engine, shared by all workers.
        return Client(
            auth=("api", self._api_key), api_url=self.api_url,
            retry_policy=RetryPolicy(max_retries=0), timeout=(10.0, self.timeout),
        )


    # Sending ----------------------------------------------------------------------------

    def send(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        self._require_client()
        self._sent_any = False
        results: dict[int, SendResult] = {}
        pending: list[tuple[str, list[OutgoingMessage]]] = []
        for message in messages:
            try:
                normalize_address(message.to_address)
            except MessageError as error:
                results[message.recipient_id] = SendResult(message.recipient_id, Outcome.PERMANENT, error=str(error))
                continue
        batchable = [m for m in messages if m.recipient_id not in results and not m.attachments]
        pending += [("batch", group) for group in _groups(batchable, self.request_size)]
        pending += [("mime", [m]) for m in messages if m.recipient_id not in results and m.attachments]
        stop: SendResult | None = None
        for kind, group in pending:
            if stop is not None:
                for m in group:
                    results[m.recipient_id] = SendResult(m.recipient_id, stop.outcome, error=stop.error, retry_after=stop.retry_after)
                continue
            try:
                for result in self._send_group(kind, group):
                    results[result.recipient_id] = result
                    if result.outcome in (Outcome.THROTTLED, Outcome.UNAVAILABLE) and stop is None:
                        stop = SendResult(0, result.outcome, error=f"not tried: {result.error}", retry_after=result.retry_after)
            except _Config as error:
                if not self._sent_any:
                    raise ProviderError(f"mailgun: {error}") from None
                stop = SendResult(0, Outcome.TRANSIENT, error=f"not tried: {error}")
                for m in group:
                    results[m.recipient_id] = SendResult(m.recipient_id, Outcome.TRANSIENT, error=str(error))
        return [results[m.recipient_id] for m in messages]

    def _send_group(self, kind: str, group: list[OutgoingMessage]) -> list[SendResult]:
        self.limiter.acquire(len(group))
        try:
            if kind == "mime":
                response = self._post_mime(group[0])
            else:
                response = self._post_batch(group)
        except MessageError as error:
            return [SendResult(m.recipient_id, Outcome.PERMANENT, error=str(error)) for m in group]
        except Exception as error:  # noqa: BLE001 - the client wraps every transport failure in ApiError
            return [SendResult(m.recipient_id, Outcome.UNAVAILABLE, error=f"Mailgun unreachable: {_short(error)}") for m in group]
        status, text = response.status_code, describe_failure(response)
        if status == 200:
            self._sent_any = True
            external_id = _external_id(response)
            return [SendResult(m.recipient_id, Outcome.SENT, external_id=external_id) for m in group]
        if status == 429:
            retry_after = _retry_after(response)
            self.limiter.backoff(retry_after or 1.0)
            return [SendResult(m.recipient_id, Outcome.THROTTLED, error=f"429 {text}", retry_after=retry_after) for m in group]
        if status in (401, 403, 404):
            raise _Config(f"{status} {text} (check mailgun_api_key, mailgun_domain {self.domain} and mailgun_api_url)")
        if status in (400, 413) and len(group) > 1:
            half = len(group) // 2
            return self._send_group(kind, group[:half]) + self._send_group(kind, group[half:])
        if 400 <= status < 500:
            return [SendResult(m.recipient_id, Outcome.PERMANENT, error=f"{status} {text}") for m in group]
        return [SendResult(m.recipient_id, Outcome.UNAVAILABLE, error=f"{status} {text}") for m in group]

    def _post_batch(self, group: list[OutgoingMessage]):
        variables, to = {}, []
        for m in group:
            address = normalize_address(m.to_address)
            to.append(format_address(m.to_name, address))
            own = {"subject": m.subject or "", "text": m.text or "", "message_id": m.message_id}
            if m.html is not None:
                own["html"] = m.html
            for index, value in enumerate(m.headers.values()):
                own[f"header_{index}"] = str(value)
            variables[address] = own
        data: dict[str, Any] = {
            "from": self.from_header,
            "to": to,
            "subject": "%recipient.subject%",
            "text": "%recipient.text%",
            "recipient-variables": json.dumps(variables, ensure_ascii=False, separators=(",", ":")),
            "h:X-Mani-Message-Id": "%recipient.message_id%",
            "v:mani-message-id": "%recipient.message_id%",
        }
        if group[0].html is not None:
            data["html"] = "%recipient.html%"
        for index, name in enumerate(group[0].headers):
            data[f"h:{name}"] = f"%recipient.header_{index}%"
        return self._client.messages.create(domain=self.domain, data=data)

    def _post_mime(self, message: OutgoingMessage):
        raw = compose(message, sender=self.sender)
        data = {"to": normalize_address(message.to_address), "v:mani-message-id": message.message_id}
        return self._client.mimemessage.create(
            domain=self.domain, data=data, files={"message": ("message.mime", raw, "application/octet-stream")}
        )


def _groups(messages: list[OutgoingMessage], size: int) -> list[list[OutgoingMessage]]:
    """Calls of at most `size` recipients, each address once per call (recipient variables are
    keyed by address), one shape per call (html or not, the same header names), under the size cap."""
    groups: list[tuple[tuple, set[str], int, list[OutgoingMessage]]] = []
    for m in messages:
        shape = (m.html is not None, tuple(m.headers))
        address = normalize_address(m.to_address).lower()
        weight = len(m.subject or "") + len(m.text or "") + len(m.html or "") + 200
        for index, (g_shape, seen, bytes_, members) in enumerate(groups):
            if g_shape == shape and address not in seen and len(members) < size and bytes_ + weight <= MAX_REQUEST_BYTES:
                seen.add(address)
                members.append(m)
                groups[index] = (g_shape, seen, bytes_ + weight, members)
                break
        else:
            groups.append((shape, {address}, weight, [m]))
    return [members for *_, members in groups]


def describe_failure(response) -> str:
    try:
        body = response.json()
        text = body.get("message") or body.get("error") or json.dumps(body)
    except ValueError:
        text = (response.text or "").strip() or getattr(response, "reason", "") or ""
    return " ".join(str(text).split())[:300]


def _external_id(response) -> str | None:
    try:
        return (response.json().get("id") or "").strip("<>") or None
    except ValueError:
        return None


def _retry_after(response) -> float | None:
    value = response.headers.get("Retry-After") or response.headers.get("X-RateLimit-Reset")
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    if seconds > 10_000_000:  # an epoch time, not a delay
        seconds = seconds - time.time()
    return max(0.0, min(seconds, 3600.0))


def _short(error: BaseException) -> str:
    return f"{type(error).__name__}: {' '.join(str(error).split())[:300]}"


def from_settings(*, settings: Any, company_settings: Mapping | None = None) -> MailgunProvider:
    cs = company_settings or {}
    return MailgunProvider(
        api_key=cs.get("mailgun_api_key"),
        domain=cs.get("mailgun_domain"),
        sender=sender_of(cs, settings),
        api_url=cs.get("mailgun_api_url"),
        limiter=limiter_for(cs, settings=settings),
    )
