"""POST /api/v1/callbacks: an external worker's signed status updates (seed 000, Phase 4.4)."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from sqlmodel import select

from api.app import create_app
from api.common import ApiConfig
from backend.moodle import signing
from models import AuditEntry, Job, Recipient
from models.callbacks import CallbackDelivery
from models.db import session_scope
from tests.support.callbacks import SECRET, WORKER_SECRET, add_company, make_job

pytestmark = pytest.mark.usefixtures("cb_db")


@pytest.fixture
def setup(serve_app):
    add_company("c1", callback_url="http://127.0.0.1:9/moodle")
    job_id = make_job(company_id="c1", recipients=3, recipient_status="processing")
    with session_scope() as session:
        job_uuid = session.get(Job, job_id).uuid
    url = serve_app(create_app(config=ApiConfig()))
    with httpx.Client(base_url=url, timeout=30) as client:
        yield client, job_id, job_uuid


def _payload(job_uuid: str, **changes) -> dict:
    payload = {"job_id": job_uuid, "recipient_updates": [
        {"userid": 1000, "status": "completed", "certificate_url": "https://s3.example/cert-1000.pdf?sig",
         "timesent": 1700308800},
        {"userid": 1001, "status": "failed", "error_message": "Email bounce: Invalid address", "attempts": 3},
    ], "timestamp": int(time.time())}
    payload.update(changes)
    return payload


def _post(client, body: bytes, secret: str = WORKER_SECRET, signature: str | None = None):
    return client.post("/api/v1/callbacks", content=body,
                       headers={"Content-Type": "application/json",
                                "X-Signature": signature or signing.sign(body, secret)})


def _statuses(job_id: int) -> dict:
    with session_scope() as session:
        rows = session.exec(select(Recipient).where(Recipient.job_id == job_id).order_by(Recipient.id)).all()
        return {r.userid: (r.status, r.last_error, r.attempts, r.certificate_url) for r in rows}


def _rejections() -> list[AuditEntry]:
    with session_scope() as session:
        return list(session.exec(select(AuditEntry).where(AuditEntry.action == "api.callback.rejected")).all())


def test_a_valid_callback_is_applied_and_forwarded_to_moodle(setup):
    client, job_id, job_uuid = setup
    answer = _post(client, json.dumps(_payload(job_uuid)).encode())
    assert answer.status_code == 200, answer.text
    assert answer.json()["applied"] == 2 and answer.json()["open"] == 1
    statuses = _statuses(job_id)
    assert statuses["1000"] == ("sent", None, 0, "https://s3.example/cert-1000.pdf?sig")
    assert statuses["1001"] == ("permanently_failed", "Email bounce: Invalid address", 3, None)
    assert statuses["1002"][0] == "processing"
    with session_scope() as session:
        job = session.get(Job, job_id)
        assert (job.sent_count, job.failed_count) == (1, 1)
        [delivery] = session.exec(select(CallbackDelivery).where(CallbackDelivery.job_id == job_id)).all()
        assert delivery.kind == "updates" and len(delivery.recipient_ids) == 2
        accepted = session.exec(select(AuditEntry).where(AuditEntry.action == "api.callback.accepted")).one()
        assert accepted.address == "127.0.0.1" and accepted.target == job_uuid


def test_a_tampered_body_is_401_and_audited(setup):
    client, job_id, job_uuid = setup
    body = json.dumps(_payload(job_uuid)).encode()
    answer = _post(client, body.replace(b"completed", b"failed"), signature=signing.sign(body, WORKER_SECRET))
    assert answer.status_code == 401 and answer.json()["error"] == "bad_signature"
    assert _statuses(job_id)["1000"][0] == "processing"
    [entry] = _rejections()
    assert entry.details["status"] == 401 and entry.address == "127.0.0.1"


def test_a_wrong_secret_is_401(setup):
    client, _, job_uuid = setup
    answer = _post(client, json.dumps(_payload(job_uuid)).encode(), secret="not the secret")
    assert answer.status_code == 401 and len(_rejections()) == 1


def test_a_stale_timestamp_is_401(setup):
    client, job_id, job_uuid = setup
    for stamp in (int(time.time()) - 301, int(time.time()) + 400):
        answer = _post(client, json.dumps(_payload(job_uuid, timestamp=stamp)).encode())
        assert answer.status_code == 401 and answer.json()["error"] == "stale_timestamp"
    assert _statuses(job_id)["1000"][0] == "processing"


def test_a_replay_inside_the_window_is_refused(setup):
    client, _, job_uuid = setup
    body = json.dumps(_payload(job_uuid)).encode()
    assert _post(client, body).status_code == 200
    again = _post(client, body)
    assert again.status_code == 409 and again.json()["error"] == "replay"
    assert _rejections()[0].details["status"] == 409


def test_unknown_job_bad_updates_and_malformed_bodies(setup):
    client, _, job_uuid = setup
    from backend.companies.store import set_global_settings

    with session_scope() as session:
        set_global_settings(session=session, values={"cloud_callback_secret": "global"}, actor="t", source="cli")
    unknown = json.dumps(_payload("00000000-0000-0000-0000-000000000000")).encode()
    assert _post(client, unknown, secret="global").status_code == 404
    assert _post(client, unknown, secret=SECRET).status_code == 401
    bad = _payload(job_uuid, recipient_updates=[{"userid": 1000, "status": "exploded"}, {"status": "completed"}])
    answer = _post(client, json.dumps(bad).encode())
    assert answer.status_code == 422
    assert [e["field"] for e in answer.json()["errors"]] == ["recipient_updates[0].status",
                                                              "recipient_updates[1].userid"]
    assert _post(client, b"not json").status_code == 401  # signed with the wrong (global) secret
    assert _post(client, b"not json", secret="global").status_code == 400


def test_a_late_update_does_not_reopen_a_final_recipient_and_unknown_users_are_reported(setup):
    client, job_id, job_uuid = setup
    assert _post(client, json.dumps(_payload(job_uuid)).encode()).status_code == 200
    late = _payload(job_uuid, recipient_updates=[{"userid": 1000, "status": "processing"},
                                                 {"userid": 9999, "status": "completed"},
                                                 {"email": "USER2@example.com", "status": "completed"}])
    answer = _post(client, json.dumps(late).encode())
    assert answer.json()["unchanged"] == 1 and answer.json()["unknown"] == [9999] and answer.json()["open"] == 0
    assert _statuses(job_id)["1000"][0] == "sent" and _statuses(job_id)["1002"][0] == "sent"


def test_an_oversized_event_body_is_413_and_audited(serve_app):
    url = serve_app(create_app(config=ApiConfig(max_event_body=1024)))
    answer = httpx.post(f"{url}/api/v1/callbacks", content=b"{" + b" " * 4096 + b"}",
                        headers={"X-Signature": "0" * 64})
    assert answer.status_code == 413
    assert _rejections()[0].details["status"] == 413
