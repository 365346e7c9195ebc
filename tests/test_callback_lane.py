"""Callbacks run on their own lane: a Moodle that never answers does not slow the mail down."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from sqlalchemy import func, select

from actors.enqueue import enqueue_after_commit
from backend.core.followups import Followups
from backend.core.settings import reset_settings_cache
from models import CallbackAttempt
from models.db import session_scope
from tests.support.callbacks import add_company
from tests.support.engine import people, submit, write_csv
from tests.support.workers import WorkerProcess, wait_for_job

pytestmark = [pytest.mark.redis, pytest.mark.slow, pytest.mark.xdist_group("workers")]


class HangingReceiver:
    """Accepts every connection and never answers (a Moodle stuck on a lock)."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.held: list[socket.socket] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}/webservice/callback"

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                connection, _ = self.listener.accept()
            except TimeoutError:
                continue
            self.held.append(connection)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        for connection in self.held:
            connection.close()
        self.listener.close()


def test_a_hanging_callback_receiver_does_not_slow_sending(sqlite_cb_db, redis_smtp, tmp_path, monkeypatch):
    monkeypatch.setenv("MANI_BATCH_SIZE", "20")
    reset_settings_cache()
    receiver = HangingReceiver()
    add_company("moodleco", callback_url=receiver.url)
    job_id = submit(write_csv(tmp_path / "u.csv", people(400)), company_id="moodleco")
    # Two sending threads and 21 callbacks (one a batch, one final) that each hang for 12 s:
    # on shared threads the job would wait minutes; on its own lane the mail does not notice.
    worker = WorkerProcess(threads=2, log=tmp_path / "worker.log", MANI_CALLBACK_TIMEOUT="12",
                           MANI_CALLBACK_THREADS="2")
    try:
        assert enqueue_after_commit(Followups(dispatch_job_ids=[job_id]))
        assert redis_smtp.wait_for(1, timeout=60)
        started = time.monotonic()  # from the first message sent: the worker's start-up is not sending
        job = wait_for_job(job_id, timeout=60, log=worker.log)
        took = time.monotonic() - started
        deadline = time.monotonic() + 10
        while not receiver.held and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        worker.stop()
        receiver.close()
    assert (job.status, job.sent_count) == ("completed", 400)
    assert receiver.held, "the callbacks did reach the hanging receiver"
    assert took < 10, f"sending took {took:.1f}s beside a hanging receiver"
    with session_scope() as session:
        answered = session.execute(select(func.count()).select_from(CallbackAttempt)
                                   .where(CallbackAttempt.status_code.is_not(None))).scalar_one()
    assert answered == 0
