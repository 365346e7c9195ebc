"""No head-of-line blocking: a throttled company's batches wait in the broker, not in worker threads."""

from __future__ import annotations

import time

import pytest

from actors.enqueue import enqueue_after_commit
from backend.companies.store import set_company_settings
from backend.core.followups import Followups
from backend.core.settings import reset_settings_cache
from backend.jobs.actions import cancel_job
from models import Company
from models.db import session_scope
from tests.support.engine import people, submit, write_csv
from tests.support.workers import WorkerProcess, wait_for_job

pytestmark = [pytest.mark.redis, pytest.mark.slow, pytest.mark.xdist_group("workers")]


def _company(company_id: str, **values: str) -> None:
    with session_scope() as session:
        session.add(Company(id=company_id, name=f"Company {company_id}"))
        session.flush()
        if values:
            set_company_settings(session=session, company_id=company_id, values=values, actor="test", source="cli")


def test_a_throttled_company_does_not_hold_up_another(sqlite_db, redis_smtp, tmp_path, monkeypatch):
    sink = redis_smtp
    monkeypatch.setenv("MANI_BATCH_SIZE", "20")
    reset_settings_cache()
    _company("slowco", rate_limit="5")
    _company("fastco")
    slow_id = submit(write_csv(tmp_path / "slow.csv", people(400, domain="slow.example")), company_id="slowco")
    worker = WorkerProcess(threads=4, log=tmp_path / "worker.log")
    try:
        # 20 batches at 5 messages/s: 80 s of work, far more batches than the worker has threads.
        assert enqueue_after_commit(Followups(dispatch_job_ids=[slow_id]))
        assert sink.wait_for(10, timeout=30), "the throttled job must be running"
        fast_id = submit(write_csv(tmp_path / "fast.csv", people(10, domain="fast.example")), company_id="fastco")
        started = time.monotonic()
        assert enqueue_after_commit(Followups(dispatch_job_ids=[fast_id]))
        fast = wait_for_job(fast_id, timeout=60, log=worker.log)
        waited = time.monotonic() - started
        slow_sent = sum(1 for address in sink.received_addresses() if address.endswith("@slow.example"))
        with session_scope() as session:
            cancel_job(session=session, job_ref=slow_id, actor="test", source="cli")
    finally:
        worker.stop()
    assert (fast.status, fast.sent_count) == ("completed", 10)
    assert waited < 15, f"the 10-recipient job waited {waited:.1f}s behind the throttled one"
    assert slow_sent < 400, "the throttled job was still running while the other one went through"
