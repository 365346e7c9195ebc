"""The job engine on SQLite and PostgreSQL, against a real SMTP server."""

from __future__ import annotations

import email
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from backend.core.settings import reset_settings_cache
from backend.delivery import engine
from backend.delivery.sending import run_batch
from backend.jobs.actions import cancel_job, pause_job, resume_job, retry_job
from backend.jobs.queries import recipient_counts
from models import Batch, Job, Recipient, utcnow
from models.db import session_scope
from tests.support.engine import people, run_inline, submit, write_csv


@pytest.fixture
def smtp_env(smtp_sink, monkeypatch, any_db):
    monkeypatch.setenv("MANI_EMAIL_PROVIDER", "smtp")
    monkeypatch.setenv("MANI_SMTP_URL", smtp_sink.url)
    monkeypatch.setenv("MANI_RETRY_SCHEDULE", "0,0")
    monkeypatch.setenv("MANI_BATCH_SIZE", "20")
    monkeypatch.setenv("MANI_COMMIT_EVERY", "7")
    reset_settings_cache()
    return smtp_sink


def recipients(job_id: int) -> list[Recipient]:
    with session_scope() as session:
        return list(session.execute(select(Recipient).where(Recipient.job_id == job_id).order_by(Recipient.id)).scalars())


def test_every_recipient_is_sent_once_in_batches(smtp_env, tmp_path):
    job_id = submit(write_csv(tmp_path / "u.csv", people(45)))
    job = run_inline(job_id)
    assert job.status == "completed"
    assert (job.sent_count, job.failed_count, job.batch_count) == (45, 0, 3)
    assert sorted(smtp_env.received_addresses()) == sorted(f"user{i}@example.com" for i in range(45))
    assert smtp_env.connections == 3  # one SMTP connection per batch
    rows = recipients(job_id)
    assert {r.status for r in rows} == {"sent"}
    assert all(r.secret is None for r in rows), "temporary passwords must not outlive their send"
    message = smtp_env.messages[0].parsed
    assert message["Message-ID"] == f"<mani.{job.uuid}.{rows[0].id}@mani.localhost>"
    assert "Tmp-00000!x" in message.get_body(("plain",)).get_content()


def test_redelivered_batch_sends_nothing_twice(smtp_env, tmp_path):
    job_id = submit(write_csv(tmp_path / "u.csv", people(10)))
    run_inline(job_id)
    with session_scope() as session:
        batch_id = session.execute(select(Batch.id).where(Batch.job_id == job_id)).scalar_one()
    assert run_batch(batch_id=batch_id).batch_ids == []
    with session_scope() as session:
        session.execute(update(Batch).where(Batch.id == batch_id).values(status="queued"))
    run_batch(batch_id=batch_id)
    assert len(smtp_env.messages) == 10


def test_transient_then_permanent_failures_follow_the_status_machine(smtp_env, tmp_path):
    smtp_env.fail("user1@example.com", code=451, times=1)          # recovers on retry
    smtp_env.fail("user2@example.com", code=550, text="5.1.1 user unknown")
    smtp_env.fail("user3@example.com", code=450)                    # never recovers
    job_id = submit(write_csv(tmp_path / "u.csv", people(5)))
    job = run_inline(job_id)
    assert job.status == "partial_failure"
    by_email = {r.email: r for r in recipients(job_id)}
    assert by_email["user1@example.com"].status == "sent"
    assert by_email["user1@example.com"].attempts == 2
    assert by_email["user2@example.com"].status == "permanently_failed"
    assert "5.1.1 user unknown" in by_email["user2@example.com"].last_error
    assert by_email["user2@example.com"].attempts == 1
    assert by_email["user3@example.com"].status == "permanently_failed"
    assert by_email["user3@example.com"].attempts == 3  # first try plus the two retries of the schedule
    assert by_email["user3@example.com"].last_error.startswith("gave up after 3 attempts")
    assert (job.sent_count, job.failed_count) == (3, 2)


def test_all_failed_job_is_failed_and_retry_resends_only_failures(smtp_env, tmp_path):
    for i in range(3):
        smtp_env.fail(f"user{i}@example.com", code=550, times=1)
    job_id = submit(write_csv(tmp_path / "u.csv", people(3)))
    assert run_inline(job_id).status == "failed"
    with session_scope() as session:
        result = retry_job(session=session, job_ref=job_id, email="USER1@example.com", actor="t", source="test")
    assert result.public.recipients == 1
    with session_scope() as session:
        assert session.get(Job, job_id).status == "retry_pending"
    for batch_id in result.followups.batch_ids:
        for finish_id in run_batch(batch_id=batch_id).finish_job_ids:
            with session_scope() as session:
                engine.finish_job(session=session, job_id=finish_id)
    with session_scope() as session:
        job = session.get(Job, job_id)
        assert (job.status, job.sent_count, job.failed_count) == ("partial_failure", 1, 2)
        again = retry_job(session=session, job_ref=job_id, actor="t", source="test")
    job = run_inline(job_id, batch_ids=again.followups.batch_ids)
    assert (job.status, job.sent_count) == ("completed", 3)
    assert sorted(smtp_env.received_addresses()) == [f"user{i}@example.com" for i in range(3)]


