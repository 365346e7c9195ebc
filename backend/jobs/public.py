"""What the front ends show: typed, frozen models, one shape per thing everywhere.

`backend.jobs.queries` returns these (never ORM objects), so a console worker can hand them to
the UI thread after its session closed. The CLI's `--json` and the HTTP API serialise them with
`model_dump(mode="json")`, so a job has the same keys in `mani jobs show --json`, in
`GET /api/v1/jobs/{job_id}` and in the console. Datetimes are ISO 8601 with their UTC offset.
In the manner of full-stack-fastapi-template's `*Public` models.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, PlainSerializer, computed_field

from models import BatchStatus, DeliveryStatus, JobStatus, RecipientStatus

# "2026-11-22T09:30:00+00:00": an explicit offset, as `datetime.isoformat` writes it.
Timestamp = Annotated[AwareDatetime, PlainSerializer(datetime.isoformat, return_type=str, when_used="json")]


class Public(BaseModel):
    model_config = ConfigDict(frozen=True)


class JobPublic(Public):
    """A job as a list row: `mani jobs list --json`, the console's history and dashboard."""

    id: int  # the job's number
    job_id: str  # its uuid: Job JSON's `job_id`, callbacks, the API
    type: str
    action: str
    status: JobStatus
    company_id: str | None
    total: int
    sent: int
    failed: int
    created_at: Timestamp
    started_at: Timestamp | None
    finished_at: Timestamp | None
    last_progress_at: Timestamp | None
    source_name: str | None
    created_by: str | None

    @property
    def done(self) -> int:
        return self.sent + self.failed


class ActiveJobPublic(JobPublic):
    """An active job on the dashboard, with its rates and what is wrong with it."""

    rate_per_minute: float | None  # since the job started
    recent_per_minute: float  # over the last minute
    problems: list[str]  # in words, for the banner
    flags: list[str]  # the same, in a few characters, for a table


class BatchPublic(Public):
    id: int
    number: int
    status: BatchStatus
    size: int
    sent: int
    failed: int
    attempts: int
    error: str | None
    started_at: Timestamp | None
    finished_at: Timestamp | None


class HandoffBatchPublic(Public):
    """One batch handed to the company's own cloud worker (cloud_mode sqs or api_gateway)."""

    number: int
    status: BatchStatus
    size: int
    handed_off_at: Timestamp
    reported_at: Timestamp | None  # the worker's last callback on it
    message_ids: list[str]  # what SQS (or the intake) answered
    claim_check: bool  # too big for a message: the payload went to the company's bucket
    stuck: bool  # still open, and no report for `stuck_after` seconds


class HandoffPublic(Public):
    """A job's handoff: its batches at the worker, and which of them look stuck."""

    mode: str  # sqs | api_gateway
    stuck_after: int  # seconds (the `cloud_stuck_after` setting)
    handed_off: int
    open: int  # handed off and not settled by the worker's reports yet
    stuck: int
    batches: list[HandoffBatchPublic]


class DeliveryRatesPublic(Public):
    """Bounces and complaints over messages that reached the provider (aim: bounces under 2 %)."""

    delivered: int
    bounced: int
    complained: int

    @computed_field
    @property
    def bounce_rate(self) -> float | None:
        return self.bounced / self.delivered if self.delivered else None

    @computed_field
    @property
    def complaint_rate(self) -> float | None:
        return self.complained / self.delivered if self.delivered else None


class CallbackStatsPublic(Public):
    """A job's callbacks to Moodle by outcome (aim: over 99 % delivered)."""

    total: int
    delivered: int
    pending: int
    failed: int

    @computed_field
    @property
    def delivered_share(self) -> float | None:
        return self.delivered / self.total if self.total else None


class ProviderOutagePublic(Public):
    """A route whose provider is down for everyone (an open circuit): "provider down since ..."."""

    company_id: str | None
    provider: str
    route: str  # the circuit's key: company/route/provider
    down_since: Timestamp
    retry_at: Timestamp  # when a batch tries it again
    failures: int  # failed tries in a row (the wait doubles with each, up to 5 min)
    error: str | None

    def describe(self) -> str:
        who = f" (company {self.company_id})" if self.company_id else ""
        return f"provider {self.provider}{who} down since {self.down_since:%Y-%m-%d %H:%M:%S} UTC: {self.error or 'unreachable'}"


