"""The console's job detail for a job whose batches went to the company's own cloud worker."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from models import Batch, utcnow
from models.db import session_scope
from tests.test_console_app import demo_db, make_app, run_async, settle  # noqa: F401


@run_async
async def test_job_detail_shows_the_handoff_and_flags_a_stuck_batch(demo_db):
    now = utcnow()
    with session_scope() as session:
        session.execute(update(Batch).where(Batch.job_id == 3, Batch.number == 1).values(
            status="processing", handoff_at=now - timedelta(hours=3), handoff_ref="sqs:msg-1", last_error=None))
        session.execute(update(Batch).where(Batch.job_id == 3, Batch.number == 2).values(
            status="processing", handoff_at=now - timedelta(minutes=5), reported_at=now - timedelta(minutes=1),
            handoff_ref="sqs:msg-2", last_error=None))
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        app.open_job(3)
        await settle(pilot)
        screen = app.screen
        assert screen.detail.handoff.stuck == 1 and screen.detail.handoff.mode == "sqs"
        summary = str(screen.query_one("JobSummary").render())
        assert "handoff 2 batches to sqs" in summary and "1 stuck (no report in 60 min)" in summary
        rows = dict(screen.query_one("#batches")._rows)  # the rows as given, whether the tab is shown or not
        batch_ids = {b.number: str(b.id) for b in screen.detail.batches}
        notes = {n: rows[batch_ids[n]]["error"].plain for n in (1, 2)}
        assert notes[1].startswith("handed off") and notes[1].endswith("STUCK")
        assert "reported" in notes[2] and "STUCK" not in notes[2]
