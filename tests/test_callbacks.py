"""Callbacks to Moodle: created with the status change, delivered signed, retried from the
database on a day-long schedule, and idempotent for the receiver."""

from __future__ import annotations

import json
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import update
from sqlmodel import select

from backend.jobs import queries
from backend.moodle import callbacks
from models import Batch, Job, Recipient, utcnow
from models.callbacks import CallbackAttempt, CallbackDelivery
from models.db import session_scope
from tests.support.receiver import Receiver
from tests.support.callbacks import SECRET, add_company, make_job, set_recipients

pytestmark = pytest.mark.usefixtures("cb_db")


class Clock:
    """A "now" the test moves forward instead of sleeping; the receiver reads the same clock."""

    def __init__(self) -> None:
        self.now = utcnow()

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    def timestamp(self) -> float:
        return self.now.timestamp()


def _batches(job_id: int) -> list[Batch]:
    with session_scope() as session:
        return list(session.exec(select(Batch).where(Batch.job_id == job_id).order_by(Batch.number)).all())


def _finish_batches(job_id: int) -> list[int]:
    ids = []
    with session_scope() as session:
        for batch in session.exec(select(Batch).where(Batch.job_id == job_id).order_by(Batch.number)).all():
            ids += callbacks.on_batch_finished(session=session, batch=batch)
    return ids


def _finish_job(job_id: int, status: str = "completed") -> list[int]:
    with session_scope() as session:
        job = session.get(Job, job_id)
        job.status = status
        session.add(job)
        return callbacks.on_job_finished(session=session, job=job)


def _deliver(delivery_id: int, clock: Clock | None = None) -> callbacks.DeliveryOutcome:
    with session_scope() as session, httpx.Client() as client:
        return callbacks.deliver(session=session, delivery_id=delivery_id, http_client=client,
                                 now=clock.now if clock else None)


def _delivery(delivery_id: int) -> CallbackDelivery:
    with session_scope() as session:
        return session.get(CallbackDelivery, delivery_id)


def test_no_callback_url_means_no_delivery():
    add_company("c1", callback_url=None)
    job_id = make_job(company_id="c1")
    assert _finish_batches(job_id) == [] and _finish_job(job_id) == []


def test_one_delivery_per_batch_and_one_final_never_one_per_recipient():
    with Receiver(SECRET) as receiver:
        add_company("c1", callback_url=receiver.url)
        job_id = make_job(company_id="c1", recipients=450, batch_size=200)
        set_recipients(job_id, status="sent", sent_at=utcnow())
        batch_ids = _finish_batches(job_id)
        final_ids = _finish_job(job_id)
        assert len(batch_ids) == 3 and len(final_ids) == 1
        for delivery_id in batch_ids + final_ids:
            assert _deliver(delivery_id).result == "delivered"
        assert len(receiver.accepted) == 4
        assert len(receiver.statuses) == 450 and set(receiver.statuses.values()) == {"completed"}
        with session_scope() as session:
            job_uuid = session.get(Job, job_id).uuid
        assert receiver.job_statuses == {job_uuid: "completed"}


def test_the_body_is_the_seeds_callback_json():
    with Receiver(SECRET) as receiver:
        add_company("c1", callback_url=receiver.url)
        job_id = make_job(company_id="c1", recipients=2)
        sent_at = utcnow().replace(microsecond=0)
        set_recipients(job_id, status="sent", sent_at=sent_at, attempts=1)
        with session_scope() as session:
            first = session.exec(select(Recipient).where(Recipient.job_id == job_id).order_by(Recipient.id)).first()
            first.status, first.last_error, first.sent_at, first.attempts = "permanently_failed", "550 no such user", None, 3
            first.certificate_url = None
            session.add(first)
        [delivery_id] = _finish_batches(job_id)
        assert _deliver(delivery_id).result == "delivered"
        payload = receiver.accepted[0].payload
        assert set(payload) >= {"job_id", "recipient_updates", "timestamp"}
        assert isinstance(payload["timestamp"], int)
        failed, sent = payload["recipient_updates"]
        assert failed == {"userid": 1000, "status": "failed", "mani_status": "permanently_failed",
                          "certificate_url": None, "timesent": None, "error_message": "550 no such user",
                          "attempts": 3}
        assert sent["status"] == "completed" and sent["timesent"] == int(sent_at.timestamp())
        assert sent["error_message"] is None and sent["userid"] == 1001
        # The signature is over exactly the bytes that arrived.
        raw = receiver.accepted[0].body
        assert json.loads(raw) == payload


