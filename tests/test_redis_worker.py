"""Real Dramatiq workers on a real Redis, sending to a real SMTP server; one of them is killed."""

from __future__ import annotations

import time
from collections import defaultdict

import pytest
from sqlalchemy import select

from actors import broker as broker_setup
from actors.enqueue import enqueue_after_commit
from backend.core.followups import Followups
from backend.core.settings import reset_settings_cache
from models import Recipient
from models.db import session_scope
from tests.support.engine import people, submit, write_csv
from tests.support.workers import WorkerProcess, run_on_worker, wait_for_job

# Real worker processes, killed and timed: on one xdist worker, not beside each other.
pytestmark = [pytest.mark.redis, pytest.mark.slow, pytest.mark.xdist_group("workers")]


@pytest.mark.parametrize("database", ["sqlite_db", "postgres_db"])
def test_worker_sends_a_job_through_redis(request, database, redis_smtp, tmp_path, monkeypatch):
    request.getfixturevalue(database)
    monkeypatch.setenv("MANI_BATCH_SIZE", "50")
    reset_settings_cache()
    job_id = submit(write_csv(tmp_path / "u.csv", people(300)))
    job = run_on_worker(job_id, log=tmp_path / "worker.log")
    assert (job.status, job.sent_count, job.batch_count) == ("completed", 300, 6)
    assert sorted(redis_smtp.received_addresses()) == sorted(f"user{i}@example.com" for i in range(300))


def test_a_stored_job_is_dispatched_by_the_sweeper_when_the_broker_was_down(sqlite_db, redis_smtp, tmp_path):
    job_id = submit(write_csv(tmp_path / "u.csv", people(20)))
    # No enqueue at all: as if Redis had been down when `mani submit` ran.
    worker = WorkerProcess(log=tmp_path / "worker.log")
    try:
        job = wait_for_job(job_id, log=worker.log)
    finally:
        worker.stop()
    assert (job.status, job.sent_count) == ("completed", 20)


def test_sigkill_mid_job_loses_nothing_and_duplicates_keep_their_message_id(
    postgres_db, redis_smtp, tmp_path, monkeypatch
):
    monkeypatch.setenv("MANI_BATCH_SIZE", "100")
    monkeypatch.setenv("MANI_COMMIT_EVERY", "20")
    reset_settings_cache()
    threads = 4
    job_id = submit(write_csv(tmp_path / "u.csv", people(2000)))
    first = WorkerProcess(threads=threads, log=tmp_path / "first.log")
    try:
        assert enqueue_after_commit(Followups(dispatch_job_ids=[job_id]))
        deadline = time.monotonic() + 60
        while len(redis_smtp.messages) < 400 and time.monotonic() < deadline:
            time.sleep(0.01)
        first.kill()
    finally:
        first.stop()
    delivered_before_kill = len(redis_smtp.messages)
    assert 400 <= delivered_before_kill < 2000, "the kill must land mid-job"
    second = WorkerProcess(threads=threads, log=tmp_path / "second.log")
    try:
        job = wait_for_job(job_id, log=second.log)
    finally:
        second.stop()

    assert (job.status, job.sent_count) == ("completed", 2000)
    with session_scope() as session:
        statuses = session.execute(select(Recipient.status).where(Recipient.job_id == job_id)).scalars().all()
    assert set(statuses) == {"sent"} and len(statuses) == 2000
    ids_by_address = defaultdict(set)
    copies = defaultdict(int)
    for message in redis_smtp.messages:
        for address in message.rcpt_tos:
            ids_by_address[address].add(message.message_id)
            copies[address] += 1
    assert set(ids_by_address) == {f"user{i}@example.com" for i in range(2000)}
    assert all(len(ids) == 1 for ids in ids_by_address.values()), "a resend must carry the original Message-ID"
    duplicates = sum(n - 1 for n in copies.values())
    # The documented bound: what each worker thread sent since its last commit.
    print(f"crash test: {delivered_before_kill} delivered before SIGKILL, {duplicates} duplicates after recovery")
    assert duplicates <= threads * 20, f"{duplicates} duplicates"


