"""Provider bounce and complaint events (Mailgun, SES through SNS), and the rates they make.

Each event is checked for its provider's signature, matched to a recipient by the provider's
message id (`recipients.external_id`), and moves a sent recipient to `bounced` or
`complained` once: an event seen again changes nothing. Either puts the address on the job's
company's suppression list (`backend.companies.suppressions`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from sqlalchemy import update
from sqlmodel import Session, select

from backend.companies import suppressions
from backend.core import contract
from backend.core.errors import InvalidFields, ManiError, UnusableInput
from backend.core.json_body import json_object
from backend.moodle import callbacks
from backend.moodle.contracts import SesNotification
from models import Job, Recipient, RecipientStatus, utcnow
from models.callbacks import WebhookEvent

BOUNCED, COMPLAINED = RecipientStatus.BOUNCED, RecipientStatus.COMPLAINED
# Where a bounce or complaint may come from; anything else is left as it is.
MOVES_FROM = {BOUNCED: {RecipientStatus.SENT}, COMPLAINED: {RecipientStatus.SENT, RecipientStatus.BOUNCED}}
COUNTER = {BOUNCED: "bounced_count", COMPLAINED: "complained_count"}
SUPPRESSION_SOURCE = {BOUNCED: "bounce", COMPLAINED: "complaint"}
OUR_MESSAGE_ID = re.compile(r"^mani\.([0-9a-fA-F-]{36})\.(\d+)@")
DEFAULT_SNS_CERT_PATTERN = r"^https://sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/"
# Mailgun retries a webhook for hours; replays are harmless (events are deduplicated by id).
DEFAULT_MAILGUN_MAX_AGE = 24 * 3600


class WebhookRejected(ManiError):
    """A webhook request that is not what it claims to be (bad signature, bad certificate URL)."""


@dataclass(slots=True)
class ProviderEvent:
    provider: str
    event_id: str
    # bounced, complained, or ignored (a temporary failure, a delivery notice).
    kind: str
    email: str | None
    message_ids: list[str] = field(default_factory=list)
    reason: str | None = None
    # Our own ids, when the provider echoes them back (Mailgun user variables).
    recipient_id: int | None = None
    details: dict = field(default_factory=dict)


# Mailgun -----------------------------------------------------------------------------------

def verify_mailgun(signature: dict, signing_keys: list[str], *, now: float | None = None,
                   max_age: int = DEFAULT_MAILGUN_MAX_AGE) -> None:
    """Mailgun's check: hex HMAC-SHA256 of timestamp + token with the webhook signing key."""
    try:
        stamp, token, given = str(signature["timestamp"]), str(signature["token"]), str(signature["signature"])
    except (KeyError, TypeError):
        raise WebhookRejected("The Mailgun signature block is missing.") from None
    message = (stamp + token).encode("utf-8")
    good = any(
        given.isascii() and hmac.compare_digest(hmac.new(key.encode(), message, hashlib.sha256).hexdigest(), given)
        for key in signing_keys if key
    )
    if not good:
        raise WebhookRejected("The Mailgun signature does not match.")
    current = time.time() if now is None else now
    if not stamp.isdigit() or abs(current - int(stamp)) > max_age:
        raise WebhookRejected("The Mailgun signature is too old.")


def parse_mailgun(payload: dict) -> ProviderEvent:
    data = payload.get("event-data")
    if not isinstance(data, dict):
        raise UnusableInput("The Mailgun body has no event-data.")
    name = data.get("event")
    kind = "ignored"
    if name == "failed" and data.get("severity") == "permanent":
        kind = "bounced"
    elif name == "complained":
        kind = "complained"
    headers = (data.get("message") or {}).get("headers") or {}
    status = data.get("delivery-status") or {}
    variables = data.get("user-variables") or {}
    rid = variables.get("mani_recipient_id") or variables.get("mani-recipient-id")
    return ProviderEvent(
        provider="mailgun", event_id=str(data.get("id") or payload["signature"]["token"]), kind=kind,
        email=data.get("recipient"), message_ids=[m for m in [headers.get("message-id")] if m],
        reason=status.get("description") or status.get("message") or data.get("reason"),
        recipient_id=int(rid) if str(rid or "").isdigit() else None,
        details={"event": name, "severity": data.get("severity"), "code": status.get("code")},
    )


# SES through SNS ---------------------------------------------------------------------------

_SIGNED_FIELDS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}
_cert_cache: dict[str, x509.Certificate] = {}
_cert_lock = threading.Lock()


