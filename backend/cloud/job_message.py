"""The handoff message: the seeds' Job JSON for one batch, built by mani, read by the worker.

One message per batch (`job_batch_size`, 200 by default). Beside the seed's fields it carries
mani's recipient id on each recipient (`recipient_id`), the batch number, the job's action, and
what the worker must render exactly as mani would (`site_name` and `login_url` go into
`template_data`; `presigned_url_ttl` and `certificate_verify_url` ride at the top). No secret
travels: a temporary password is sealed for the worker (`password_encrypted`, see
`handoff_crypto`), and the callback secret is the stack's own. `round` (absent the first time)
sets an admin's retry of a batch apart from a redelivery in the worker's idempotency key.

A message must fit the queue (SQS: 256 KiB). `message_bodies` returns the body as is when it
fits; otherwise it stores the payload through `store` and returns a pointer in the format of
AWS's SQS extended client (`["software.amazon.payloadoffloading.PayloadS3Pointer",
{"s3BucketName": ..., "s3Key": ...}]`), or, with no store, splits the batch's recipients until
each part fits. `resolve_body` turns a pointer back into the payload on the worker's side.

    {"job_id": "<uuid>", "tenant_id": 123, "type": "certificate", "action": "both",
     "batch": 3, "template_id": null, "template_data": {"course_name": "...", "site_name": "...",
     "login_url": "..."}, "generate_certificate": true, "certificate_template": "default",
     "callback_url": "https://mani.example.com/api/v1/callbacks", "presigned_url_ttl": 604800,
     "timestamp": "2025-11-18T12:00:00Z", "source": "mani",
     "recipients": [{"recipient_id": 41, "userid": 1001, "email": "a@example.com",
                     "firstname": "Ann", "lastname": "Lee", "username": "ann",
                     "password_encrypted": "w1:...", "grade": "A"}]}
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from backend.cloud.handoff_crypto import encrypt_for_worker
from backend.core.errors import UnusableInput

# SQS's limit on one message (body and attributes); a margin keeps attributes in.
SQS_MAX_MESSAGE_BYTES = 256 * 1024
DEFAULT_LIMIT = SQS_MAX_MESSAGE_BYTES - 4 * 1024
POINTER_CLASS = "software.amazon.payloadoffloading.PayloadS3Pointer"
CLAIM_CHECK_PREFIX = "claim-check/"
SOURCE_MANI = "mani"
ACTIONS = ("email", "certificate", "both")
# Recipient fields with a meaning of their own; every other key is a template variable.
RECIPIENT_FIELDS = ("recipient_id", "userid", "email", "firstname", "lastname", "username", "password_encrypted")


class InvalidJobMessage(UnusableInput):
    """A handoff message that no retry can make usable (a poison message)."""


@dataclass(frozen=True, slots=True)
class MessageRecipient:
    recipient_id: int
    email: str
    userid: Any = None
    firstname: str | None = None
    lastname: str | None = None
    username: str | None = None
    password_encrypted: str | None = None
    plain_password: bool = False  # the contract forbids it; the worker refuses such a recipient
    variables: dict = field(default_factory=dict)

    def fields(self) -> dict[str, Any]:
        """The recipient's own fields, as mani's engine hands them to the templates."""
        return {"email": self.email, "userid": self.userid, "firstname": self.firstname,
                "lastname": self.lastname, "username": self.username}


@dataclass(frozen=True, slots=True)
class JobMessage:
    job_id: str
    job_type: str
    action: str
    callback_url: str
    recipients: tuple[MessageRecipient, ...]
    tenant_id: Any = None
    batch: int | None = None
    template_id: str | None = None
    template_data: dict = field(default_factory=dict)
    certificate_template: str | None = None
    presigned_url_ttl: int | None = None
    certificate_verify_url: str | None = None
    # Which handoff of this batch: 0 the first time; after an admin's retry, mani's time of the
    # batch's previous handoff. Part of the worker's idempotency key: a retry is sent again, a
    # redelivered message (or the same handoff tried again) is not.
    handoff_round: int = 0

    @property
    def wants_certificates(self) -> bool:
        return self.action in ("certificate", "both")

    @property
    def wants_email(self) -> bool:
        return self.action != "certificate"


# mani's side: building ------------------------------------------------------------------------


def recipient_entry(*, job_id: str, recipient_id: int, email: str, secret: str | None = None,
                    password: str | None = None, userid: Any = None, firstname: str | None = None,
                    lastname: str | None = None, username: str | None = None,
                    variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One `recipients[]` item; a temporary password is sealed for the worker with `secret`."""
    entry: dict[str, Any] = {k: v for k, v in (variables or {}).items()
                             if k not in RECIPIENT_FIELDS and k != "password" and v is not None}
    entry.update(recipient_id=recipient_id, email=email)
    for name, value in (("userid", userid), ("firstname", firstname), ("lastname", lastname), ("username", username)):
        if value not in (None, ""):
            entry[name] = int(value) if name == "userid" and str(value).isdigit() else value
    if password:
        if not secret:
            raise UnusableInput("a temporary password can only be handed off with cloud_callback_secret set.")
        entry["password_encrypted"] = encrypt_for_worker(password, secret=secret, job_id=job_id,
                                                         recipient_id=recipient_id)
    return entry


