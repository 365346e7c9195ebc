"""The settings catalogue: every setting a company or the installation can override, its type,
default and scope, how text from a person parses into its value, and how a value may be shown.

A value resolves as: the company's override -> the global override in the database
(`mani settings set`) -> the settings object (MANI_* environment, mani.toml) -> the default
(`backend.companies.resolution`). Writes are `backend.companies.store`.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from backend.core.errors import UnusableInput
from backend.core.secrets import MASK, mask, mask_url
from backend.mail.mime import MessageError, split_sender
from backend.mail.providers.base import ProviderError
from backend.mail.providers.smtp import SmtpProvider


@dataclass(frozen=True, slots=True)
class SettingSpec:
    key: str
    kind: str  # bool | int | float | choice | text | sender | url | smtp_url | database_url | table_prefix | domain | region | bucket | seconds_list
    default: Any
    scope: str  # global | company | both
    description: str
    secret: bool = False
    choices: tuple[str, ...] = ()
    company_choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    # The field of backend.core.settings.Settings that supplies the value below the database.
    settings_attr: str | None = None

    def choices_for(self, scope: str) -> tuple[str, ...]:
        return self.company_choices if scope == "company" and self.company_choices else self.choices


def _spec(key: str, kind: str, default: Any, scope: str, description: str, **options: Any) -> SettingSpec:
    return SettingSpec(key, kind, default, scope, description, **options)


_SPECS = [
    _spec("cloud_offload_enabled", "bool", True, "global", "Master switch: no job takes the cloud path when off."),
    _spec("cloud_mode", "choice", "workers", "both",
          "Who does cloud work: mani's workers, or the company's own AWS worker through its SQS queue or API Gateway.",
          choices=("workers", "sqs", "api_gateway"), settings_attr="cloud_mode"),
    _spec("email_provider", "choice", "outbox", "both",
          "Global: the system provider. Company: its cloud provider (system = inherit the global one).",
          choices=("outbox", "smtp", "ses", "mailgun", "sendgrid"),
          company_choices=("ses", "mailgun", "sendgrid", "smtp", "system"), settings_attr="email_provider"),
    _spec("job_batch_size", "int", 200, "global", "Recipients per batch.", minimum=1, maximum=5000, settings_attr="batch_size"),
    _spec("cloud_callback_secret", "text", None, "both",
          "HMAC key of the cloud worker's callbacks to mani and of handoffs (the stack's CallbackSecret); "
          "never the key of mani's callbacks to Moodle (callback_secret).", secret=True,
          settings_attr="cloud_callback_secret"),
    _spec("public_url", "url", None, "global",
          "mani's public base URL (https://mani.example.com): the cloud worker reports to {public_url}/api/v1/callbacks.",
          settings_attr="public_url"),
    _spec("cloud_stuck_after", "int", 3600, "global",
          "Seconds a handed-off batch may go without a report from the cloud worker before it is flagged stuck.",
          minimum=60, maximum=7 * 86400, settings_attr="cloud_stuck_after"),
    _spec("presigned_url_ttl", "int", 604800, "global", "Seconds a presigned certificate URL stays valid (S3 allows 7 days).",
          minimum=1, maximum=604800),
    _spec("certificate_generation_mode", "choice", "cloud_if_enabled", "global", "Where certificates are stored.",
          choices=("cloud", "local", "cloud_if_enabled")),
    _spec("cloud_retry_policy", "seconds_list", [5, 30, 120], "global", "Seconds before retry 1, 2, 3... (JSON list).",
          settings_attr="retry_schedule"),
    _spec("cloud_fallback_behavior", "choice", "queue_local", "global", "When the cloud path is unavailable: send locally, or fail the job.",
          choices=("queue_local", "fail")),
    _spec("enabled", "bool", False, "company", "Cloud offload is active for this company."),
    _spec("threshold", "int", 1000, "both", "Fewest recipients for `auto` jobs to take the cloud path.", minimum=0, maximum=10_000_000),
    _spec("sender", "sender", None, "both", "From address (`addr` or `Name <addr>`).", settings_attr="sender"),
    _spec("sender_name", "text", None, "both", "From display name."),
    _spec("aws_region", "region", None, "both", "AWS region of SES/S3/SQS (`auto` for R2)."),
    _spec("aws_access_key_id", "text", None, "both", "AWS (or R2) access key id; unset = the host's IAM role."),
    _spec("aws_secret_access_key", "text", None, "both", "AWS (or R2) secret access key.", secret=True),
    _spec("sqs_queue_url", "url", None, "both", "The company's SQS queue (cloud_mode sqs)."),
    _spec("cloud_endpoint", "url", None, "both", "The stack's IngestUrl (cloud_mode api_gateway): mani POSTs each batch there."),
    _spec("cloud_auth_token", "text", None, "both", "Bearer token of cloud_endpoint (the stack's ingest token).", secret=True),
    _spec("mailgun_domain", "domain", None, "both", "Mailgun sending domain."),
    _spec("mailgun_api_key", "text", None, "both", "Mailgun API key.", secret=True),
    _spec("sendgrid_api_key", "text", None, "both", "SendGrid API key (mail.send scope).", secret=True),
    _spec("smtp_url", "smtp_url", None, "both", "smtp://user:pass@host:port, smtps://..., ?starttls=true.", secret=True,
          settings_attr="smtp_url"),
    _spec("storage", "choice", "local", "both", "Where certificates and attachments are stored.", choices=("s3", "r2", "local"),
          settings_attr="storage_backend"),
    _spec("bucket", "bucket", None, "both", "S3/R2 bucket name."),
    _spec("rate_limit", "float", 0.0, "both", "Messages per second across all workers (0 = no limit).", minimum=0, maximum=100_000),
    _spec("callback_url", "url", None, "company", "Moodle's status callback URL."),
    _spec("callback_secret", "text", None, "both",
          "HMAC key mani signs its callbacks to Moodle with (global: for jobs of no company's own key).", secret=True),
    _spec("mailgun_webhook_signing_key", "text", None, "both",
          "Mailgun's HTTP webhook signing key: checks /webhooks/mailgun/<company id> (global: /webhooks/mailgun).",
          secret=True),
    _spec("sns_topic_arns", "text", None, "both",
          "SNS topic ARNs (comma-separated) whose SES events /webhooks/ses/<company id> accepts; others are refused."),
    _spec("ses_endpoint_url", "url", None, "both", "SES API base URL (default: AWS for aws_region)."),
    _spec("s3_endpoint_url", "url", None, "both", "S3 API base URL: R2 (https://<account>.r2.cloudflarestorage.com) or another S3-compatible store."),
    _spec("mailgun_api_url", "url", None, "both", "Mailgun API base URL (EU: https://api.eu.mailgun.net)."),
    _spec("sendgrid_api_url", "url", None, "both", "SendGrid API base URL."),
    _spec("moodle_database_url", "database_url", None, "both",
          "The Moodle database, read-only: mysql+pymysql://user:pass@host/moodle or postgresql+psycopg://...",
          secret=True, settings_attr="moodle_database_url"),
    _spec("moodle_table_prefix", "table_prefix", "mdl_", "both", "The Moodle tables' prefix.",
          settings_attr="moodle_table_prefix"),
    _spec("moodle_site_url", "url", None, "both", "The Moodle site's address, for course links (https://moodle.example.org).",
          settings_attr="moodle_site_url"),
    _spec("moodle_company_id", "int", None, "company", "This company's IOMAD company id (mdl_company.id).",
          minimum=1, maximum=2**31 - 1),
]
GLOBAL_CATALOGUE: dict[str, SettingSpec] = {s.key: s for s in _SPECS if s.scope in ("global", "both")}
COMPANY_CATALOGUE: dict[str, SettingSpec] = {s.key: s for s in _SPECS if s.scope in ("company", "both")}
SETTINGS_CATALOGUE: dict[str, dict[str, SettingSpec]] = {"global": GLOBAL_CATALOGUE, "company": COMPANY_CATALOGUE}
ALL_SETTINGS: dict[str, SettingSpec] = {s.key: s for s in _SPECS}

_TRUE, _FALSE = {"1", "true", "yes", "on", "y"}, {"0", "false", "no", "off", "n"}
_DOMAIN = re.compile(r"(?=.{1,253}\Z)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}\Z|localhost\Z")
_REGION = re.compile(r"[a-z]{2}(-gov)?-[a-z]+-\d{1,2}\Z|auto\Z")
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\Z")
_TABLE_PREFIX = re.compile(r"[a-z0-9_]{0,40}\Z")
# The drivers the Moodle reader uses (backend.moodle.source.connection checks the same, deeper).
_MOODLE_DATABASES = {"mysql", "mariadb", "mysql+pymysql", "mariadb+pymysql", "postgresql", "postgres",
                     "postgresql+psycopg", "postgres+psycopg"}
_PATTERNS = {
    "domain": (_DOMAIN, "must be a domain name like mg.example.com"),
    "region": (_REGION, "must be an AWS region like eu-west-1 (or auto for R2)"),
    "bucket": (_BUCKET, "must be 3-63 lowercase letters, digits, dots or hyphens"),
    "table_prefix": (_TABLE_PREFIX, "must be lowercase letters, digits and underscores, like mdl_"),
}


def parse_value(spec: SettingSpec, raw: Any, *, scope: str = "company") -> Any:
    """The typed value of `raw` (text from the CLI, or a typed value); None clears. ValueError says why."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    text = raw.strip() if isinstance(raw, str) else raw
    kind = spec.kind
    if kind == "bool":
        if isinstance(text, bool):
            return text
        if str(text).lower() in _TRUE | _FALSE:
            return str(text).lower() in _TRUE
        raise ValueError("must be true or false")
    if kind in ("int", "float"):
        try:
            if isinstance(text, bool):
                raise ValueError
            number = int(str(text).replace("_", "")) if kind == "int" else float(text)
        except ValueError:
            raise ValueError(f"must be {'a whole number' if kind == 'int' else 'a number'}") from None
        if not math.isfinite(number) or (spec.minimum is not None and number < spec.minimum) or (
            spec.maximum is not None and number > spec.maximum
        ):
            raise ValueError(f"must be between {spec.minimum:g} and {spec.maximum:g}")
        return number
    if kind == "seconds_list":
        return _seconds_list(text)
    text = str(text)
    if any(ord(ch) < 32 for ch in text):
        raise ValueError("must not hold control characters or line breaks")
    if kind == "choice":
        choices = spec.choices_for(scope)
        if text.lower() not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return text.lower()
    if kind == "text":
        if len(text) > (4096 if spec.secret else 255):
            raise ValueError("is too long")
        return text
    if kind == "sender":
        try:
            split_sender(text)
        except MessageError as error:
            raise ValueError(f"is not a usable address ({error})") from None
        return text
    if kind == "url":
        parts = urlsplit(text)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        return text.rstrip("/")
    if kind == "smtp_url":
        try:
            SmtpProvider.from_url(text, sender="check@example.com")
        except ProviderError as error:
            raise ValueError(str(error).rstrip(".")) from None
        return text
    if kind == "database_url":
        return _database_url(text)
    if kind in _PATTERNS:
        pattern, why = _PATTERNS[kind]
        if not pattern.match(text.lower() if kind == "domain" else text) or ".." in text:
            raise ValueError(why)
        return text.lower() if kind == "domain" else text
    raise ValueError(f"has an unknown kind {kind}")  # pragma: no cover - a catalogue bug


