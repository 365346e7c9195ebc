"""mani's callbacks cannot come back into mani, and a worker's callback cannot re-open a final
recipient: the echo loop of issue 11 (skipped recipients turned `sent`, ~16 deliveries a second
to a job whose callback_url was mani's own /api/v1/callbacks)."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from sqlmodel import select

from api.app import create_app
from api.common import ApiConfig
from backend.companies.store import set_company_settings
from backend.moodle import callbacks, signing, tokens
from models import Job, Recipient
from models.callbacks import CallbackDelivery
from models.db import session_scope
from tests.support.callbacks import SECRET, WORKER_SECRET, add_company, make_job, set_recipients
from tests.support.receiver import Receiver

pytestmark = pytest.mark.usefixtures("cb_db")


@pytest.fixture
def world(serve_app):
    with Receiver(SECRET) as moodle:
        add_company("c1", callback_url=moodle.url)
        job_id = make_job(company_id="c1", recipients=10, recipient_status="processing")
        with session_scope() as session:
            job_uuid = session.get(Job, job_id).uuid
        url = serve_app(create_app(config=ApiConfig()))
        with httpx.Client(base_url=url, timeout=30) as client:
            yield {"client": client, "url": url, "moodle": moodle, "job_id": job_id, "job_uuid": job_uuid}


def _post(client, payload: dict, secret: str = WORKER_SECRET) -> httpx.Response:
    body = json.dumps({"timestamp": int(time.time()), **payload}).encode()
    return client.post("/api/v1/callbacks", content=body, headers={"X-Signature": signing.sign(body, secret)})


def _statuses(job_id: int) -> list[str]:
    with session_scope() as session:
        return [r.status for r in session.exec(select(Recipient).where(Recipient.job_id == job_id)
                                               .order_by(Recipient.id)).all()]


def _deliveries(job_id: int) -> list[CallbackDelivery]:
    with session_scope() as session:
        return list(session.exec(select(CallbackDelivery).where(CallbackDelivery.job_id == job_id)).all())


def _all_sent(job_uuid: str) -> dict:
    return {"job_id": job_uuid, "recipient_updates": [{"userid": 1000 + i, "status": "completed"} for i in range(10)]}


def test_a_captured_outgoing_callback_posted_back_is_refused(world):
    """The attack of the issue: ten skipped recipients, their batch callback replayed into mani."""
    job_id = world["job_id"]
    set_recipients(job_id, status="skipped")
    with session_scope() as session:
        from models import Batch

        batch = session.exec(select(Batch).where(Batch.job_id == job_id)).one()
        [delivery_id] = callbacks.on_batch_finished(session=session, batch=batch)
    with session_scope() as session, httpx.Client() as client:
        assert callbacks.deliver(session=session, delivery_id=delivery_id, http_client=client).result == "delivered"
    captured = world["moodle"].received[-1].body
    assert json.loads(captured)["source"] == "mani"
    # As Moodle got it: signed with the outbound key, which does not open the inbound door.
    answer = world["client"].post("/api/v1/callbacks", content=captured,
                                  headers={"X-Signature": signing.sign(captured, SECRET)})
    assert answer.status_code == 401
    # Even signed with the worker key, a body that says it is mani's is refused.
    answer = world["client"].post("/api/v1/callbacks", content=captured,
                                  headers={"X-Signature": signing.sign(captured, WORKER_SECRET)})
    assert answer.status_code == 403 and answer.json()["error"] == "own_callback"
    assert _statuses(job_id) == ["skipped"] * 10 and len(_deliveries(job_id)) == 1


def test_the_inbound_key_may_not_be_the_outbound_key(world):
    with session_scope() as session:
        set_company_settings(session=session, company_id="c1", values={"cloud_callback_secret": SECRET},
                             actor="t", source="cli")
    answer = _post(world["client"], _all_sent(world["job_uuid"]), secret=SECRET)
    assert answer.status_code == 401 and answer.json()["error"] == "same_key"
    assert set(_statuses(world["job_id"])) == {"processing"}


# `suppressed` is not a status in the store yet; LATER_EVENTS treats any status it does not name as final.
@pytest.mark.parametrize("final", ["skipped", "cancelled", "sent", "permanently_failed", "complained"])
def test_final_recipients_are_not_reopened_or_rewritten_and_nothing_is_forwarded(world, final):
    job_id = world["job_id"]
    set_recipients(job_id, status=final)
    other = "failed" if final == "sent" else "completed"
    updates = [{"userid": 1000 + i, "status": other if i % 2 else "processing"} for i in range(10)]
    answer = _post(world["client"], {"job_id": world["job_uuid"], "recipient_updates": updates})
    assert answer.status_code == 200, answer.text
    assert answer.json()["applied"] == 0 and answer.json()["unchanged"] == 10
    assert len(answer.json()["refused"]) == 10 and answer.json()["refused"][0]["from"] == final
    assert _statuses(job_id) == [final] * 10
    assert _deliveries(job_id) == []


def test_a_later_bounce_of_a_sent_recipient_is_legal(world):
    job_id = world["job_id"]
    set_recipients(job_id, status="sent")
    answer = _post(world["client"], {"job_id": world["job_uuid"],
                                     "recipient_updates": [{"userid": 1000, "status": "bounced"}]})
    assert answer.json()["applied"] == 1 and _statuses(job_id)[0] == "bounced"
    assert len(_deliveries(job_id)) == 1


def test_a_no_op_update_changes_nothing_and_makes_no_callback(world):
    job_id = world["job_id"]
    with session_scope() as session:
        before = session.get(Job, job_id).updated_at
    same = {"job_id": world["job_uuid"], "recipient_updates": [{"userid": 1000 + i, "status": "processing"}
                                                              for i in range(10)]}
    answer = _post(world["client"], same)
    assert answer.status_code == 200 and answer.json()["applied"] == 0 and answer.json()["unchanged"] == 10
    assert _deliveries(job_id) == []
    with session_scope() as session:
        assert session.get(Job, job_id).updated_at == before
    # The same report a second time (a fresh timestamp, so not a replay) is again a no-op.
    assert _post(world["client"], {**_all_sent(world["job_uuid"]), "batch": 1}).json()["applied"] == 10
    assert _post(world["client"], {**_all_sent(world["job_uuid"]), "batch": 2}).json()["applied"] == 0
    assert len(_deliveries(job_id)) == 1


def _token(company_id: str) -> str:
    with session_scope() as session:
        return tokens.issue_token(session=session, company_id=company_id, actor="test", source="cli").token


@pytest.mark.parametrize("where", ["host", "path"])
def test_a_callback_url_pointing_to_mani_itself_is_refused(world, where):
    url = f"{world['url']}/api/v1/status" if where == "host" else "https://mani.example.org/api/v1/callbacks"
    job = {"job_id": "6b0f1a52-3f57-4a43-9d2c-3d4f5e6a7b8c", "tenant_id": "c1", "type": "reminder",
           "recipients": [{"userid": 1, "email": "a@example.com"}], "callback_url": url,
           "template_data": {"course_name": "x", "due_date": "2025-12-31"}}
    answer = world["client"].post("/api/v1/jobs", json=job, headers={"Authorization": f"Bearer {_token('c1')}"})
    assert answer.status_code == 422
    assert answer.json()["errors"] == [{"field": "callback_url",
                                        "message": "must not point to mani itself (its callbacks would come back to it)"}]


def test_a_delivery_to_manis_own_endpoint_is_not_sent(world):
    job_id = make_job(company_id="c1", recipients=2, callback_url=world["url"] + "/api/v1/callbacks")
    with session_scope() as session:
        [delivery_id] = callbacks.on_recipients_changed(session=session, job=session.get(Job, job_id),
                                                        recipient_ids=[1, 2])
    with session_scope() as session, httpx.Client() as client:
        outcome = callbacks.deliver(session=session, delivery_id=delivery_id, http_client=client)
    assert outcome.result == "retry" and "mani's own endpoints" in outcome.error and outcome.status_code is None
