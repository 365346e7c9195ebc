"""The seeds' Job JSON: checked field by field, all or nothing, before anything is written.

Raises domain errors (`MalformedInput` for a body that is not a JSON object, `InvalidFields`
naming every bad field); the HTTP API answers them with 400 and 422.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field

from backend.core import contract
from backend.core.contract import SafeStr, Scalar, ShortStr, WholeNumber
from backend.core.errors import InvalidFields
from backend.core.json_body import json_object
from backend.jobs.intake import RecipientRow, RejectedRow, validate_record

# The seeds' type names (and mani's own), as (job type, action). Matched case-insensitively.
JOB_TYPES: dict[str, tuple[str, str | None]] = {
    "welcome_std": ("welcome_std", None),
    "welcome_lic": ("welcome_lic", None),
    "reengagement": ("reengagement", None),
    "reminder": ("reminder", None),
    "certificate": ("certificate", "both"),
    "send_reminder": ("reminder", None),
    "email_welcome_std": ("welcome_std", None),
    "email_welcome_lic": ("welcome_lic", None),
    "email_reengagement": ("reengagement", None),
    "certificate_gen": ("certificate", "certificate"),
    "csv_import": ("welcome_std", None),
    "license_allocation": ("welcome_lic", None),
}
# The seeds' template_data names where mani's templates use another (both are kept).
TEMPLATE_DATA_ALIASES = {"completion_percentage": "completion_percent"}
MAX_REPORTED_ERRORS = 200
_FIELD_IN_REASON = re.compile(r"field '([^']*)'")


class RecipientIn(BaseModel):
    """One recipient; any further field (text or a number) is a template variable."""

    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, Scalar]
    userid: WholeNumber | ShortStr | None = None
    email: Annotated[SafeStr, Field(max_length=1000)]
    firstname: SafeStr | None = None
    lastname: SafeStr | None = None


class JobJsonIn(BaseModel):
    """The seeds' Job JSON (seed 000, "Job JSON Example"), as `POST /api/v1/jobs` takes it."""

    model_config = ConfigDict(extra="allow")
    job_id: ShortStr = Field(description="A UUID chosen by Moodle; posting it again answers with the same job.")
    tenant_id: WholeNumber | ShortStr = Field(description="The company id; must be the token's company.")
    type: ShortStr = Field(json_schema_extra={"enum": sorted(JOB_TYPES)},
                           description="The job type (case-insensitive).")
    recipients: list[RecipientIn] = Field(min_length=1, max_length=1_000_000)
    template_id: Annotated[SafeStr, Field(max_length=128)] | None = None
    template_data: dict[ShortStr, Scalar] | None = None
    generate_certificate: bool = False
    certificate_template: ShortStr | None = None
    callback_url: Annotated[SafeStr, Field(max_length=2048)] | None = Field(
        None, description="Where mani posts signed status callbacks (http or https, not mani itself).")
    timestamp: ShortStr | Annotated[float, Field(ge=0, le=4_102_444_800, allow_inf_nan=False)] | None = None
    allow_duplicates: bool = False
    created_by: WholeNumber | ShortStr | None = None
    courseid: WholeNumber | ShortStr | None = None
    course_id: WholeNumber | ShortStr | None = None


@dataclass(slots=True)
class JobRequest:
    job_uuid: str
    tenant_id: str
    job_type: str
    action: str
    rows: list[RecipientRow]
    fields: set[str]
    template_id: str | None = None
    template_data: dict = field(default_factory=dict)
    callback_url: str | None = None
    created_by: str | None = None
    allow_duplicates: bool = False
    timestamp: datetime | None = None


def parse_body(body: bytes) -> dict:
    """The JSON object of a request body; MalformedInput otherwise."""
    return json_object(body)


