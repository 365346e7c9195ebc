"""Enqueueing at the actor boundary: `enqueue_after_commit`, and the sweeper as worker middleware."""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta

from dramatiq import Message
from sqlalchemy import update

from actors import broker as broker_setup
from actors.enqueue import enqueue_after_commit
from actors.middleware import SweeperMiddleware
from actors.runner import start_worker
from backend.core.followups import Followups
from backend.core.settings import Settings, get_settings, reset_settings_cache
from models import Job, utcnow
from models.db import session_scope
from tests.support.engine import people, submit, write_csv
from tests.support.workers import wait_for_job


def _sweepers() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "mani-sweeper" and thread.is_alive()]


def _job(job_id: int) -> Job:
    with session_scope() as session:
        return session.get(Job, job_id)


def test_broker_down_returns_false_and_the_sweeper_sends_it_later(sqlite_db, tmp_path, monkeypatch, caplog):
    job_id = submit(write_csv(tmp_path / "u.csv", people(3)))
    monkeypatch.setenv("MANI_REDIS_URL", "redis://127.0.0.1:1/0")  # nothing listens there
    reset_settings_cache()
    broker_setup.configure()
    with caplog.at_level(logging.WARNING, logger="actors.enqueue"):
        assert enqueue_after_commit(Followups(dispatch_job_ids=[job_id])) is False
    [line] = [r.getMessage() for r in caplog.records if r.name == "actors.enqueue"]  # one line, no traceback
    assert line.startswith("the broker is unreachable (") and line.endswith(
        "): 1 job to dispatch wait in the store for the sweeper")
    assert _job(job_id).enqueued_at is None  # never stamped: the sweeper knows it still needs a message

    # The broker comes back (here: the embedded one, with a worker in this process).
    monkeypatch.delenv("MANI_REDIS_URL")
    monkeypatch.setenv("MANI_SWEEP_INTERVAL_SECONDS", "0.1")
    reset_settings_cache()
    broker_setup.reset()
    with session_scope() as session:  # older than the grace a freshly stored job gets
        session.execute(update(Job).where(Job.id == job_id).values(created_at=utcnow() - timedelta(seconds=10)))
    running = start_worker(threads=2, settings=get_settings())
    try:
        job = wait_for_job(job_id, timeout=30)
    finally:
        running.stop()
    assert (job.status, job.sent_count) == ("completed", 3)
    assert job.enqueued_at is not None


def test_on_the_embedded_broker_without_a_worker_nothing_is_sent_or_stamped(sqlite_db, tmp_path):
    job_id = submit(write_csv(tmp_path / "u.csv", people(2)))
    broker = broker_setup.current()
    assert broker_setup.reaches_workers() is False
    assert enqueue_after_commit(Followups(dispatch_job_ids=[job_id])) is False
    assert broker.queues.get("jobs") is None or broker.queues["jobs"].qsize() == 0
    assert _job(job_id).enqueued_at is None
    assert enqueue_after_commit(Followups()) is True  # nothing asked, nothing missing


def test_a_chosen_broker_gets_every_kind_of_message(sqlite_db, tmp_path):
    job_id = submit(write_csv(tmp_path / "u.csv", people(2)))
    broker = broker_setup.use(broker_setup.build_broker(Settings(redis_url=None)))
    assert broker_setup.reaches_workers() is True
    sent = enqueue_after_commit(Followups(dispatch_job_ids=[job_id], batch_ids=[7], delayed_batches=[(8, 30.0)],
                                          finish_job_ids=[job_id], callback_ids=[9]))
    assert sent is True
    queued = {name: [(m.actor_name, tuple(m.args)) for m in map(Message.decode, broker.queues[name].queue)]
              for name in broker.queues}
    assert queued["jobs"] == [("dispatch_job", (job_id,)), ("finish_job", (job_id,))]
    assert queued["send"] == [("send_batch", (7,))]
    assert queued["send.DQ"] == [("send_batch", (8,))]  # delayed: Dramatiq's delay queue
    assert queued["callbacks"] == [("deliver_callback", (9,))]
    assert _job(job_id).enqueued_at is not None


def test_the_sweeper_middleware_starts_and_stops_with_its_worker(sqlite_db):
    broker = broker_setup.current()
    assert _sweepers() == []
    running = start_worker(threads=1, settings=get_settings())
    try:
        assert isinstance(running.sweeper, SweeperMiddleware) and running.sweeper in broker.middleware
        assert running.sweeper.running and len(_sweepers()) == 1
        assert broker_setup.reaches_workers() is True  # a worker of this process consumes the embedded broker
    finally:
        running.stop()
    deadline = time.monotonic() + 5
    while _sweepers() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _sweepers() == [] and not running.sweeper.running
    assert running.sweeper not in broker.middleware
    assert broker_setup.reaches_workers() is False

    quiet = start_worker(threads=1, settings=get_settings(), sweep=False)
    try:
        assert quiet.sweeper is None and _sweepers() == []
    finally:
        quiet.stop()
