"""Creating jobs: rows in, a job with its batches and recipients out, in one transaction.

Rows stream through in chunks: each chunk costs one duplicate look-up and one bulk insert per
batch, never a round trip per recipient, and the whole job is never held in memory.
"""

from __future__ import annotations

import uuid as uuid_module
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from sqlalchemy import insert, or_, select
from sqlmodel import Session

from backend.companies.resolution import resolve
from backend.companies.suppressions import suppressed_among
from backend.core.errors import UnusableInput
from backend.core.field_cipher import field_cipher
from backend.core.followups import Followups
from backend.core.settings import JOB_TYPES, Settings, get_settings
from backend.jobs.intake import RecipientRow, RejectedRow, open_csv
from backend.mail import templates
from backend.mail.providers import get_provider
from backend.mail.providers.base import ProviderError
from models import Batch, Company, Job, JobStatus, Recipient, RecipientStatus, Rejection, utcnow

# Rows are checked for cross-job duplicates this many at a time (one query per chunk).
DUPLICATE_CHUNK = 1000
ACTIONS = ("email", "certificate", "both")
CLOUD_PREFERENCES = ("auto", "force_cloud", "force_local")


@dataclass(slots=True)
class JobCreated:
    job: Job
    rows_read: int
    accepted: int
    skipped_duplicates: int
    rejected: list[RejectedRow]
    counts: dict[str, int] = field(default_factory=dict)
    # Rows on the company's suppression list: stored `suppressed`, never sent.
    suppressed: int = 0

    @property
    def followups(self) -> Followups:
        """The job's dispatch, once committed; nothing when every row was a recent duplicate."""
        return Followups(dispatch_job_ids=[self.job.id]) if self.accepted else Followups()


def _encryptor(settings: Settings):
    """Temporary passwords are encrypted at rest; the embedded default makes its own key."""
    return field_cipher(settings=settings, create=settings.is_embedded_database).encrypt


def validate_job_options(
    *,
    session: Session,
    job_type: str,
    company_id: str | None,
    action: str,
    cloud_preference: str,
    available_variables: Iterable[str],
    template_data: dict,
    settings: Settings,
) -> None:
    """Everything that can be checked before a single row is written."""
    if job_type not in JOB_TYPES:
        raise UnusableInput(f"unknown job type {job_type!r}: use one of {', '.join(JOB_TYPES)}")
    if action not in ACTIONS:
        raise UnusableInput(f"unknown action {action!r}: use one of {', '.join(ACTIONS)}")
    if cloud_preference not in CLOUD_PREFERENCES:
        raise UnusableInput(
            f"unknown cloud preference {cloud_preference!r}: use one of {', '.join(CLOUD_PREFERENCES)}"
        )
    if company_id is not None and session.get(Company, company_id) is None:
        raise UnusableInput(f"company {company_id!r} does not exist: add it with `mani companies add {company_id}`")
    available = set(available_variables) | set(template_data)
    if job_type == "certificate" and action == "email":
        action = "both"
    if action in ("certificate", "both"):
        # Deferred: the certificate service loads fpdf2, which a mail-only job never needs.
        from backend.certificates.service import check_job_inputs

        check_job_inputs(job_type=job_type, action=action, available_fields=available, template_data=template_data)
        # The certificate step provides these to the mail template.
        available |= {"certificate_url", "certificate_code", "certificate_verify_url"}
    if action != "certificate":
        templates.check_variables(job_type, available, settings=settings)
        _check_local_provider(settings=settings)


def _check_local_provider(*, settings: Settings) -> None:
    """The local path must be usable: a job that cannot send should not be stored."""
    try:
        get_provider(settings.email_provider, settings=settings)
    except ProviderError as error:
        raise UnusableInput(f"the email provider {settings.email_provider!r} cannot be used: {error}") from None


def job_batch_size(*, session: Session, company_id: str | None, settings: Settings) -> int:
    """The company's `job_batch_size`, else the global one."""
    value = resolve(session=session, company_id=company_id).get("job_batch_size")
    return int(value or settings.batch_size)