def build_job_message(*, job_id: str, tenant_id: Any, job_type: str, action: str, callback_url: str,
                      recipients: Iterable[dict], batch: int | None = None, template_id: str | None = None,
                      template_data: Mapping[str, Any] | None = None, certificate_template: str | None = None,
                      presigned_url_ttl: int | None = None, certificate_verify_url: str | None = None,
                      handoff_round: int = 0, now: datetime | None = None) -> dict[str, Any]:
    """The Job JSON of one batch (recipients from `recipient_entry`)."""
    if action not in ACTIONS:
        raise UnusableInput(f"action must be one of {', '.join(ACTIONS)}, not {action!r}.")
    stamp = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    message: dict[str, Any] = {
        "job_id": job_id, "tenant_id": tenant_id, "type": job_type, "action": action, "batch": batch,
        "template_id": template_id, "template_data": dict(template_data or {}),
        "generate_certificate": action in ("certificate", "both"),
        "certificate_template": certificate_template or (template_data or {}).get("certificate_template"),
        "callback_url": callback_url, "timestamp": stamp.strftime("%Y-%m-%dT%H:%M:%SZ"), "source": SOURCE_MANI,
        "recipients": list(recipients),
    }
    if presigned_url_ttl:
        message["presigned_url_ttl"] = int(presigned_url_ttl)
    if certificate_verify_url:
        message["certificate_verify_url"] = certificate_verify_url
    if handoff_round:
        message["round"] = int(handoff_round)
    return message