def sns_string_to_sign(message: dict) -> bytes:
    """The canonical text SNS signs: `Name\\nvalue\\n` for each signed field present, in order."""
    fields = _SIGNED_FIELDS.get(message.get("Type"))
    if fields is None:
        raise WebhookRejected(f"Unknown SNS message type {message.get('Type')!r}.")
    parts = []
    for name in fields:
        if name == "Subject" and message.get(name) is None:
            continue
        if not isinstance(message.get(name), str):
            raise WebhookRejected(f"The SNS message has no {name}.")
        parts.append(f"{name}\n{message[name]}\n")
    return "".join(parts).encode("utf-8")


def _signing_cert(url: str, *, pattern: str, http_client: httpx.Client) -> x509.Certificate:
    if not re.match(pattern, url):
        raise WebhookRejected("The SNS signing certificate URL is not on an allowed host.")
    with _cert_lock:
        cached = _cert_cache.get(url)
    if cached is not None:
        return cached
    try:
        response = http_client.get(url, timeout=10.0)
        response.raise_for_status()
        cert = x509.load_pem_x509_certificate(response.content)
    except (httpx.HTTPError, ValueError) as error:
        raise WebhookRejected(f"The SNS signing certificate could not be fetched ({error}).") from None
    with _cert_lock:
        if len(_cert_cache) > 32:
            _cert_cache.clear()
        _cert_cache[url] = cert
    return cert


def verify_sns(message: dict, *, http_client: httpx.Client, cert_pattern: str = DEFAULT_SNS_CERT_PATTERN,
               topic_arns: list[str] | None = None) -> None:
    """Check an SNS message's RSA signature (SignatureVersion 1: SHA1, 2: SHA256) and topic."""
    version = str(message.get("SignatureVersion"))
    algorithm = {"1": hashes.SHA1(), "2": hashes.SHA256()}.get(version)
    if algorithm is None:
        raise WebhookRejected(f"Unsupported SNS SignatureVersion {version!r}.")
    if topic_arns and message.get("TopicArn") not in topic_arns:
        raise WebhookRejected("The SNS topic is not one mani subscribed to.")
    cert = _signing_cert(str(message.get("SigningCertURL") or ""), pattern=cert_pattern, http_client=http_client)
    if cert.not_valid_after_utc < utcnow():
        raise WebhookRejected("The SNS signing certificate has expired.")
    try:
        signature = base64.b64decode(str(message.get("Signature") or ""), validate=True)
        cert.public_key().verify(signature, sns_string_to_sign(message), padding.PKCS1v15(), algorithm)
    except (InvalidSignature, ValueError, TypeError):
        raise WebhookRejected("The SNS message signature does not match.") from None


def confirm_subscription(message: dict, *, http_client: httpx.Client,
                         cert_pattern: str = DEFAULT_SNS_CERT_PATTERN) -> int:
    """Visit the (verified) SubscribeURL, on the same allowed hosts as certificates."""
    url = str(message.get("SubscribeURL") or "")
    if not re.match(cert_pattern, url):
        raise WebhookRejected("The SNS SubscribeURL is not on an allowed host.")
    try:
        return http_client.get(url, timeout=10.0).status_code
    except httpx.HTTPError as error:
        raise ManiError(f"Confirming the SNS subscription failed ({error}).") from None


def parse_ses(message: dict) -> list[ProviderEvent]:
    """Events in an SNS Notification from SES (notifications or configuration-set events)."""
    try:
        body = json_object((message.get("Message") or "").encode("utf-8", "surrogatepass"))
    except InvalidFields as error:
        raise InvalidFields(f"Message.{error}", [{**e, "field": f"Message.{e['field']}"} for e in error.errors]) from None
    except ManiError:
        raise UnusableInput("The SNS Message is not SES JSON.") from None
    contract.validate(SesNotification, body, what="The SES notification in Message")
    kind_name = body.get("notificationType") or body.get("eventType")
    mail = body.get("mail") or {}
    ids = [mail.get("messageId"), (mail.get("commonHeaders") or {}).get("messageId")]
    ids += [h.get("value") for h in mail.get("headers") or [] if str(h.get("name")).lower() == "message-id"]
    ids = [i for i in ids if i]
    events: list[ProviderEvent] = []
    if kind_name == "Bounce":
        bounce = body.get("bounce") or {}
        kind = "bounced" if bounce.get("bounceType") == "Permanent" else "ignored"
        for entry in bounce.get("bouncedRecipients") or []:
            events.append(ProviderEvent("ses", f"{message['MessageId']}:{entry.get('emailAddress')}", kind,
                                        entry.get("emailAddress"), ids,
                                        entry.get("diagnosticCode") or bounce.get("bounceSubType"),
                                        details={"bounceType": bounce.get("bounceType"),
                                                 "bounceSubType": bounce.get("bounceSubType")}))
    elif kind_name == "Complaint":
        complaint = body.get("complaint") or {}
        for entry in complaint.get("complainedRecipients") or []:
            events.append(ProviderEvent("ses", f"{message['MessageId']}:{entry.get('emailAddress')}",
                                        "complained", entry.get("emailAddress"), ids,
                                        complaint.get("complaintFeedbackType"),
                                        details={"feedback": complaint.get("complaintFeedbackType")}))
    return events


