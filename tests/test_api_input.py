"""No input makes `mani serve` answer 500, and an anonymous caller cannot make it read a body.

Each body here made the server fail before: deep nesting (RecursionError), NUL on PostgreSQL
(DataError), lone surrogates (UnicodeEncodeError), timesent 1e20 / NaN and attempts 10**30, a
Mailgun `message` that is a string."""

from __future__ import annotations

import copy
import json
import socket
import time

import httpx
import pytest
from sqlmodel import select

from api.app import create_app
from api.common import ApiConfig
from backend.moodle import signing, tokens
from models import AuditEntry, Job, Recipient
from models.db import session_scope
from tests.support.callbacks import SECRET, WORKER_SECRET, add_company, make_job

pytestmark = pytest.mark.usefixtures("cb_db")

JOB = {"job_id": "550e8400-e29b-41d4-a716-446655440000", "tenant_id": 123, "type": "send_reminder",
       "recipients": [{"userid": 1001, "email": "user1@example.com", "firstname": "John", "lastname": "Doe"}],
       "template_data": {"course_name": "PHP", "due_date": "2025-12-31"}}
DEEP = b"[" * 100_000


def _token(company_id: str) -> str:
    with session_scope() as session:
        return tokens.issue_token(session=session, company_id=company_id, actor="test", source="cli").token


@pytest.fixture
def world(serve_app):
    add_company("123", callback_url="http://127.0.0.1:9/moodle")
    job_id = make_job(company_id="123", recipients=2, recipient_status="processing")
    with session_scope() as session:
        job_uuid = session.get(Job, job_id).uuid
    url = serve_app(create_app(config=ApiConfig()))
    with httpx.Client(base_url=url, timeout=60) as client:
        yield {"client": client, "url": url, "token": _token("123"), "job_id": job_id, "job_uuid": job_uuid}


def _job(**recipient_changes) -> dict:
    job = copy.deepcopy(JOB)
    job["recipients"][0].update(recipient_changes)
    return job


def _no_500(answer: httpx.Response) -> None:
    assert answer.status_code < 500, answer.text
    assert "Traceback" not in answer.text


def test_deep_nesting_is_400_on_every_json_endpoint(world):
    client = world["client"]
    signed = {"X-Signature": signing.sign(DEEP, WORKER_SECRET), "Content-Type": "application/json"}
    for path, headers in (("/api/v1/callbacks", signed), ("/webhooks/mailgun", {}), ("/webhooks/ses", {}),
                          ("/api/v1/jobs", {"Authorization": f"Bearer {world['token']}"})):
        answer = client.post(path, content=DEEP, headers=headers)
        _no_500(answer)
        assert answer.status_code in (400, 401), (path, answer.status_code)
    answer = client.post("/api/v1/jobs", content=DEEP, headers={"Authorization": f"Bearer {world['token']}"})
    assert answer.status_code == 400 and answer.json()["error"] == "malformed_json"


@pytest.mark.parametrize("value,problem", [("Jo\u0000hn", "NUL"), ("Jo\ud800hn", "surrogate")])
def test_nul_and_lone_surrogates_in_a_recipient_are_422_naming_the_field(world, value, problem):
    body = json.dumps(_job(firstname=value)).encode()  # json.dumps escapes both as \\uXXXX
    answer = world["client"].post("/api/v1/jobs", content=body,
                                  headers={"Authorization": f"Bearer {world['token']}"})
    assert answer.status_code == 422, answer.text
    assert answer.json()["errors"][0]["field"] == "recipients[0].firstname"
    assert problem in answer.json()["errors"][0]["message"]
    with session_scope() as session:
        assert session.exec(select(Job).where(Job.uuid == JOB["job_id"])).first() is None


def test_wrong_types_in_template_data_and_extra_fields_are_named(world):
    job = _job(note={"nested": True})
    job["template_data"]["course_name"] = ["a", "list"]
    answer = world["client"].post("/api/v1/jobs", json=job, headers={"Authorization": f"Bearer {world['token']}"})
    assert answer.status_code == 422
    fields = {e["field"] for e in answer.json()["errors"]}
    assert {"recipients[0].note", "template_data.course_name"} <= fields