def encode(message: Mapping[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False)


def claim_check_key(message: Mapping[str, Any], body: str) -> str:
    digest = hashlib.sha256(body.encode("utf-8")).hexdigest()[:24]
    return f"{CLAIM_CHECK_PREFIX}{message.get('job_id')}/batch-{message.get('batch') or 0}-{digest}.json"


def pointer(bucket: str, key: str) -> str:
    """The SQS extended client's pointer body for a payload stored in S3."""
    return json.dumps([POINTER_CLASS, {"s3BucketName": bucket, "s3Key": key}], separators=(",", ":"))


def message_bodies(message: Mapping[str, Any], *, limit: int = DEFAULT_LIMIT,
                   store: Callable[[str, bytes], str] | None = None) -> list[str]:
    """The message bodies to send for one batch: the message, a claim-check pointer, or parts.

    `store(key, payload)` writes the payload to the bucket and returns the bucket's name.
    """
    body = encode(message)
    if len(body.encode("utf-8")) <= limit:
        return [body]
    if store is not None:
        key = claim_check_key(message, body)
        bucket = store(key, body.encode("utf-8"))
        return [pointer(bucket, key)]
    recipients = list(message.get("recipients") or [])
    if len(recipients) < 2:
        raise UnusableInput(f"one recipient of job {message.get('job_id')} does not fit in a queue message "
                            "and no bucket is set for the claim check.")
    half = len(recipients) // 2
    return [*message_bodies({**message, "recipients": recipients[:half]}, limit=limit),
            *message_bodies({**message, "recipients": recipients[half:]}, limit=limit)]


# the worker's side: reading -------------------------------------------------------------------


def pointer_of(body: str) -> tuple[str, str] | None:
    """(bucket, key) when `body` is a claim-check pointer, else None."""
    if not body.startswith("[") or POINTER_CLASS not in body[:80]:
        return None
    try:
        kind, where = json.loads(body)
        return str(where["s3BucketName"]), str(where["s3Key"])
    except (ValueError, TypeError, KeyError):
        raise InvalidJobMessage("the message is a malformed claim-check pointer.") from None


def resolve_body(body: str, *, fetch: Callable[[str, str], bytes]) -> dict[str, Any]:
    """The message's JSON object, fetched through `fetch(bucket, key)` for a claim-check pointer."""
    where = pointer_of(body)
    if where is not None:
        body = fetch(*where).decode("utf-8")
    try:
        payload = json.loads(body)
    except ValueError as error:
        raise InvalidJobMessage(f"the message is not JSON ({error}).") from None
    if not isinstance(payload, dict):
        raise InvalidJobMessage("the message is not a JSON object.")
    return payload


def _text(payload: Mapping[str, Any], name: str, *, required: bool = False) -> str | None:
    value = payload.get(name)
    if value is None or value == "":
        if required:
            raise InvalidJobMessage(f"the message has no {name}.")
        return None
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise InvalidJobMessage(f"{name} must be text.")
    return str(value)


def _recipient(index: int, item: Any) -> MessageRecipient:
    where = f"recipients[{index}]"
    if not isinstance(item, dict):
        raise InvalidJobMessage(f"{where} is not an object.")
    rid = item.get("recipient_id")
    if isinstance(rid, bool) or not isinstance(rid, (int, str)) or not str(rid).isdigit():
        raise InvalidJobMessage(f"{where}.recipient_id must be mani's recipient id (a whole number).")
    email = item.get("email")
    if not isinstance(email, str) or "@" not in email:
        raise InvalidJobMessage(f"{where}.email is missing or not an address.")
    sealed = item.get("password_encrypted")
    if sealed is not None and not isinstance(sealed, str):
        raise InvalidJobMessage(f"{where}.password_encrypted must be text.")
    names = {name: item.get(name) if isinstance(item.get(name), str) else None
             for name in ("firstname", "lastname", "username")}
    variables = {k: v for k, v in item.items() if k not in RECIPIENT_FIELDS and k != "password"}
    return MessageRecipient(recipient_id=int(rid), email=email, userid=item.get("userid"),
                            password_encrypted=sealed, plain_password="password" in item,
                            variables=variables, **names)


def _round(payload: Mapping[str, Any]) -> int:
    value = payload.get("round", 0)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidJobMessage("round must be a whole number.")
    return value


def parse_job_message(payload: Mapping[str, Any]) -> JobMessage:
    """The message as typed fields; InvalidJobMessage names the first field that is unusable."""
    job_id = _text(payload, "job_id", required=True)
    try:
        job_id = str(uuid.UUID(job_id))
    except ValueError:
        raise InvalidJobMessage("job_id must be a UUID.") from None
    job_type = _text(payload, "type", required=True)
    callback_url = _text(payload, "callback_url", required=True)
    if not callback_url.startswith(("http://", "https://")):
        raise InvalidJobMessage("callback_url must be an http:// or https:// URL.")
    generate = payload.get("generate_certificate") is True
    action = _text(payload, "action") or ("both" if generate else "email")
    if action not in ACTIONS:
        raise InvalidJobMessage(f"action must be one of {', '.join(ACTIONS)}.")
    template_data = payload.get("template_data")
    template_data = {} if template_data is None else template_data
    if not isinstance(template_data, dict):
        raise InvalidJobMessage("template_data must be an object.")
    items = payload.get("recipients")
    if not isinstance(items, list) or not items:
        raise InvalidJobMessage("recipients must be a non-empty list.")
    ttl = payload.get("presigned_url_ttl")
    if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int) or ttl < 1):
        raise InvalidJobMessage("presigned_url_ttl must be a whole number of seconds.")
    batch = payload.get("batch")
    return JobMessage(
        job_id=job_id, job_type=job_type, action=action, callback_url=callback_url,
        recipients=tuple(_recipient(i, item) for i, item in enumerate(items)),
        tenant_id=payload.get("tenant_id"), batch=batch if isinstance(batch, int) else None,
        template_id=_text(payload, "template_id"), template_data=dict(template_data),
        certificate_template=_text(payload, "certificate_template"), presigned_url_ttl=ttl,
        certificate_verify_url=_text(payload, "certificate_verify_url"), handoff_round=_round(payload),
    )
