"""The `sendgrid` provider: v3 `/mail/send` through httpx, up to 1,000 personalizations a call.

Each recipient is one personalization with their own `to`, `subject`, headers (our Message-ID
as `X-Mani-Message-Id`, plus the message's own) and `custom_args` (`mani_message_id`, which
SendGrid's event webhook echoes back). The body is the same two placeholders for everyone,
with each personalization's `substitutions` holding that recipient's rendered text and html,
so each person gets exactly their own message.

SendGrid caps the substitutions of one personalization at 10,000 bytes; a message bigger than
that, or with attachments, goes in a call of its own with its content inline.

How answers become outcomes: 202 -> SENT, `external_id` = `X-Message-Id`; 429 -> THROTTLED
(Retry-After or X-RateLimit-Reset honoured, and the company's limiter backs off); 400 naming
`personalizations.N` -> that recipient PERMANENT and the others sent again; any other
400/413 -> split in halves, one recipient -> PERMANENT; 401/403 -> configuration
(ProviderError when nothing was sent yet); 5xx, timeouts, refused connections -> UNAVAILABLE
(SendGrid is down for everyone: no attempt counted, the rest is not tried).
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from backend.mail.mime import MessageError, normalize_address, split_sender
from backend.mail.providers.base import ClientProvider, Outcome, OutgoingMessage, ProviderError, SendResult
from backend.mail.providers.ses import sender_of
from backend.mail.ratelimit import RateLimiter, limiter_for

MAX_BATCH = 1000
SUBSTITUTION_LIMIT = 10_000
MAX_REQUEST_BYTES = 15 * 1024 * 1024
DEFAULT_API_URL = "https://api.sendgrid.com"
TEXT_TAG, HTML_TAG = "-mani-text-", "-mani-html-"
_PERSONALIZATION_FIELD = re.compile(r"personalizations\.(\d+)")


class _Config(Exception):
    """SendGrid refused our key: no message of this call is at fault."""


class SendGridProvider(ClientProvider):
    name = "sendgrid"
    max_batch = MAX_BATCH
    # One API call carries a whole batch; results are recorded per call.
    bulk_api = True

    def __init__(
        self, *, api_key: str, sender: str, api_url: str | None = None, limiter: RateLimiter | None = None, timeout: float = 60.0
    ):
        if not api_key:
            raise ProviderError("sendgrid needs sendgrid_api_key (mani companies set ID sendgrid_api_key=...).")
        try:
            name, address = split_sender(sender)
        except MessageError as error:
            raise ProviderError(f"sendgrid: {error}") from None
        self.from_field = {"email": address, **({"name": name} if name else {})}
        self.api_url = (api_url or DEFAULT_API_URL).rstrip("/")
        self._api_key, self.timeout = api_key, timeout
        self._pace(limiter, MAX_BATCH)
        self._client = None
        self._sent_any = False

    def __repr__(self) -> str:
        return f"<SendGridProvider {self.api_url}>"

    def make_client(self):
        return httpx.Client(
            base_url=self.api_url,
            headers={"Authorization": f"Bearer {self._api_key}", "Content-Type": "application/json"},
            timeout=httpx.Timeout(self.timeout, connect=10.0),
        )


    def send(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        self._require_client()
        self._sent_any = False
        results: dict[int, SendResult] = {}
        batchable: list[OutgoingMessage] = []
        alone: list[OutgoingMessage] = []
        for m in messages:
            try:
                normalize_address(m.to_address)
            except MessageError as error:
                results[m.recipient_id] = SendResult(m.recipient_id, Outcome.PERMANENT, error=str(error))
                continue
            size = len((m.text or "").encode()) + len((m.html or "").encode()) + 2 * len(TEXT_TAG)
            (alone if m.attachments or size > SUBSTITUTION_LIMIT else batchable).append(m)
        groups = _groups(batchable, self.request_size) + [[m] for m in alone]
        stop: tuple[Outcome, str, float | None] | None = None
        for group in groups:
            if stop is not None:
                for m in group:
                    results[m.recipient_id] = SendResult(m.recipient_id, stop[0], error=stop[1], retry_after=stop[2])
                continue
            try:
                for result in self._send_group(group):
                    results[result.recipient_id] = result
                    if result.outcome in (Outcome.THROTTLED, Outcome.UNAVAILABLE) and stop is None:
                        stop = (result.outcome, f"not tried: {result.error}", result.retry_after)
            except _Config as error:
                if not self._sent_any:
                    raise ProviderError(f"sendgrid: {error}") from None
                stop = (Outcome.TRANSIENT, f"not tried: {error}", None)
                for m in group:
                    results[m.recipient_id] = SendResult(m.recipient_id, Outcome.TRANSIENT, error=str(error))
        return [results[m.recipient_id] for m in messages]

    def _send_group(self, group: list[OutgoingMessage]) -> list[SendResult]:
        self.limiter.acquire(len(group))
        try:
            response = self._client.post("/v3/mail/send", json=self._body(group))
        except httpx.HTTPError as error:
            return [SendResult(m.recipient_id, Outcome.UNAVAILABLE, error=f"SendGrid unreachable: {error}"[:300]) for m in group]
        status = response.status_code
        if status in (200, 202):
            self._sent_any = True
            external_id = response.headers.get("X-Message-Id")
            return [SendResult(m.recipient_id, Outcome.SENT, external_id=external_id) for m in group]
        errors = _errors(response)
        text = "; ".join(e.get("message", "") for e in errors if e.get("message")) or response.reason_phrase
        if status == 429:
            retry_after = _retry_after(response)
            self.limiter.backoff(retry_after or 1.0)
            return [SendResult(m.recipient_id, Outcome.THROTTLED, error=f"429 {text}", retry_after=retry_after) for m in group]
        if status in (401, 403):
            raise _Config(f"{status} {text} (check sendgrid_api_key and its mail.send scope)")
        if status == 400:
            bad = _bad_personalizations(errors, len(group))
            if bad:
                results = [
                    SendResult(group[i].recipient_id, Outcome.PERMANENT, error=f"400 {bad[i]}") for i in sorted(bad)
                ]
                rest = [m for i, m in enumerate(group) if i not in bad]
                return results + (self._send_group(rest) if rest else [])
        if status in (400, 413) and len(group) > 1:
            half = len(group) // 2
            return self._send_group(group[:half]) + self._send_group(group[half:])
        outcome = Outcome.PERMANENT if 400 <= status < 500 else Outcome.UNAVAILABLE
        return [SendResult(m.recipient_id, outcome, error=f"{status} {text}"[:500]) for m in group]

    def _body(self, group: list[OutgoingMessage]) -> dict[str, Any]:
        inline = len(group) == 1 and (group[0].attachments or _size(group[0]) > SUBSTITUTION_LIMIT)
        personalizations = []
        for m in group:
            to = {"email": normalize_address(m.to_address)}
            if m.to_name:
                to["name"] = " ".join(m.to_name.split())
            item: dict[str, Any] = {
                "to": [to],
                "subject": m.subject or "",
                "headers": {**{k: str(v) for k, v in m.headers.items()}, "X-Mani-Message-Id": m.message_id},
                "custom_args": {"mani_message_id": m.message_id},
            }
            if not inline:
                item["substitutions"] = {TEXT_TAG: m.text or "", **({HTML_TAG: m.html} if m.html is not None else {})}
            personalizations.append(item)
        first = group[0]
        text, html = (first.text or "", first.html) if inline else (TEXT_TAG, HTML_TAG if first.html is not None else None)
        content = [{"type": "text/plain", "value": text or " "}]
        if html is not None:
            content.append({"type": "text/html", "value": html})
        body: dict[str, Any] = {"personalizations": personalizations, "from": self.from_field, "content": content}
        if inline and first.attachments:
            body["attachments"] = [
                {"content": base64.b64encode(a.content).decode("ascii"), "filename": a.filename, "type": a.mime_type,
                 "disposition": "attachment"}
                for a in first.attachments
            ]
        return body


def _size(m: OutgoingMessage) -> int:
    return len((m.text or "").encode()) + len((m.html or "").encode()) + 2 * len(TEXT_TAG)


def _groups(messages: list[OutgoingMessage], size: int) -> list[list[OutgoingMessage]]:
    """Calls of at most `size` personalizations, one body shape (html or not) per call, under the byte cap."""
    groups: dict[bool, list[list[OutgoingMessage]]] = {}
    weights: dict[int, int] = {}
    out: list[list[OutgoingMessage]] = []
    for m in messages:
        lists = groups.setdefault(m.html is not None, [])
        weight = _size(m) + len(m.subject or "") + 400
        current = lists[-1] if lists else None
        if current is None or len(current) >= size or weights[id(current)] + weight > MAX_REQUEST_BYTES:
            current = []
            lists.append(current)
            out.append(current)
            weights[id(current)] = 0
        current.append(m)
        weights[id(current)] += weight
    return out


def _errors(response) -> list[dict]:
    try:
        errors = response.json().get("errors") or []
        return [e for e in errors if isinstance(e, dict)]
    except (ValueError, AttributeError):
        return []


def _bad_personalizations(errors: list[dict], count: int) -> dict[int, str]:
    bad: dict[int, str] = {}
    for error in errors:
        match = _PERSONALIZATION_FIELD.match(str(error.get("field") or ""))
        if match and int(match.group(1)) < count:
            bad[int(match.group(1))] = f"{error.get('message', 'rejected')} ({error.get('field')})"
    return bad


def _retry_after(response) -> float | None:
    retry_after = response.headers.get("Retry-After")
    reset = response.headers.get("X-RateLimit-Reset")
    try:
        if retry_after is not None:
            return max(0.0, min(float(retry_after), 3600.0))
        if reset is not None:
            return max(0.0, min(float(reset) - time.time(), 3600.0))
    except ValueError:
        pass
    return None


def from_settings(*, settings: Any, company_settings: Mapping | None = None) -> SendGridProvider:
    cs = company_settings or {}
    return SendGridProvider(
        api_key=cs.get("sendgrid_api_key"),
        sender=sender_of(cs, settings),
        api_url=cs.get("sendgrid_api_url"),
        limiter=limiter_for(cs, settings=settings),
    )
