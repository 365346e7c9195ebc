"""Jobs from a Moodle selection: the reader (backend.moodle.source) with the CSV intake's address
check, its rows handed to `create_job` as the intake's own RecipientRow / RejectedRow.

This glue lives in the jobs room because the Moodle room sits below it and may not import it.
"""

from __future__ import annotations

from collections.abc import Iterator

from backend.jobs.intake import RecipientRow, RejectedRow, checked_address
from backend.moodle.source import (
    InvalidRow,
    MoodleSource,
    Selection,
    SelectionOptions,
    select_recipients,
)


def select_moodle_recipients(
    *, source: MoodleSource, options: SelectionOptions, site_url: str | None = None
) -> Selection:
    """`select_recipients` whose addresses are checked as a CSV's are, and whose rows are RecipientRow."""
    return select_recipients(
        source=source, options=options, site_url=site_url, check_address=checked_address,
        recipient_type=RecipientRow,
    )


def moodle_job_rows(selection: Selection) -> Iterator[RecipientRow | RejectedRow]:
    """The rows for `create_job(rows=...)`: recipients as they are, a bad address as a rejection
    that names the Moodle user."""
    for row in selection.rows():
        if type(row) is InvalidRow:
            yield RejectedRow(line=row.line, email=row.email or None, reason=f"user {row.userid}: {row.reason}")
        else:
            yield row