# Applying events ---------------------------------------------------------------------------

def _bare(message_id: str) -> str:
    return message_id.strip().strip("<>").strip()


def match_recipient(*, session: Session, event: ProviderEvent) -> Recipient | None:
    """The recipient an event is about: our id, else the provider message id, else the address."""
    email = (event.email or "").strip().lower() or None
    if event.recipient_id is not None:
        found = session.get(Recipient, event.recipient_id)
        if found is not None and (email is None or found.email_norm == email):
            return found
    for message_id in event.message_ids:
        # Our own Message-ID (backend.mail.mime.message_id_for) names the job and the recipient.
        ours = OUR_MESSAGE_ID.match(_bare(message_id))
        if ours:
            found = session.get(Recipient, int(ours.group(2)))
            job = session.get(Job, found.job_id) if found is not None else None
            if job is not None and job.uuid == ours.group(1) and (email is None or found.email_norm == email):
                return found
    candidates = {v for m in event.message_ids for v in (_bare(m), f"<{_bare(m)}>")}
    if candidates:
        query = select(Recipient).where(Recipient.external_id.in_(candidates))
        rows = session.exec(query.order_by(Recipient.id.desc()).limit(50)).all()
        # A batch API shares one message id between recipients: the address picks one out.
        for row in rows:
            if email is None or row.email_norm == email:
                return row
    if email is not None:
        # Last resort: the latest send to this address in the last week.
        since = utcnow() - timedelta(days=7)
        return session.exec(
            select(Recipient).where(Recipient.email_norm == email, Recipient.sent_at >= since)
            .order_by(Recipient.sent_at.desc()).limit(1)
        ).first()
    return None


def set_recipient_status(*, session: Session, recipient: Recipient, status: str,
                         error: str | None = None) -> bool:
    """Move one recipient if its status allows it, keeping the job's counters; True if it moved."""
    old = recipient.status
    if old not in MOVES_FROM[status]:
        return False
    result = session.execute(
        update(Recipient).where(Recipient.id == recipient.id, Recipient.status == old)
        .values(status=status, last_error=error, updated_at=utcnow())
    )
    if result.rowcount != 1:
        return False
    changes = {COUNTER[status]: getattr(Job, COUNTER[status]) + 1, "updated_at": utcnow()}
    if old in COUNTER:
        changes[COUNTER[old]] = getattr(Job, COUNTER[old]) - 1
    session.execute(update(Job).where(Job.id == recipient.job_id).values(**changes))
    recipient.status, recipient.last_error = status, error
    return True


def apply_event(*, session: Session, event: ProviderEvent) -> WebhookEvent:
    """Record one provider event and apply it once; returns the stored event."""
    seen = session.exec(
        select(WebhookEvent).where(WebhookEvent.provider == event.provider, WebhookEvent.event_id == event.event_id)
    ).first()
    if seen is not None:
        return seen
    recipient = match_recipient(session=session, event=event) if event.kind != "ignored" else None
    outcome = "ignored" if event.kind == "ignored" else "unmatched"
    if recipient is not None:
        note = f"{event.kind}: {event.reason}" if event.reason else event.kind
        moved = set_recipient_status(session=session, recipient=recipient, status=event.kind, error=note[:2000])
        outcome = "applied" if moved else "ignored"
        job = session.get(Job, recipient.job_id)
        if moved:
            callbacks.on_recipients_changed(session=session, job=job, recipient_ids=[recipient.id])
        # A hard bounce or a complaint keeps the address out of the company's later jobs.
        suppressions.add(
            session=session, company_id=job.company_id,
            entries=[suppressions.Entry(email=recipient.email_norm, reason=note[:suppressions.MAX_REASON])],
            source=SUPPRESSION_SOURCE[event.kind], actor=f"webhook:{event.provider}", audit_source="api",
            job_id=job.id,
        )
    stored = WebhookEvent(provider=event.provider, event_id=event.event_id[:255], event_type=event.kind,
                          outcome=outcome, job_id=recipient.job_id if recipient else None,
                          recipient_id=recipient.id if recipient else None, email=(event.email or "")[:320] or None,
                          details={**event.details, "reason": event.reason, "message_ids": event.message_ids})
    session.add(stored)
    session.flush()
    return stored