def test_a_dead_workers_batch_is_taken_over_after_its_lease(smtp_env, tmp_path):
    job_id = submit(write_csv(tmp_path / "u.csv", people(5)))
    with session_scope() as session:
        batch_id = engine.dispatch_job(session=session, job_id=job_id).batch_ids[0]
    settings = __import__("backend.core.settings", fromlist=["get_settings"]).get_settings()
    with session_scope() as session:
        claim = engine.claim_batch(session=session, batch_id=batch_id, settings=settings)
        assert claim and len(claim.rows) == 5
    # The worker "dies" here. A duplicate message finds the lease held and does nothing.
    assert run_batch(batch_id=batch_id).batch_ids == [] and smtp_env.messages == []
    with session_scope() as session:
        session.execute(update(Batch).where(Batch.id == batch_id).values(lease_until=utcnow() - timedelta(seconds=1)))
    run_batch(batch_id=batch_id)
    with session_scope() as session:
        batch = session.get(Batch, batch_id)
        assert (batch.status, batch.attempts, batch.recoveries) == ("completed", 2, 1)
    assert len(smtp_env.messages) == 5


def test_a_poison_batch_is_given_up_with_every_recipient_visible(smtp_env, tmp_path, monkeypatch):
    monkeypatch.setenv("MANI_MAX_BATCH_ATTEMPTS", "2")
    reset_settings_cache()
    job_id = submit(write_csv(tmp_path / "u.csv", people(4)))
    monkeypatch.setenv("MANI_SMTP_URL", "smtp://")  # the relay's setting breaks after submit: every run crashes
    reset_settings_cache()
    with session_scope() as session:
        batch_id = engine.dispatch_job(session=session, job_id=job_id).batch_ids[0]
    for _ in range(2):
        with pytest.raises(Exception):
            run_batch(batch_id=batch_id)
    followups = run_batch(batch_id=batch_id)
    assert followups.finish_job_ids == [job_id]
    with session_scope() as session:
        engine.finish_job(session=session, job_id=job_id)
        assert session.get(Job, job_id).status == "failed"
    rows = recipients(job_id)
    assert {r.status for r in rows} == {"permanently_failed"}
    assert "batch 1 given up after 2 failed runs" in rows[0].last_error
    assert all(r.secret is None for r in rows)


def test_pause_resume_and_cancel(smtp_env, tmp_path):
    job_id = submit(write_csv(tmp_path / "u.csv", people(40)))
    with session_scope() as session:
        batch_ids = engine.dispatch_job(session=session, job_id=job_id).batch_ids
    with session_scope() as session:
        pause_job(session=session, job_ref=job_id, actor="t", source="test")
    assert run_batch(batch_id=batch_ids[0]).batch_ids == [] and smtp_env.messages == []
    with session_scope() as session:
        resumed = resume_job(session=session, job_ref=job_id, actor="t", source="test")
        assert sorted(resumed.followups.batch_ids) == batch_ids
    run_batch(batch_id=batch_ids[0])
    with session_scope() as session:
        result = cancel_job(session=session, job_ref=job_id, actor="t", source="test")
        assert result.public.recipients == 20
        counts = recipient_counts(session=session, job_id=job_id)
    assert counts == {"sent": 20, "cancelled": 20}
    assert run_batch(batch_id=batch_ids[1]).batch_ids == []
    assert len(smtp_env.messages) == 20


def test_duplicates_across_jobs_are_skipped_unless_allowed(smtp_env, tmp_path):
    path = write_csv(tmp_path / "u.csv", people(6))
    run_inline(submit(path))
    second = submit(write_csv(tmp_path / "v.csv", people(8)))
    with session_scope() as session:
        job = session.get(Job, second)
        assert (job.total, job.skipped_duplicates) == (2, 6)
    assert run_inline(second).sent_count == 2
    third = submit(path, allow_duplicates=True)
    with session_scope() as session:
        assert session.get(Job, third).total == 6


def test_outbox_writes_one_eml_per_recipient(any_db, tmp_path, mani_env):
    job_id = submit(write_csv(tmp_path / "u.csv", people(3)))
    assert run_inline(job_id).status == "completed"
    files = sorted((tmp_path / "mani-data" / "outbox").rglob("*.eml"))
    assert len(files) == 3
    parsed = email.message_from_bytes(files[0].read_bytes(), policy=email.policy.default)
    assert parsed.get_content_type() == "multipart/alternative"