def recent_duplicates(
    *, session: Session, job_type: str, company_id: str | None, emails: list[str], since, exclude_job_id: int
) -> set[str]:
    """The addresses among `emails` sent (or on their way) the same type for the same company recently."""
    if not emails:
        return set()
    recipient, job = Recipient.__table__.c, Job.__table__.c
    company_match = job.company_id.is_(None) if company_id is None else job.company_id == company_id
    recent_sent = (recipient.status == RecipientStatus.SENT) & (recipient.sent_at >= since)
    in_flight = recipient.status.in_(
        [RecipientStatus.PENDING, RecipientStatus.PROCESSING, RecipientStatus.RETRY_PENDING]
    ) & (job.created_at >= since)
    query = (
        select(recipient.email_norm)
        .select_from(Recipient.__table__.join(Job.__table__, job.id == recipient.job_id))
        .where(
            recipient.email_norm.in_(emails),
            job.type == job_type,
            company_match,
            job.id != exclude_job_id,
            or_(recent_sent, in_flight),
        )
        .distinct()
    )
    return set(session.execute(query).scalars())


def in_chunks(rows: Iterable[RecipientRow | RejectedRow], size: int) -> Iterator[list[RecipientRow | RejectedRow]]:
    chunk: list[RecipientRow | RejectedRow] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class _JobWriter:
    """Writes one job's batches, recipients and rejections as rows arrive."""

    def __init__(self, *, session: Session, job: Job, settings: Settings, batch_size: int) -> None:
        self.session = session
        self.job = job
        self.settings = settings
        self.batch_size = batch_size
        self.pending: list[dict] = []
        self.batch_number = 0
        self.accepted = 0
        self.skipped = 0
        self.suppressed = 0
        self.rejected: list[RejectedRow] = []
        self._encrypt = None
        self.now = utcnow()

    def _recipient_values(self, row: RecipientRow, status: str, batch_id: int | None) -> dict:
        secret = None
        if row.password and status == RecipientStatus.PENDING:
            if self._encrypt is None:
                self._encrypt = _encryptor(self.settings)
            secret = self._encrypt(row.password)
        return {
            "job_id": self.job.id,
            "batch_id": batch_id,
            "line": row.line,
            "userid": row.userid,
            "email": row.email,
            "email_norm": row.email_norm,
            "firstname": row.firstname,
            "lastname": row.lastname,
            "username": row.username,
            "secret": secret,
            "variables": row.variables,
            "status": status,
            "attempts": 0,
        }

    def add_chunk(self, chunk: list[RecipientRow | RejectedRow], duplicates: set[str],
                  suppressed: dict[str, str] | None = None) -> None:
        skipped_rows = []
        suppressed = suppressed or {}
        suppressed_values = []
        for row in chunk:
            if isinstance(row, RejectedRow):
                self.rejected.append(row)
            elif row.email_norm in suppressed:
                value = self._recipient_values(row, RecipientStatus.SUPPRESSED, None)
                value["last_error"] = f"suppressed: {suppressed[row.email_norm]}"[:2000]
                suppressed_values.append(value)
            elif row.email_norm in duplicates:
                skipped_rows.append(row)
            else:
                self.pending.append(row)
        if skipped_rows:
            self.skipped += len(skipped_rows)
            values = [self._recipient_values(row, RecipientStatus.SKIPPED, None) for row in skipped_rows]
            for value in values:
                value["last_error"] = "skipped: sent the same type within the duplicate window"
            self.session.execute(insert(Recipient.__table__), values)
        if suppressed_values:
            self.suppressed += len(suppressed_values)
            self.session.execute(insert(Recipient.__table__), suppressed_values)
        while len(self.pending) >= self.batch_size:
            self._write_batch(self.pending[: self.batch_size])
            del self.pending[: self.batch_size]

    def _write_batch(self, rows: list[RecipientRow]) -> None:
        self.batch_number += 1
        batch_id = self.session.execute(
            insert(Batch.__table__)
            .values(job_id=self.job.id, number=self.batch_number, size=len(rows), status="queued",
                    attempts=0, recoveries=0, sent_count=0, failed_count=0, created_at=self.now)
            .returning(Batch.__table__.c.id)
        ).scalar_one()
        values = [self._recipient_values(row, RecipientStatus.PENDING, batch_id) for row in rows]
        self.session.execute(insert(Recipient.__table__), values)
        self.accepted += len(rows)

    def finish(self) -> None:
        if self.pending:
            self._write_batch(self.pending)
            self.pending = []
        if self.rejected:
            self.session.execute(
                insert(Rejection.__table__),
                [{"job_id": self.job.id, "line": r.line, "email": (r.email or "")[:1024] or None, "reason": r.reason}
                 for r in self.rejected],
            )