def test_redis_losing_every_message_mid_job_delays_the_job_but_loses_nothing(
    sqlite_db, redis_smtp, tmp_path, monkeypatch
):
    import redis

    from backend.core.settings import get_settings

    monkeypatch.setenv("MANI_BATCH_SIZE", "25")
    reset_settings_cache()
    job_id = submit(write_csv(tmp_path / "u.csv", people(1000)))
    worker = WorkerProcess(threads=2, log=tmp_path / "worker.log")
    try:
        assert enqueue_after_commit(Followups(dispatch_job_ids=[job_id]))
        deadline = time.monotonic() + 60
        while len(redis_smtp.messages) < 100 and time.monotonic() < deadline:
            time.sleep(0.005)
        # What a restart of a Redis that keeps nothing on disk leaves behind: nothing at all.
        client = redis.Redis.from_url(get_settings().redis_url)
        keys = list(client.scan_iter(f"{get_settings().redis_namespace}*"))
        client.delete(*keys)
        lost_at = len(redis_smtp.messages)
        job = wait_for_job(job_id, log=worker.log)
    finally:
        worker.stop()
    assert keys and lost_at < 1000, "the flush must land mid-job"
    assert (job.status, job.sent_count) == ("completed", 1000)
    received = redis_smtp.received_addresses()
    assert set(received) == {f"user{i}@example.com" for i in range(1000)}
    assert len(received) == 1000, "lost messages are found again, never sent twice"


def test_live_workers_counts_consumers_but_not_this_process(sqlite_db, redis_smtp, tmp_path):
    job_id = submit(write_csv(tmp_path / "u.csv", people(2)))
    assert enqueue_after_commit(Followups(dispatch_job_ids=[job_id]))
    assert broker_setup.live_workers() == 0
    worker = WorkerProcess(log=tmp_path / "worker.log")
    try:
        wait_for_job(job_id, log=worker.log)
        assert broker_setup.live_workers() == 1
    finally:
        worker.stop()


def test_two_worker_processes_share_a_job_replace_a_dead_child_and_stop_on_sigterm(sqlite_db, redis_smtp, tmp_path):
    import os
    import signal

    def workers(pid: int) -> set[int]:
        """The spawned worker processes (multiprocessing also starts a resource tracker)."""
        found = set()
        for child in open(f"/proc/{pid}/task/{pid}/children").read().split():
            with open(f"/proc/{child}/cmdline", "rb") as cmdline:
                if b"spawn_main" in cmdline.read():
                    found.add(int(child))
        return found

    def alive(pid: int) -> bool:
        return os.path.exists(f"/proc/{pid}") and open(f"/proc/{pid}/stat").read().split()[2] != "Z"

    job_id = submit(write_csv(tmp_path / "u.csv", people(400)))
    worker = WorkerProcess(processes=2, threads=2, log=tmp_path / "worker.log")
    try:
        assert enqueue_after_commit(Followups(dispatch_job_ids=[job_id]))
        assert wait_for_job(job_id, log=worker.log).sent_count == 400
        first = workers(worker.process.pid)
        assert len(first) == 2
        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (victim in workers(worker.process.pid) or len(workers(worker.process.pid)) < 2):
            time.sleep(0.2)
        replaced = workers(worker.process.pid)
        assert victim not in replaced and len(replaced) == 2
        again = submit(write_csv(tmp_path / "v.csv", people(50, start=400)))
        assert enqueue_after_commit(Followups(dispatch_job_ids=[again]))
        assert wait_for_job(again, log=worker.log).sent_count == 50
    finally:
        worker.stop()
    assert worker.process.returncode == 0
    assert not any(alive(pid) for pid in replaced)
