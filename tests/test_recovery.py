"""Recovery in seconds: after every worker is SIGKILLed, and after Redis restarts empty.

The limits here are generous; `bench/recovery.py` prints the figures (targets 45 s and 15 s).
"""

from __future__ import annotations

import time

import pytest

import actors.broker
from actors.enqueue import enqueue_after_commit
from backend.core.followups import Followups
from backend.core.settings import reset_settings_cache
from tests.support.engine import people, submit, write_csv
from tests.support.workers import WorkerProcess, wait_for_job

pytestmark = [pytest.mark.redis, pytest.mark.slow, pytest.mark.xdist_group("workers")]
# The defaults, not the test speed-ups of `worker_env`: recovery must be quick as shipped.
AS_SHIPPED = {"MANI_BATCH_LEASE_SECONDS": "30", "MANI_REQUEUE_AFTER_SECONDS": "300",
              "MANI_SWEEP_INTERVAL_SECONDS": "2", "MANI_BROKER_HEARTBEAT_TIMEOUT_MS": "15000"}


def _quiet(sink, *, for_seconds: float = 1.5, timeout: float = 30.0) -> int:
    deadline = time.monotonic() + timeout
    count = len(sink.messages)
    while time.monotonic() < deadline:
        time.sleep(for_seconds)
        if len(sink.messages) == count:
            return count
        count = len(sink.messages)
    raise AssertionError("sending did not stop")


def _next_message_after(sink, count: int, *, timeout: float) -> float:
    started = time.monotonic()
    assert sink.wait_for(count + 1, timeout=timeout), f"nothing was sent again within {timeout}s"
    return time.monotonic() - started


def test_sending_resumes_soon_after_every_worker_is_killed(sqlite_db, redis_smtp, tmp_path, monkeypatch):
    monkeypatch.setenv("MANI_BATCH_SIZE", "100")
    reset_settings_cache()
    # 12 batches, 4 threads: every batch is running or prefetched by the worker that dies.
    job_id = submit(write_csv(tmp_path / "u.csv", people(1200)))
    first = WorkerProcess(threads=4, log=tmp_path / "first.log", **AS_SHIPPED)
    try:
        assert enqueue_after_commit(Followups(dispatch_job_ids=[job_id]))
        assert redis_smtp.wait_for(150, timeout=60)
        first.kill()
    finally:
        first.stop()
    before = len(redis_smtp.messages)
    second = WorkerProcess(threads=4, log=tmp_path / "second.log", **AS_SHIPPED)
    try:
        waited = _next_message_after(redis_smtp, before, timeout=60)
        job = wait_for_job(job_id, timeout=120, log=second.log)
    finally:
        second.stop()
    assert waited <= 60
    assert (job.status, job.sent_count) == ("completed", 1200)


def test_sending_resumes_soon_after_redis_restarts_empty(sqlite_db, private_redis, smtp_sink, tmp_path, monkeypatch):
    monkeypatch.setenv("MANI_REDIS_URL", private_redis.url)
    monkeypatch.setenv("MANI_EMAIL_PROVIDER", "smtp")
    monkeypatch.setenv("MANI_SMTP_URL", smtp_sink.url)
    monkeypatch.setenv("MANI_BATCH_SIZE", "100")
    reset_settings_cache()
    actors.broker.reset()
    actors.broker.configure()
    job_id = submit(write_csv(tmp_path / "u.csv", people(1500)))
    worker = WorkerProcess(threads=4, log=tmp_path / "worker.log", **AS_SHIPPED)
    try:
        assert enqueue_after_commit(Followups(dispatch_job_ids=[job_id]))
        assert smtp_sink.wait_for(150, timeout=60)
        private_redis.kill()  # every message, queued, delayed or fetched, is gone
        before = _quiet(smtp_sink)  # the batches in hand finish; nothing else can start
        private_redis.start()
        waited = _next_message_after(smtp_sink, before, timeout=60)
        job = wait_for_job(job_id, timeout=120, log=worker.log)
    finally:
        worker.stop()
        actors.broker.reset()
    assert waited <= 30
    assert (job.status, job.sent_count) == ("completed", 1500)