class JobDetailPublic(JobPublic):
    """One job in full: `mani jobs show --json`, `GET /api/v1/jobs/{job_id}`, the console's job detail."""

    company_name: str | None
    route: str | None
    provider: str | None
    route_reason: str | None
    callback_url: str | None
    source: str
    error: str | None
    skipped_duplicates: int
    rejected: int  # rows the CSV or Job JSON rejected (`mani jobs rejections` lists them)
    bounced: int
    complained: int
    counts: dict[str, int]  # recipient status -> how many
    retryable: int  # what "retry all failed" would send again
    cancellable: int  # what a cancel would end `cancelled` (the same count the cancel reports)
    waiting: int  # recipients not yet sent: what pause holds back and resume sends
    batches: list[BatchPublic]
    handoff: HandoffPublic | None = None  # None unless batches went to the company's own cloud worker
    rates: DeliveryRatesPublic
    callbacks: CallbackStatsPublic
    updated_at: Timestamp
    # Set while the job's provider is down for everyone: its batches wait, no attempt is counted.
    provider_down_since: Timestamp | None = None
    provider_error: str | None = None


class RecipientPublic(Public):
    """One recipient: `mani jobs recipients --json`, the console's recipient pages."""

    id: int
    line: int | None
    userid: str | None
    email: str
    firstname: str | None
    lastname: str | None
    status: RecipientStatus
    attempts: int
    error: str | None
    sent_at: Timestamp | None
    external_id: str | None
    certificate_url: str | None
    certificate_code: str | None
    batch_id: int | None

    @property
    def name(self) -> str:
        return " ".join(part for part in (self.firstname, self.lastname) if part)


class RecipientPagePublic(Public):
    rows: list[RecipientPublic]
    total: int  # rows matching the filter
    start: int  # 0-based position of rows[0] among them
    has_previous: bool
    has_next: bool


class RejectionPublic(Public):
    """A row that did not become a recipient, with its line and why."""

    line: int
    email: str | None
    reason: str


class CallbackDeliveryPublic(Public):
    """One callback delivery to Moodle (`updates`: the recipients it reports on)."""

    id: int
    job_id: int  # the job's number
    job_uuid: str
    kind: str  # batch, final or updates
    batch_id: int | None
    batch_number: int | None
    updates: int
    url: str
    status: DeliveryStatus
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: Timestamp | None
    created_at: Timestamp
    delivered_at: Timestamp | None
    updated_at: Timestamp


class CallbackAttemptPublic(Public):
    number: int
    started_at: Timestamp
    status_code: int | None
    error: str | None
    duration_ms: int
    update_count: int
    response_excerpt: str | None
    body_timestamp: int | None


class AuditEntryPublic(Public):
    id: int
    at: Timestamp
    actor: str
    source: str
    action: str
    target: str | None
    address: str | None
    details: dict


class SuppressionPublic(Public):
    """An address on a company's suppression list: `mani suppressions list --json`, the console."""

    id: int
    company_id: str | None  # None: the list of jobs without a company
    email: str
    source: str  # bounce, complaint, admin, import
    reason: str
    job_id: int | None
    created_by: str | None
    created_at: Timestamp


class DashboardPublic(Public):
    """The console's live view: counters, and the active jobs with their progress and problems."""

    now: Timestamp
    active_jobs: int
    queued_jobs: int
    queued_recipients: int
    processing_jobs: int
    sent_last_hour: int
    failed_recent: int
    rate_last_minute: float
    rate_since_start: float | None
    jobs: list[ActiveJobPublic]
    problems: list[str]
    outages: list[ProviderOutagePublic] = []


class ActionResultPublic(Public):
    """What an admin action did to a job: `mani jobs retry|pause|resume|cancel --json`, the console."""

    id: int  # the job's number
    job_id: str  # its uuid
    action: str  # retry, pause, resume or cancel
    status: JobStatus  # the job's status afterwards
    changed: int  # recipients whose status the action changed (none for pause and resume)
    recipients: int  # the recipients it concerns: retried, cancelled, or (pause, resume) not yet sent
    retried: int | None = None
    cancelled: int | None = None
    enqueued: bool | None = None  # set by the front end once it has handed the follow-ups over


class PreviewRowPublic(Public):
    """A row of a preview shown by its line: a duplicate, a suppressed address, a row without username."""

    line: int
    email: str | None


class PreviewMessagePublic(Public):
    to: str | None
    subject: str
    text: str
    html: str


class PreviewPublic(Public):
    """What a CSV (or a Moodle selection) would become, with nothing written: `mani submit
    --dry-run --json` and the console's bulk preview. The counts are complete; the row lists
    hold the first 1,000 of each kind."""

    type: str
    columns: list[str]
    rows_read: int
    accepted: int
    skipped_duplicates: int
    rejected_count: int
    rejected: list[RejectionPublic]
    duplicates: list[PreviewRowPublic]
    suppressed_count: int  # on the company's suppression list: stored `suppressed`, never sent
    suppressed: list[PreviewRowPublic]
    without_username_count: int  # their mail says to log in with the email address
    without_username: list[PreviewRowPublic]
    first_message: PreviewMessagePublic | None
