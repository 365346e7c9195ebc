"""A job's log as CSV: one row per recipient (the console's export and `mani jobs export`)."""

from __future__ import annotations

from typing import TextIO

from sqlmodel import Session

from backend.core.csv_out import csv_writer
from backend.jobs import queries


def write_job_log(*, session: Session, job_id: int, handle: TextIO) -> int:
    """Write every recipient of the job (queries.LOG_COLUMNS, header first, spreadsheet-safe),
    streamed; returns the number of recipients written."""
    writer = csv_writer(handle)
    writer.writerow(queries.LOG_COLUMNS)
    return writer.writerows([record[name] for name in queries.LOG_COLUMNS]
                            for record in queries.iter_recipient_log(session=session, job_id=job_id))
