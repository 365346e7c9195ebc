"""Outages are the provider's, not the recipients': a real SMTP server goes away mid-job."""

from __future__ import annotations

import socket
import time

import pytest
from sqlalchemy import func, select

from actors.enqueue import enqueue_after_commit
from backend.core.followups import Followups
from backend.core.settings import reset_settings_cache
from backend.jobs import queries
from backend.moodle.callbacks import build_payload
from backend.ops.metrics import collect_families
from models import CallbackDelivery, ProviderCircuit, Recipient
from models.db import session_scope
from tests.support.engine import people, run_inline, submit, write_csv
from tests.support.workers import WorkerProcess, wait_for_job


def _dead_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.redis
@pytest.mark.slow
@pytest.mark.xdist_group("workers")
def test_an_smtp_outage_mid_job_costs_no_attempts(sqlite_db, redis_smtp, tmp_path, monkeypatch):
    sink = redis_smtp
    monkeypatch.setenv("MANI_BATCH_SIZE", "50")
    reset_settings_cache()
    job_id = submit(write_csv(tmp_path / "u.csv", people(600)))
    worker = WorkerProcess(threads=4, log=tmp_path / "worker.log", MANI_OUTAGE_BACKOFF_SECONDS="0.5",
                           MANI_OUTAGE_BACKOFF_MAX_SECONDS="2", MANI_SMTP_TIMEOUT="2")
    try:
        assert enqueue_after_commit(Followups(dispatch_job_ids=[job_id]))
        assert sink.wait_for(100, timeout=60), "the job must get going before the outage"
        sink.stop()  # the relay goes away mid-job
        deadline = time.monotonic() + 20
        down = None
        while down is None and time.monotonic() < deadline:
            with session_scope(read_only=True) as session:
                down = queries.job_detail(session=session, job_ref=job_id).provider_down_since
            time.sleep(0.2)
        assert down is not None, "the read side says the provider is down"
        with session_scope(read_only=True) as session:
            outages = queries.dashboard(session=session).outages
            families = {family.name: family for family in collect_families(session)}
        assert [o.provider for o in outages] == ["smtp"]
        assert families["mani_provider_down_since_seconds"].samples[0].value == pytest.approx(down.timestamp())
        time.sleep(8)  # down for a while: several backoffs, no recipient may pay for them
        sink.start()
        job = wait_for_job(job_id, timeout=120, log=worker.log)
    finally:
        worker.stop()
    assert (job.status, job.sent_count) == ("completed", 600)
    with session_scope() as session:
        statuses = set(session.execute(select(Recipient.status).where(Recipient.job_id == job_id)).scalars())
        most = session.execute(select(func.max(Recipient.attempts)).where(Recipient.job_id == job_id)).scalar_one()
        circuits = session.execute(select(func.count()).select_from(ProviderCircuit)).scalar_one()
    assert statuses == {"sent"}
    assert most <= 2
    assert circuits == 0, "the first message sent closes the circuit"


def test_an_outage_longer_than_allowed_fails_the_job_with_the_reason(sqlite_db, tmp_path, monkeypatch):
    monkeypatch.setenv("MANI_EMAIL_PROVIDER", "smtp")
    monkeypatch.setenv("MANI_SMTP_URL", f"smtp://127.0.0.1:{_dead_port()}")
    monkeypatch.setenv("MANI_SMTP_TIMEOUT", "1")
    monkeypatch.setenv("MANI_OUTAGE_BACKOFF_SECONDS", "0.2")
    monkeypatch.setenv("MANI_MAX_OUTAGE_HOURS", str(1.5 / 3600))  # 1.5 s
    monkeypatch.setenv("MANI_BATCH_SIZE", "5")
    reset_settings_cache()
    job_id = submit(write_csv(tmp_path / "u.csv", people(10)), callback_url="http://127.0.0.1:9/moodle")
    job = run_inline(job_id, max_rounds=200)
    assert job.status == "failed"
    assert "down since" in job.error and "MANI_MAX_OUTAGE_HOURS" in job.error
    with session_scope() as session:
        recipients = session.execute(select(Recipient).where(Recipient.job_id == job_id)).scalars().all()
        final = session.execute(
            select(CallbackDelivery).where(CallbackDelivery.job_id == job_id, CallbackDelivery.kind == "final")
        ).scalar_one()
        payload = build_payload(session=session, delivery=final)
    assert {r.status for r in recipients} == {"permanently_failed"}
    assert max(r.attempts for r in recipients) == 0, "an outage costs no attempt, even when it fails the job"
    assert "down since" in payload["error"]


def test_a_run_of_temporary_failures_is_an_outage_not_the_recipients_fault(sqlite_db, smtp_sink, tmp_path, monkeypatch):
    monkeypatch.setenv("MANI_EMAIL_PROVIDER", "smtp")
    monkeypatch.setenv("MANI_SMTP_URL", smtp_sink.url)
    monkeypatch.setenv("MANI_OUTAGE_BACKOFF_SECONDS", "0.2")
    monkeypatch.setenv("MANI_OUTAGE_TRANSIENT_RUN", "5")
    monkeypatch.setenv("MANI_COMMIT_EVERY", "20")
    reset_settings_cache()
    for i in range(10):  # ten recipients in a row refused once at RCPT: the relay is in trouble
        smtp_sink.fail(f"user{i}@example.com", code=451, times=1)
    smtp_sink.fail("user12@example.com", code=451, times=1)  # one refusal on its own is that recipient's
    job_id = submit(write_csv(tmp_path / "u.csv", people(13)))
    job = run_inline(job_id, max_rounds=100)
    assert (job.status, job.sent_count) == ("completed", 13)
    with session_scope() as session:
        attempts = dict(session.execute(select(Recipient.email, Recipient.attempts).where(Recipient.job_id == job_id)).all())
    assert attempts.pop("user12@example.com") == 2
    assert set(attempts.values()) == {1}, "the run of refusals cost nobody an attempt"
