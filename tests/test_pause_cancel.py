"""Pause and cancel take effect within two seconds, and the numbers they report are the true ones."""

from __future__ import annotations

import json
import time

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

import cli
from actors.enqueue import enqueue_after_commit
from backend.core.followups import Followups
from backend.core.settings import reset_settings_cache
from backend.jobs import queries
from models import AuditEntry, Recipient
from models.db import session_scope
from tests.support.engine import people, submit, write_csv
from tests.support.workers import WorkerProcess, wait_for_job

pytestmark = [pytest.mark.redis, pytest.mark.slow, pytest.mark.xdist_group("workers")]
TOTAL = 3000
THREADS = 4


def _cli(*args: str) -> dict:
    result = CliRunner().invoke(cli.app, list(args))
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _wait_quiet(sink, *, quiet: float = 1.0, timeout: float = 10.0) -> int:
    """The number of messages received once nothing arrived for `quiet` seconds."""
    deadline = time.monotonic() + timeout
    count = len(sink.messages)
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now = len(sink.messages)
        if now == count:
            return count
        count = now
    raise AssertionError("sending did not stop")


def test_pause_stops_within_two_seconds_and_cancel_reports_what_it_cancelled(sqlite_db, redis_smtp, tmp_path,
                                                                             monkeypatch):
    sink = redis_smtp
    monkeypatch.setenv("MANI_BATCH_SIZE", "100")
    reset_settings_cache()
    job_id = submit(write_csv(tmp_path / "u.csv", people(TOTAL)))
    worker = WorkerProcess(threads=THREADS, log=tmp_path / "worker.log")
    try:
        assert enqueue_after_commit(Followups(dispatch_job_ids=[job_id]))
        assert sink.wait_for(300, timeout=60)
        paused = _cli("jobs", "pause", str(job_id), "--json")
        at_pause = len(sink.messages)
        time.sleep(2.0)
        two_seconds_later = len(sink.messages)
        assert _wait_quiet(sink) == two_seconds_later, "nothing is sent more than 2 s after the pause"
        with session_scope(read_only=True) as session:
            detail = queries.job_detail(session=session, job_ref=job_id)
        assert {"job_id", "status", "changed"} <= set(paused) and paused["status"] == "paused"
        assert detail.status == "paused" and detail.sent + detail.waiting == TOTAL
        # What was in flight when the pause committed went out; nothing else did.
        assert 0 <= paused["recipients"] - detail.waiting == detail.sent - (TOTAL - paused["recipients"])
        assert two_seconds_later - at_pause <= THREADS * 50

        _cli("jobs", "resume", str(job_id), "--json")
        assert sink.wait_for(two_seconds_later + 200, timeout=30)
        cancelled = _cli("jobs", "cancel", str(job_id), "--json")
        job = wait_for_job(job_id, timeout=30, log=worker.log)
        _wait_quiet(sink)
    finally:
        worker.stop()
    with session_scope(read_only=True) as session:
        counts = dict(session.execute(
            select(Recipient.status, func.count()).where(Recipient.job_id == job_id).group_by(Recipient.status)
        ).all())
        audit = session.execute(select(AuditEntry).where(AuditEntry.action == "job.cancel")).scalar_one()
    assert job.status == "cancelled" and set(counts) == {"sent", "cancelled"}
    assert cancelled["cancelled"] == cancelled["changed"] == counts["cancelled"] == audit.details["recipients"]
    assert counts["sent"] + counts["cancelled"] == TOTAL
    assert counts["sent"] == len({a for a in sink.received_addresses()})