def parse_timestamp(value: Any) -> datetime:
    """ISO 8601 (a trailing Z is UTC) or unix seconds; ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError("not a time")
    if isinstance(value, (int, float)) or (isinstance(value, str) and re.fullmatch(r"\d+(\.\d+)?", value.strip())):
        return datetime.fromtimestamp(float(value), tz=timezone.utc)
    if isinstance(value, str):
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    raise ValueError("not a time")


def _text_id(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int) or (isinstance(value, str) and value.strip()):
        return str(value).strip()
    return None


def _recipient_field(reason: str) -> str:
    match = _FIELD_IN_REASON.search(reason)
    return match.group(1) if match else "email"


def parse_job_request(payload: Mapping[str, Any], *, max_field_length: int) -> JobRequest:
    """Check every field and every recipient; raises InvalidFields naming each bad one."""
    errors: list[dict] = []

    def bad(name: str, message: str) -> None:
        errors.append({"field": name, "message": message})

    job_uuid = None
    raw_id = payload.get("job_id")
    if raw_id is None:
        bad("job_id", "is required")
    else:
        try:
            job_uuid = str(uuid.UUID(str(raw_id)))
        except ValueError:
            bad("job_id", "must be a UUID")
    tenant_id = _text_id(payload.get("tenant_id"))
    if tenant_id is None:
        bad("tenant_id", "is required (the company id, a number or text)")
    elif len(tenant_id) > 64:
        bad("tenant_id", "is longer than 64 characters")
    job_type, action = None, "email"
    raw_type = payload.get("type")
    if not isinstance(raw_type, str) or not raw_type.strip():
        bad("type", "is required")
    elif raw_type.strip().lower() not in JOB_TYPES:
        bad("type", f"is not a known type: use one of {', '.join(sorted(JOB_TYPES))}")
    else:
        job_type, fixed_action = JOB_TYPES[raw_type.strip().lower()]
        generate = payload.get("generate_certificate", False)
        if not isinstance(generate, bool):
            bad("generate_certificate", "must be true or false")
        action = fixed_action or ("both" if generate is True else "email")
    template_id = payload.get("template_id")
    if template_id is not None and (not isinstance(template_id, str) or len(template_id) > 128):
        bad("template_id", "must be text of at most 128 characters")
    template_data = payload.get("template_data") or {}
    if not isinstance(template_data, dict):
        bad("template_data", "must be an object")
        template_data = {}
    template_data = dict(template_data)
    for seed_name, mani_name in TEMPLATE_DATA_ALIASES.items():
        if seed_name in template_data:
            template_data.setdefault(mani_name, template_data[seed_name])
    certificate_template = payload.get("certificate_template")
    if certificate_template is not None:
        if not isinstance(certificate_template, str):
            bad("certificate_template", "must be text")
        else:
            template_data.setdefault("certificate_template", certificate_template)
    for extra in ("courseid", "course_id"):
        if payload.get(extra) is not None:
            template_data.setdefault(extra, payload[extra])
    callback_url = payload.get("callback_url")
    if callback_url is not None:
        parts = urlsplit(callback_url) if isinstance(callback_url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or len(callback_url) > 2048:
            bad("callback_url", "must be an http:// or https:// URL of at most 2048 characters")
    timestamp = None
    if payload.get("timestamp") is not None:
        try:
            timestamp = parse_timestamp(payload["timestamp"])
        except (ValueError, OverflowError, OSError):
            bad("timestamp", "must be ISO 8601 (2025-11-18T12:00:00Z) or unix seconds")
    allow_duplicates = payload.get("allow_duplicates", False)
    if not isinstance(allow_duplicates, bool):
        bad("allow_duplicates", "must be true or false")

    rows, fields = _recipients(payload.get("recipients"), max_field_length=max_field_length, bad=bad)
    # The published model catches what the field checks above do not look at (the types of
    # template_data values, of recipients' extra fields, bounds); their own messages come first.
    named = {e["field"] for e in errors}
    errors.extend(e for e in contract.problems(JobJsonIn, dict(payload)) if e["field"] not in named)
    if errors:
        shown = errors[:MAX_REPORTED_ERRORS]
        more = len(errors) - len(shown)
        message = f"{len(errors)} field(s) are not valid" + (f"; the first {len(shown)} are listed" if more else "")
        raise InvalidFields(message + ". Nothing was created.", shown)
    created_by = _text_id(payload.get("created_by"))
    return JobRequest(job_uuid=job_uuid, tenant_id=tenant_id, job_type=job_type, action=action, rows=rows,
                      fields=fields, template_id=template_id, template_data=template_data,
                      callback_url=callback_url, created_by=created_by, allow_duplicates=allow_duplicates,
                      timestamp=timestamp)


def _recipients(value: Any, *, max_field_length: int, bad) -> tuple[list[RecipientRow], set[str]]:
    if value is None:
        bad("recipients", "is required")
        return [], set()
    if not isinstance(value, list) or not value:
        bad("recipients", "must be a non-empty list")
        return [], set()
    rows: list[RecipientRow] = []
    fields: set[str] = set()
    seen: dict[str, int] = {}
    for index, record in enumerate(value):
        if not isinstance(record, dict):
            bad(f"recipients[{index}]", "must be an object")
            continue
        # The line is the index, so intake's "duplicate of line N" names the other index.
        result = validate_record(record, line=index, max_field_length=max_field_length, seen=seen)
        if isinstance(result, RejectedRow):
            reason = re.sub(r"duplicate of line (\d+)", r"duplicate of recipients[\1]", result.reason)
            bad(f"recipients[{index}].{_recipient_field(result.reason)}", reason)
            continue
        rows.append(result)
        fields.update(str(k).strip().lower() for k in record)
    return rows, fields