def _database_url(text: str) -> str:
    """A Moodle database URL: MariaDB/MySQL or PostgreSQL, with a host and a database name."""
    try:
        url = make_url(text)
    except (ArgumentError, ValueError):
        raise ValueError("is not a database URL (mysql+pymysql://user:pass@host/moodle)") from None
    if url.drivername not in _MOODLE_DATABASES:
        raise ValueError("must be a mysql+pymysql:// (MariaDB, MySQL) or postgresql+psycopg:// URL")
    if not url.database:
        raise ValueError("names no database (.../moodle at its end)")
    return text


def _seconds_list(raw: Any) -> list[int]:
    if isinstance(raw, str):
        try:
            raw = json.loads(raw) if raw.startswith("[") else [part for part in raw.replace(";", ",").split(",")]
        except json.JSONDecodeError:
            raise ValueError("must be a JSON list of seconds, like [5, 30, 120]") from None
    try:
        values = [int(str(item).strip()) for item in raw]
    except (TypeError, ValueError):
        raise ValueError("must be a JSON list of seconds, like [5, 30, 120]") from None
    if not values or len(values) > 20 or any(v < 0 or v > 7 * 86400 for v in values):
        raise ValueError("must list 1 to 20 delays, each 0 to 604800 seconds")
    return values


def parse_assignments(items: list[str]) -> dict[str, str]:
    """`["KEY=VALUE", ...]` as a dict; an empty VALUE clears the override."""
    values: dict[str, str] = {}
    for item in items:
        key, equals, value = item.partition("=")
        if not equals or not key.strip():
            raise UnusableInput(f"{item!r} is not KEY=VALUE (write KEY= to clear an override).")
        values[key.strip().lower()] = value
    return values


# A stored secret that does not decrypt under the configured key(s).
UNREADABLE = object()


def shown(spec: SettingSpec | None, value: Any) -> Any:
    """How a value may be shown: secrets masked (an SMTP URL keeps all but its password)."""
    if spec is None or not spec.secret or value is None:
        return value
    if value is UNREADABLE:
        return MASK + " (cannot decrypt)"
    return mask_url(value) if spec.kind in ("smtp_url", "database_url") else mask(value)
