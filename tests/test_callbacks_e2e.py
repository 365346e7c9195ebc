"""End to end: the seed's Job JSON posted to `mani serve`, run by a real `mani worker` on a
real Redis, every callback checked by the Moodle-side receiver exactly as seed 000 Task 4.4.2
does, with the receiver failing its first deliveries."""

from __future__ import annotations

import copy
import uuid

import httpx
import pytest
from sqlmodel import select

from api.app import create_app
from api.common import ApiConfig
from backend.core.settings import reset_settings_cache
from backend.jobs import queries
from backend.moodle import tokens
from models import Job, Recipient
from models.db import session_scope
from tests.support.receiver import Receiver
from tests.support.workers import WorkerProcess, wait_for_job
from tests.test_api_jobs import SEED_JOB
from tests.support.callbacks import SECRET, add_company

# A real worker process: with the other worker tests on one xdist worker, not beside them.
pytestmark = [pytest.mark.redis, pytest.mark.slow, pytest.mark.xdist_group("workers")]


@pytest.fixture
def redis_broker(redis_url, monkeypatch):
    from cryptography.fernet import Fernet

    monkeypatch.setenv("MANI_SECRET_KEY", Fernet.generate_key().decode())
    monkeypatch.setenv("MANI_BATCH_SIZE", "50")
    reset_settings_cache()
    import actors.broker

    actors.broker.reset()
    actors.broker.configure()
    yield redis_url
    actors.broker.reset()


@pytest.mark.parametrize("database", ["sqlite_db", "postgres_db"])
def test_a_real_job_reports_every_recipient_to_moodle(request, database, tmp_path, serve_app):
    request.getfixturevalue(database)
    request.getfixturevalue("redis_broker")
    with Receiver(SECRET) as receiver:
        add_company("123", callback_url=receiver.url)
        with session_scope() as session:
            token = tokens.issue_token(session=session, company_id="123", actor="test", source="cli").token
        job_json = copy.deepcopy(SEED_JOB)
        job_json.update(job_id=str(uuid.uuid4()), callback_url=None, generate_certificate=False,
                        recipients=[{"userid": 5000 + i, "email": f"learner{i}@example.com", "firstname": f"L{i}",
                                     "lastname": "Test"} for i in range(230)])
        del job_json["callback_url"]
        # Moodle is down for the first three callbacks: they come back on the retry schedule.
        receiver.fail_next(2, "500")
        receiver.fail_next(1, "reset")
        url = serve_app(create_app(config=ApiConfig()))
        worker = WorkerProcess(log=tmp_path / "worker.log")
        try:
            answer = httpx.post(f"{url}/api/v1/jobs", json=job_json, headers={"Authorization": f"Bearer {token}"},
                                timeout=60)
            assert answer.status_code == 202, answer.text
            job = wait_for_job(answer.json()["id"], log=worker.log)
            assert receiver.wait_for(lambda r: len(r.statuses) == 230 and r.job_statuses, timeout=60), (
                (tmp_path / "worker.log").read_text()[-3000:])
            with session_scope() as session:
                assert receiver.wait_for(lambda r: queries.callback_stats(
                    session=session, job_id=job.id).delivered_share == 1.0, timeout=30)
        finally:
            worker.stop()
        assert (job.status, job.sent_count, job.batch_count) == ("completed", 230, 5)
        # Every callback that arrived passed Moodle's check; only the planned failures did not.
        assert receiver.rejected == []
        assert [r.code for r in receiver.received if not r.accepted] == [500, 500, 0]
        assert len(receiver.accepted) == 6  # five batches and the final one: never one per recipient
        with session_scope() as session:
            rows = session.exec(select(Recipient).where(Recipient.job_id == job.id)).all()
            final = session.get(Job, job.id)
        assert {(job_json["job_id"], r.userid): "completed" for r in rows} == receiver.statuses
        assert receiver.job_statuses == {job_json["job_id"]: "completed"}
        assert all(u["timesent"] for u in receiver.updates.values())
        assert final.status == "completed"
