"""Previewing a CSV before sending: what would be accepted, rejected and skipped, and the first
message exactly as it would go out. Writes nothing."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from sqlmodel import Session

from backend.companies.suppressions import suppressed_among
from backend.core.settings import Settings, get_settings
from backend.jobs.create import DUPLICATE_CHUNK, in_chunks, recent_duplicates, validate_job_options
from backend.jobs.intake import RecipientRow, RejectedRow, open_csv
from backend.jobs.public import PreviewMessagePublic, PreviewPublic, PreviewRowPublic, RejectionPublic
from backend.mail.templates import RenderedMessage, render_recipient, template_variables
from models import utcnow

# Rejected and duplicate rows kept for display; the counts are always complete.
KEEP = 1000


@dataclass(slots=True)
class Preview:
    job_type: str
    columns: list[str]
    rows_read: int = 0
    accepted: int = 0
    skipped_duplicates: int = 0
    sample: list[RecipientRow] = field(default_factory=list)
    rejected: list[RejectedRow] = field(default_factory=list)
    rejected_count: int = 0
    duplicates: list[RecipientRow] = field(default_factory=list)
    message: RenderedMessage | None = None
    message_to: str | None = None
    # Accepted rows with no username, when the type's templates use one: their mail says to
    # log in with the email address instead (counted in full, the first KEEP kept).
    suppressed_count: int = 0
    suppressed: list[RecipientRow] = field(default_factory=list)
    without_username_count: int = 0
    without_username: list[RecipientRow] = field(default_factory=list)

    def public(self) -> PreviewPublic:
        """The one shape of a preview, for `mani submit --dry-run --json` and the console."""
        def rows(kept) -> list[PreviewRowPublic]:
            return [PreviewRowPublic(line=row.line, email=row.email) for row in kept]

        message = self.message
        return PreviewPublic(
            type=self.job_type, columns=self.columns, rows_read=self.rows_read, accepted=self.accepted,
            skipped_duplicates=self.skipped_duplicates, rejected_count=self.rejected_count,
            rejected=[RejectionPublic(line=row.line, email=row.email, reason=row.reason) for row in self.rejected],
            duplicates=rows(self.duplicates), suppressed_count=self.suppressed_count, suppressed=rows(self.suppressed),
            without_username_count=self.without_username_count, without_username=rows(self.without_username),
            first_message=None if message is None else PreviewMessagePublic(
                to=self.message_to, subject=message.subject, text=message.text, html=message.html),
        )


def preview_csv(
    *,
    session: Session,
    path: str | Path,
    job_type: str,
    company_id: str | None = None,
    template_data: dict | None = None,
    allow_duplicates: bool = False,
    action: str = "email",
    sample: int = 20,
    settings: Settings | None = None,
) -> Preview:
    """Read and check the whole file as `mani submit` would; raises UnusableInput the same way."""
    settings = settings or get_settings()
    source = open_csv(path, max_field_length=settings.max_field_length, max_bytes=settings.max_csv_bytes)
    return preview_rows(
        session=session, rows=source, columns=list(source.columns), available_variables=set(source.columns) | {"fullname"},
        job_type=job_type, company_id=company_id, template_data=template_data, allow_duplicates=allow_duplicates,
        action=action, sample=sample, settings=settings,
    )


def preview_rows(
    *,
    session: Session,
    rows: Iterable[RecipientRow | RejectedRow],
    columns: list[str],
    available_variables: Iterable[str],
    job_type: str,
    company_id: str | None = None,
    template_data: dict | None = None,
    allow_duplicates: bool = False,
    action: str = "email",
    sample: int = 20,
    settings: Settings | None = None,
) -> Preview:
    """The preview of any rows the job writer takes (a CSV's, a Moodle selection's), streamed."""
    settings = settings or get_settings()
    template_data = dict(template_data or {})
    validate_job_options(
        session=session, job_type=job_type, company_id=company_id, action=action, cloud_preference="auto",
        available_variables=available_variables, template_data=template_data, settings=settings,
    )
    preview = Preview(job_type=job_type, columns=list(columns))
    uses_username = action != "certificate" and "username" in template_variables(job_type, settings=settings)
    since = utcnow() - timedelta(hours=settings.duplicate_window_hours)
    for chunk in in_chunks(rows, DUPLICATE_CHUNK):
        preview.rows_read += len(chunk)
        recipients = [row for row in chunk if isinstance(row, RecipientRow)]
        duplicates = set() if allow_duplicates else recent_duplicates(
            session=session, job_type=job_type, company_id=company_id,
            emails=[row.email_norm for row in recipients], since=since, exclude_job_id=-1,
        )
        suppressed = suppressed_among(session=session, company_id=company_id,
                                      emails=[row.email_norm for row in recipients])
        for row in chunk:
            if isinstance(row, RejectedRow):
                preview.rejected_count += 1
                if len(preview.rejected) < KEEP:
                    preview.rejected.append(row)
            elif row.email_norm in suppressed:
                preview.suppressed_count += 1
                if len(preview.suppressed) < KEEP:
                    preview.suppressed.append(row)
            elif row.email_norm in duplicates:
                preview.skipped_duplicates += 1
                if len(preview.duplicates) < KEEP:
                    preview.duplicates.append(row)
            else:
                preview.accepted += 1
                if uses_username and not row.username:
                    preview.without_username_count += 1
                    if len(preview.without_username) < KEEP:
                        preview.without_username.append(row)
                if len(preview.sample) < sample:
                    preview.sample.append(row)
    if preview.sample and action != "certificate":
        first = preview.sample[0]
        fields = {"email": first.email, "userid": first.userid, "firstname": first.firstname,
                  "lastname": first.lastname, "username": first.username, "password": first.password}
        if action in ("certificate", "both") or job_type == "certificate":
            fields.update(certificate_url="(the certificate's link)", certificate_code="(its code)")
        _, preview.message = render_recipient(
            job_type=job_type, fields=fields, variables=first.variables, template_data=template_data, settings=settings
        )
        preview.message_to = first.email
    return preview
