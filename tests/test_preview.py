"""Previewing a CSV: counts, reasons and the first message, with nothing written."""

from __future__ import annotations

from sqlalchemy import func, select

from backend.jobs.preview import preview_csv
from models import Job
from models.db import session_scope
from tests.support.engine import people, run_inline, submit, write_csv


def test_preview_counts_everything_and_renders_the_first_message(any_db, tmp_path):
    run_inline(submit(write_csv(tmp_path / "old.csv", people(2))))
    rows = people(5) + [{"email": "bad@", "username": "x"}, {"email": "user4@example.com", "username": "y"}]
    path = write_csv(tmp_path / "u.csv", rows)
    with session_scope() as session:
        preview = preview_csv(session=session, path=path, job_type="welcome_std", sample=2)
        jobs_before = session.execute(select(func.count()).select_from(Job)).scalar_one()
    assert (preview.rows_read, preview.accepted, preview.skipped_duplicates, preview.rejected_count) == (7, 3, 2, 2)
    assert [r.email for r in preview.sample] == ["user2@example.com", "user3@example.com"]
    assert [r.email for r in preview.duplicates] == ["user0@example.com", "user1@example.com"]
    assert {r.line: r.reason.split(":")[0] for r in preview.rejected} == {7: "invalid email address", 8: "duplicate of line 6"}
    assert preview.message_to == "user2@example.com"
    assert "user2" in preview.message.text and "Tmp-00002!x" in preview.message.text
    assert preview.message.subject and "<" in preview.message.html
    assert jobs_before == 1