def create_job(
    *,
    session: Session,
    job_type: str,
    rows: Iterable[RecipientRow | RejectedRow],
    available_variables: Iterable[str],
    company_id: str | None = None,
    template_data: dict | None = None,
    source: str = "csv",
    source_name: str | None = None,
    allow_duplicates: bool = False,
    callback_url: str | None = None,
    cloud_preference: str = "auto",
    action: str = "email",
    job_uuid: str | None = None,
    template_id: str | None = None,
    created_by: str | None = None,
    settings: Settings | None = None,
) -> JobCreated:
    """Write a job, its batches, recipients and rejections into the caller's transaction.

    Raises UnusableInput, before or after writing, when nothing could be sent: the caller's
    rollback then leaves no trace. The caller commits, then enqueues `JobCreated.followups`.
    """
    settings = settings or get_settings()
    template_data = dict(template_data or {})
    if job_type == "certificate" and action == "email":
        action = "both"
    validate_job_options(
        session=session, job_type=job_type, company_id=company_id, action=action,
        cloud_preference=cloud_preference, available_variables=available_variables,
        template_data=template_data, settings=settings,
    )
    batch_size = job_batch_size(session=session, company_id=company_id, settings=settings)
    job = Job(
        uuid=job_uuid or str(uuid_module.uuid4()),
        type=job_type,
        action=action,
        company_id=company_id,
        status=JobStatus.PENDING,
        source=source,
        source_name=source_name,
        template_id=template_id,
        template_data=template_data,
        cloud_preference=cloud_preference,
        callback_url=callback_url,
        allow_duplicates=allow_duplicates,
        created_by=created_by,
    )
    session.add(job)
    session.flush()

    writer = _JobWriter(session=session, job=job, settings=settings, batch_size=batch_size)
    since = utcnow() - timedelta(hours=settings.duplicate_window_hours)
    rows_read = 0
    for chunk in in_chunks(rows, DUPLICATE_CHUNK):
        rows_read += len(chunk)
        duplicates: set[str] = set()
        if not allow_duplicates:
            emails = [row.email_norm for row in chunk if isinstance(row, RecipientRow)]
            duplicates = recent_duplicates(
                session=session, job_type=job_type, company_id=company_id, emails=emails, since=since,
                exclude_job_id=job.id,
            )
        # The suppression list, like the duplicate look-up, costs one query per chunk.
        suppressed = suppressed_among(
            session=session, company_id=company_id,
            emails=[row.email_norm for row in chunk if isinstance(row, RecipientRow)],
        )
        writer.add_chunk(chunk, duplicates, suppressed)
    writer.finish()

    if writer.accepted == 0 and writer.skipped == 0 and writer.suppressed == 0:
        first = "; ".join(f"line {r.line}: {r.reason}" for r in writer.rejected[:3])
        detail = f" ({first})" if first else ""
        raise UnusableInput(f"no valid rows: {len(writer.rejected)} of {rows_read} rows were rejected{detail}")

    job.total = writer.accepted
    job.skipped_duplicates = writer.skipped
    job.rejected_count = len(writer.rejected)
    job.batch_count = writer.batch_number
    if writer.accepted == 0:
        # Every row was a recent duplicate or suppressed: nothing to send, and that is a finished job.
        job.status = JobStatus.COMPLETED
        job.finished_at = utcnow()
    session.add(job)
    session.flush()
    counts = {}
    if writer.accepted:
        counts[RecipientStatus.PENDING.value] = writer.accepted
    if writer.skipped:
        counts[RecipientStatus.SKIPPED.value] = writer.skipped
    if writer.suppressed:
        counts[RecipientStatus.SUPPRESSED.value] = writer.suppressed
    return JobCreated(
        job=job,
        rows_read=rows_read,
        accepted=writer.accepted,
        skipped_duplicates=writer.skipped,
        rejected=writer.rejected,
        counts=counts,
        suppressed=writer.suppressed,
    )


def submit_csv(
    *,
    session: Session,
    path: str | Path,
    job_type: str,
    settings: Settings | None = None,
    **options,
) -> JobCreated:
    """Read a CSV and create its job (see `create_job` for the options)."""
    settings = settings or get_settings()
    source = open_csv(path, max_field_length=settings.max_field_length, max_bytes=settings.max_csv_bytes)
    return create_job(
        session=session,
        job_type=job_type,
        rows=source,
        available_variables=set(source.columns) | {"fullname"},
        source="csv",
        source_name=str(path),
        settings=settings,
        **options,
    )