def test_temporary_passwords_are_encrypted_at_rest_and_wiped_once_sent(sqlite_db, tmp_path):
    from pathlib import Path

    from backend.core.field_cipher import field_cipher

    job_id = submit(write_csv(tmp_path / "u.csv", people(3)))
    database = Path(sqlite_db.removeprefix("sqlite:///"))
    stored = b"".join(p.read_bytes() for p in database.parent.glob(database.name + "*"))
    assert b"Tmp-00001!x" not in stored
    rows = recipients(job_id)
    assert all(r.secret.startswith("g1:") for r in rows)
    assert field_cipher().decrypt(rows[1].secret) == "Tmp-00001!x"
    run_inline(job_id)
    assert [r.secret for r in recipients(job_id)] == [None, None, None]


def test_field_cipher_rotates_keys_and_refuses_a_foreign_key(mani_env, monkeypatch):
    from cryptography.fernet import Fernet

    from backend.core.errors import ManiError
    from backend.core.field_cipher import field_cipher

    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    monkeypatch.setenv("MANI_SECRET_KEY", old)
    reset_settings_cache()
    token = field_cipher().encrypt("Tmp-1")
    monkeypatch.setenv("MANI_SECRET_KEY", f"{new},{old}")
    reset_settings_cache()
    assert field_cipher().decrypt(token) == "Tmp-1"
    monkeypatch.setenv("MANI_SECRET_KEY", new)
    reset_settings_cache()
    with pytest.raises(ManiError):
        field_cipher().decrypt(token)


def test_a_slow_batch_keeps_its_lease_while_its_worker_lives(smtp_env, tmp_path, monkeypatch):
    import threading
    import time

    from backend.mail.providers.smtp import SmtpProvider

    monkeypatch.setenv("MANI_BATCH_LEASE_SECONDS", "1")
    reset_settings_cache()
    job_id = submit(write_csv(tmp_path / "u.csv", people(3)))
    with session_scope() as session:
        batch_id = engine.dispatch_job(session=session, job_id=job_id).batch_ids[0]
    original = SmtpProvider.send

    def slow_send(self, messages):
        time.sleep(2.5)  # a server that takes its time, well past the 1 s lease
        return original(self, messages)

    monkeypatch.setattr(SmtpProvider, "send", slow_send)
    runner = threading.Thread(target=run_batch, kwargs={"batch_id": batch_id})
    runner.start()
    time.sleep(1.8)
    assert run_batch(batch_id=batch_id).batch_ids == []  # a second worker may not take it over
    runner.join()
    with session_scope() as session:
        batch = session.get(Batch, batch_id)
        assert (batch.status, batch.recoveries) == ("completed", 0)
    assert len(smtp_env.messages) == 3


def test_a_job_whose_dispatch_keeps_crashing_fails_instead_of_looping(smtp_env, tmp_path, monkeypatch):
    import backend.delivery.routing

    monkeypatch.setenv("MANI_MAX_BATCH_ATTEMPTS", "2")
    reset_settings_cache()
    job_id = submit(write_csv(tmp_path / "u.csv", people(2)))

    def broken_route(**_):
        raise RuntimeError("routing blew up")

    monkeypatch.setattr(backend.delivery.routing, "choose_route", broken_route)
    for _ in range(2):
        with session_scope() as session:
            assert engine.count_dispatch_attempt(session=session, job_id=job_id)
        with pytest.raises(RuntimeError), session_scope() as session:
            engine.dispatch_job(session=session, job_id=job_id)
    with session_scope() as session:
        engine.count_dispatch_attempt(session=session, job_id=job_id)
    with session_scope() as session:
        engine.dispatch_job(session=session, job_id=job_id)
    with session_scope() as session:
        job = session.get(Job, job_id)
        assert (job.status, job.dispatch_attempts) == ("failed", 3)
        assert "could not be dispatched in 2 runs" in job.error
    assert {r.status for r in recipients(job_id)} == {"permanently_failed"}


def test_the_sweeper_leaves_queued_batches_alone_while_the_broker_still_holds_messages(smtp_env, tmp_path, monkeypatch):
    from backend.core.settings import get_settings
    from backend.delivery.sweeper import sweep

    monkeypatch.setenv("MANI_REQUEUE_AFTER_SECONDS", "1")
    reset_settings_cache()
    job_id = submit(write_csv(tmp_path / "u.csv", people(30)))
    with session_scope() as session:
        batch_ids = engine.dispatch_job(session=session, job_id=job_id).batch_ids
        session.execute(update(Batch).where(Batch.id.in_(batch_ids)).values(enqueued_at=utcnow() - timedelta(seconds=5)))
    with session_scope() as session:
        assert sweep(session=session, settings=get_settings(), send_queue_empty=False).batch_ids == []
    with session_scope() as session:
        assert sweep(session=session, settings=get_settings(), send_queue_empty=True).batch_ids == batch_ids