def test_retry_schedule_spans_a_day_then_the_delivery_is_dead():
    clock = Clock()
    with Receiver(SECRET, clock=clock.timestamp) as receiver:
        add_company("c1", callback_url=receiver.url)
        job_id = make_job(company_id="c1", recipients=3)
        set_recipients(job_id, status="sent", sent_at=utcnow())
        [delivery_id] = _finish_batches(job_id)
        receiver.fail_next(100, "500")
        waits = []
        outcome = _deliver(delivery_id, clock)
        while outcome.result == "retry":
            wait = (outcome.next_attempt_at - clock.now).total_seconds()
            waits.append(wait)
            clock.advance(wait - 3)
            assert _deliver(delivery_id, clock).result == "skipped"  # not due yet
            clock.advance(3)
            outcome = _deliver(delivery_id, clock)
        assert waits == [5, 30, 120, 600, 3600, 21600, 86400]
        assert outcome.result == "failed"
        delivery = _delivery(delivery_id)
        assert (delivery.status, delivery.attempts, delivery.next_attempt_at) == ("failed", 8, None)
        with session_scope() as session:
            _, attempts = queries.delivery_log(session=session, delivery_id=delivery_id)
        assert [a.status_code for a in attempts] == [500] * 8 and all(a.error == "HTTP 500" for a in attempts)
        # Each attempt was stamped with its own time, so each passed the 300 s window.
        assert [a.body_timestamp for a in attempts] == sorted(a.body_timestamp for a in attempts)
        assert all(r.code == 500 for r in receiver.received)

        # An admin replays it a day later: a fresh stamp, accepted.
        clock.advance(86400)
        receiver.fail_next(0)
        receiver._failures.clear()
        with session_scope() as session:
            callbacks.redeliver(session=session, delivery_ids=[delivery_id], actor="admin", source="cli", now=clock.now)
        assert _deliver(delivery_id, clock).result == "delivered"
        assert receiver.accepted[-1].payload["timestamp"] == int(clock.timestamp())
        assert _delivery(delivery_id).status == "delivered"


def test_receiver_down_then_up_everything_arrives_and_nothing_changes_twice():
    clock = Clock()
    receiver = Receiver(SECRET, clock=clock.timestamp).start()
    try:
        add_company("c1", callback_url=receiver.url)
        job_id = make_job(company_id="c1", recipients=30, batch_size=10)
        set_recipients(job_id, status="sent", sent_at=utcnow())
        ids = _finish_batches(job_id) + _finish_job(job_id)
        receiver.down()
        for delivery_id in ids:
            outcome = _deliver(delivery_id, clock)
            assert outcome.result == "retry" and "ConnectError" in outcome.error
        receiver.fail_next(2, "reset")
        receiver.up()
        for _ in range(4):  # 5 s, 30 s, 2 min, 10 min later: the sweeper finds what is due
            clock.advance(600)
            with session_scope() as session:
                due = callbacks.due_deliveries(session=session, now=clock.now)
            for delivery_id in due:
                _deliver(delivery_id, clock)
        with session_scope() as session:
            stats = queries.callback_stats(session=session, job_id=job_id)
        assert (stats.delivered, stats.total, stats.delivered_share) == (4, 4, 1.0)
        assert len(receiver.statuses) == 30 and set(receiver.statuses.values()) == {"completed"}
        before = dict(receiver.statuses)
        # Redeliver everything: the receiver's result does not change.
        with session_scope() as session:
            callbacks.redeliver(session=session, delivery_ids=ids, actor="admin", source="cli", now=clock.now)
        for delivery_id in ids:
            assert _deliver(delivery_id, clock).result == "delivered"
        assert receiver.statuses == before
    finally:
        receiver.down()


def test_a_late_retry_never_reports_an_older_status():
    clock = Clock()
    with Receiver(SECRET, clock=clock.timestamp) as receiver:
        add_company("c1", callback_url=receiver.url)
        job_id = make_job(company_id="c1", recipients=3)
        set_recipients(job_id, status="permanently_failed", error="421 try later")
        [batch_delivery] = _finish_batches(job_id)
        receiver.fail_next(1)
        assert _deliver(batch_delivery, clock).result == "retry"
        # Meanwhile an admin retry sends them, and that batch's new callback arrives first.
        set_recipients(job_id, status="sent", sent_at=utcnow())
        [second] = _finish_batches(job_id)
        assert _deliver(second, clock).result == "delivered"
        clock.advance(5)
        assert _deliver(batch_delivery, clock).result == "delivered"
        assert set(receiver.statuses.values()) == {"completed"}