def _signed_callback(client, payload: dict | bytes):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return client.post("/api/v1/callbacks", content=body,
                       headers={"Content-Type": "application/json", "X-Signature": signing.sign(body, WORKER_SECRET)})


@pytest.mark.parametrize("change,field", [
    ({"timesent": 1e20}, "recipient_updates[0].timesent"),
    ({"attempts": 10**30}, "recipient_updates[0].attempts"),
    ({"attempts": 10**18}, "recipient_updates[0].attempts"),
    ({"error_message": "bad\u0000"}, "recipient_updates[0].error_message"),
    ({"certificate_url": "\udfff"}, "recipient_updates[0].certificate_url"),
    ({"status": ["sent"]}, "recipient_updates[0].status"),
])
def test_out_of_range_numbers_and_bad_text_in_a_callback_are_422(world, change, field):
    update = {"userid": 1000, "status": "completed", **change}
    answer = _signed_callback(world["client"], {"job_id": world["job_uuid"], "recipient_updates": [update],
                                                "timestamp": int(time.time())})
    assert answer.status_code == 422, answer.text
    assert field in {e["field"] for e in answer.json()["errors"]}
    with session_scope() as session:
        assert {r.status for r in session.exec(select(Recipient)).all()} == {"processing"}


def test_nan_in_a_signed_callback_is_400(world):
    body = ('{"job_id": "%s", "recipient_updates": [{"userid": 1000, "status": "completed", "timesent": NaN}],'
            ' "timestamp": %d}' % (world["job_uuid"], time.time())).encode()
    answer = _signed_callback(world["client"], body)
    assert answer.status_code == 400 and answer.json()["error"] == "malformed_json"


def test_a_mailgun_message_that_is_a_string_is_422(world):
    payload = {"signature": {"timestamp": str(int(time.time())), "token": "t" * 50, "signature": "0" * 64},
               "event-data": {"event": "failed", "message": "not an object"}}
    answer = world["client"].post("/webhooks/mailgun", json=payload)
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["field"] == "event-data.message"


def test_an_unexpected_error_is_a_500_with_a_request_id_audited_and_no_traceback(world, monkeypatch):
    import api.verify

    def explode(code: str) -> dict:
        raise RuntimeError("internal detail that must not leak")

    monkeypatch.setattr(api.verify, "_lookup", explode)
    answer = world["client"].get("/verify/ABCD-EFGH")
    assert answer.status_code == 500
    request_id = answer.json()["request_id"]
    assert answer.headers["x-request-id"] == request_id
    assert "internal detail" not in answer.text and "Traceback" not in answer.text
    with session_scope() as session:
        [entry] = session.exec(select(AuditEntry).where(AuditEntry.action == "api.error")).all()
    assert entry.target == f"request:{request_id}" and entry.details["error"] == "RuntimeError"
    ok = world["client"].get("/healthz")
    assert ok.headers["x-request-id"] and ok.headers["x-request-id"] != request_id


def _answer_without_sending_the_body(url: str, path: str, headers: dict) -> bytes:
    """Send only the headers of a 63 MB POST; the answer must come without the body being sent."""
    host, port = url.removeprefix("http://").split(":")
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", "Content-Type: application/json",
             f"Content-Length: {63 * 1024 * 1024}"] + [f"{k}: {v}" for k, v in headers.items()]
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        return connection.recv(65536)


def test_callers_are_refused_before_their_body_is_read(world):
    url = world["url"]
    assert _answer_without_sending_the_body(url, "/api/v1/jobs", {}).startswith(b"HTTP/1.1 401")
    assert _answer_without_sending_the_body(url, "/api/v1/jobs", {"Authorization": "Bearer nope"}).startswith(
        b"HTTP/1.1 401")
    assert _answer_without_sending_the_body(url, "/api/v1/callbacks", {}).startswith(b"HTTP/1.1 401")
    assert _answer_without_sending_the_body(url, "/api/v1/callbacks", {"X-Signature": "abc"}).startswith(
        b"HTTP/1.1 401")
    # Webhooks carry their signature inside the body: they are refused by size, from the header.
    assert _answer_without_sending_the_body(url, "/webhooks/mailgun", {}).startswith(b"HTTP/1.1 413")
    assert _answer_without_sending_the_body(url, "/webhooks/ses", {}).startswith(b"HTTP/1.1 413")