def test_the_final_callback_reports_recipients_no_batch_callback_covered():
    with Receiver(SECRET) as receiver:
        add_company("c1", callback_url=receiver.url)
        job_id = make_job(company_id="c1", recipients=25, batch_size=10)
        set_recipients(job_id, status="sent", sent_at=utcnow())
        with session_scope() as session:
            first = session.exec(select(Batch).where(Batch.job_id == job_id, Batch.number == 1)).one()
            callbacks.on_batch_finished(session=session, batch=first)
            session.execute(update(Recipient).where(Recipient.job_id == job_id, Recipient.batch_id != first.id)
                            .values(status="cancelled", sent_at=None))
        final_ids = _finish_job(job_id, status="cancelled")
        assert len(final_ids) == 1
        assert len(_delivery(final_ids[0]).recipient_ids) == 15
        _deliver(final_ids[0])
        payload = receiver.accepted[-1].payload
        assert payload["final"] is True and payload["mani_status"] == "cancelled" and payload["status"] == "failed"
        assert {u["mani_status"] for u in payload["recipient_updates"]} == {"cancelled"}


def test_big_deliveries_are_split(monkeypatch):
    monkeypatch.setenv("MANI_CALLBACK_MAX_UPDATES", "7")
    from backend.core.settings import reset_settings_cache

    reset_settings_cache()
    add_company("c1", callback_url="http://127.0.0.1:9/cb")
    job_id = make_job(company_id="c1", recipients=20, batch_size=20)
    ids = _finish_batches(job_id)
    assert [len(_delivery(i).recipient_ids) for i in ids] == [7, 7, 6]


def test_job_callback_url_wins_and_the_global_secret_signs_without_a_company(monkeypatch):
    from backend.companies.store import set_global_settings

    with Receiver("global-secret") as receiver:
        with session_scope() as session:
            set_global_settings(session=session, values={"callback_secret": "global-secret"},
                                actor="test", source="cli")
        job_id = make_job(company_id=None, recipients=2, callback_url=receiver.url)
        [delivery_id] = _finish_batches(job_id)
        assert _deliver(delivery_id).result == "delivered"


def test_without_a_secret_the_attempt_fails_and_is_retried():
    add_company("c1", callback_url="http://127.0.0.1:9/cb", secret=None)
    job_id = make_job(company_id="c1", recipients=1)
    [delivery_id] = _finish_batches(job_id)
    outcome = _deliver(delivery_id)
    assert outcome.result == "retry" and "No callback secret" in outcome.error


def test_a_delivery_in_flight_is_not_taken_twice():
    add_company("c1", callback_url="http://127.0.0.1:9/cb")
    job_id = make_job(company_id="c1", recipients=1)
    [delivery_id] = _finish_batches(job_id)
    with session_scope() as session:
        assert callbacks._claim(session, delivery_id, utcnow())
    assert _deliver(delivery_id).result == "skipped"


def test_due_deliveries_are_found_once_per_grace_period():
    add_company("c1", callback_url="http://127.0.0.1:9/cb")
    job_id = make_job(company_id="c1", recipients=1)
    [delivery_id] = _finish_batches(job_id)
    now = utcnow()
    with session_scope() as session:
        assert callbacks.due_deliveries(session=session, now=now) == []  # just created: its message is on the way
    with session_scope() as session:
        assert callbacks.due_deliveries(session=session, now=now + timedelta(seconds=31)) == [delivery_id]
    with session_scope() as session:
        assert callbacks.due_deliveries(session=session, now=now + timedelta(seconds=40)) == []
    with session_scope() as session:
        assert callbacks.due_deliveries(session=session, now=now + timedelta(seconds=62)) == [delivery_id]


def test_changes_outside_batches_are_coalesced_into_one_request():
    add_company("c1", callback_url="http://127.0.0.1:9/cb")
    job_id = make_job(company_id="c1", recipients=5)
    with session_scope() as session:
        job = session.get(Job, job_id)
        rids = list(session.exec(select(Recipient.id).where(Recipient.job_id == job_id).order_by(Recipient.id)))
        first = callbacks.on_recipients_changed(session=session, job=job, recipient_ids=[rids[0]])
        second = callbacks.on_recipients_changed(session=session, job=job, recipient_ids=[rids[1], rids[0]])
    assert first == second
    assert _delivery(first[0]).recipient_ids == rids[:2]


def test_list_show_and_stats():
    add_company("c1", callback_url="http://127.0.0.1:9/cb")
    job_id = make_job(company_id="c1", recipients=3)
    [delivery_id] = _finish_batches(job_id)
    _deliver(delivery_id)  # nothing listens on port 9: a retry
    with session_scope() as session:
        assert [d.id for d in queries.list_deliveries(session=session, job_id=job_id)] == [delivery_id]
        assert queries.list_deliveries(session=session, status="delivered") == []
        stats = queries.callback_stats(session=session, job_id=job_id)
        assert (stats.total, stats.pending, stats.delivered_share) == (1, 1, 0.0)
        attempt = session.exec(select(CallbackAttempt).where(CallbackAttempt.delivery_id == delivery_id)).one()
        assert attempt.status_code is None and attempt.error
        body = callbacks.build_payload(session=session, delivery=callbacks.get_delivery(session=session,
                                                                                      delivery_id=delivery_id))
        assert len(body["recipient_updates"]) == 3
