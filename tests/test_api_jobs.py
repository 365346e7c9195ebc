"""POST /api/v1/jobs with the seed's own Job JSON, over a real socket (uvicorn in a thread)."""

from __future__ import annotations

import copy
import json

import httpx
import pytest
from sqlmodel import select

from api.app import create_app
from api.common import ApiConfig
from backend.moodle import tokens
from models import AuditEntry, Job, Recipient
from models.db import session_scope
from tests.support.callbacks import add_company

pytestmark = pytest.mark.usefixtures("cb_db")

# The seed's "Job JSON Example" (seed 000), verbatim.
SEED_JOB = json.loads("""
{
  "job_id": "550e8400-e29b-41d4-a716-446655440000",
  "tenant_id": 123,
  "type": "send_reminder",
  "courseid": 101,
  "created_by": 50,
  "recipients": [
    {"userid": 1001, "email": "user1@example.com", "firstname": "John", "lastname": "Doe"},
    {"userid": 1002, "email": "user2@example.com", "firstname": "Jane", "lastname": "Smith"}
  ],
  "template_id": "course_completion_reminder",
  "template_data": {
    "course_name": "Introduction to PHP",
    "course_url": "https://yourmoodle.com/course/view.php?id=101",
    "due_date": "2025-12-31",
    "completion_percentage": 45
  },
  "generate_certificate": true,
  "certificate_template": "default",
  "callback_url": "https://yourmoodle.com/local/manireports/ui/ajax/cloud_callback.php",
  "callback_secret": "hmac_secret_key",
  "timestamp": "2025-11-18T12:00:00Z"
}
""")


def _token(company_id: str) -> str:
    with session_scope() as session:
        return tokens.issue_token(session=session, company_id=company_id, actor="test", source="cli").token


@pytest.fixture
def api(serve_app):
    add_company("123")
    add_company("456")
    url = serve_app(create_app(config=ApiConfig(max_job_body=1024 * 1024)))
    with httpx.Client(base_url=url, timeout=60) as client:
        client.headers["Authorization"] = f"Bearer {_token('123')}"
        yield client


def _audit(action: str) -> list[AuditEntry]:
    with session_scope() as session:
        return list(session.exec(select(AuditEntry).where(AuditEntry.action == action)).all())


def _seed_job(**changes) -> dict:
    job = copy.deepcopy(SEED_JOB)
    job.update(changes)
    return job


def test_the_seed_example_is_accepted(api):
    answer = api.post("/api/v1/jobs", json=SEED_JOB)
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert body["job_id"] == SEED_JOB["job_id"] and body["accepted"] == 2 and body["existing"] is False
    with session_scope() as session:
        job = session.exec(select(Job).where(Job.uuid == SEED_JOB["job_id"])).one()
        assert (job.type, job.company_id, job.source, job.action) == ("reminder", "123", "api", "both")
        assert job.callback_url == SEED_JOB["callback_url"] and job.template_id == "course_completion_reminder"
        assert job.template_data["course_name"] == "Introduction to PHP" and job.template_data["courseid"] == 101
        recipients = session.exec(select(Recipient).where(Recipient.job_id == job.id).order_by(Recipient.id)).all()
        assert [(r.userid, r.email, r.firstname) for r in recipients] == [
            ("1001", "user1@example.com", "John"), ("1002", "user2@example.com", "Jane")]
    [entry] = _audit("api.job.create")
    assert entry.actor == "api:123" and entry.address == "127.0.0.1" and entry.target == SEED_JOB["job_id"]
    assert "hmac_secret_key" not in json.dumps(entry.details)


def test_the_same_job_id_twice_answers_the_existing_job(api):
    first = api.post("/api/v1/jobs", json=SEED_JOB)
    second = api.post("/api/v1/jobs", json=SEED_JOB)
    assert first.status_code == 202 and second.status_code == 200
    assert second.json()["existing"] is True and second.json()["id"] == first.json()["id"]
    with session_scope() as session:
        assert len(session.exec(select(Job)).all()) == 1
        assert len(session.exec(select(Recipient)).all()) == 2


def test_a_bad_token_is_401_and_audited(api):
    for header in ("Bearer mani_not-a-token", "Basic abc", None):
        headers = {"Authorization": header} if header else {}
        answer = httpx.post(f"{api.base_url}/api/v1/jobs", json=SEED_JOB, headers=headers)
        assert answer.status_code == 401
    entries = _audit("api.job.rejected")
    assert len(entries) == 3 and all(e.details["status"] == 401 and e.address == "127.0.0.1" for e in entries)
    with session_scope() as session:
        assert session.exec(select(Job)).all() == []


def test_a_revoked_token_stops_working(api):
    with session_scope() as session:
        issued = tokens.issue_token(session=session, company_id="123", actor="t", source="cli")
        tokens.revoke_token(session=session, token_id=issued.id, actor="t", source="cli")
    answer = httpx.post(f"{api.base_url}/api/v1/jobs", json=SEED_JOB,
                        headers={"Authorization": f"Bearer {issued.token}"})
    assert answer.status_code == 401


def test_a_token_only_submits_for_its_own_company(api):
    answer = api.post("/api/v1/jobs", json=_seed_job(tenant_id=456))
    assert answer.status_code == 403 and answer.json()["error"] == "wrong_tenant"
    # And another company cannot learn about or take over a job id already used.
    assert api.post("/api/v1/jobs", json=SEED_JOB).status_code == 202
    other = httpx.post(f"{api.base_url}/api/v1/jobs", json=_seed_job(tenant_id=456),
                       headers={"Authorization": f"Bearer {_token('456')}"})
    assert other.status_code == 409 and "550e8400" not in other.text


def test_malformed_json_is_400(api):
    for body in (b'{"job_id": ', b"[1, 2]", b"\xff\xfe"):
        answer = api.post("/api/v1/jobs", content=body, headers={"Content-Type": "application/json"})
        assert answer.status_code == 400 and answer.json()["error"] == "malformed_json"


@pytest.mark.parametrize("missing", ["job_id", "tenant_id", "type", "recipients"])
def test_a_missing_field_is_422_naming_it(api, missing):
    job = _seed_job()
    del job[missing]
    answer = api.post("/api/v1/jobs", json=job)
    assert answer.status_code == 422
    assert any(e["field"] == missing for e in answer.json()["errors"])


def test_a_bad_email_at_index_3_is_422_naming_index_3_and_nothing_is_created(api):
    recipients = [{"userid": 2000 + i, "email": f"u{i}@example.com"} for i in range(6)]
    recipients[3]["email"] = "not-an-address"
    answer = api.post("/api/v1/jobs", json=_seed_job(recipients=recipients))
    assert answer.status_code == 422
    assert [e["field"] for e in answer.json()["errors"]] == ["recipients[3].email"]
    with session_scope() as session:
        assert session.exec(select(Job)).all() == []
    [entry] = _audit("api.job.rejected")
    assert entry.details["errors"][0]["field"] == "recipients[3].email" and entry.target == SEED_JOB["job_id"]


def test_every_bad_field_and_recipient_is_named(api):
    recipients = [{"userid": 1, "email": "a@example.com"}, "junk", {"userid": 3, "email": "a@example.com"},
                  {"userid": 4}]
    job = _seed_job(job_id="nope", type="FAX", timestamp="yesterday", callback_url="ftp://x", recipients=recipients)
    fields = {e["field"] for e in api.post("/api/v1/jobs", json=job).json()["errors"]}
    assert fields == {"job_id", "type", "timestamp", "callback_url", "recipients[1]", "recipients[2].email",
                      "recipients[3].email"}


@pytest.mark.parametrize("name,job_type,action", [
    ("send_reminder", "reminder", "email"), ("EMAIL_WELCOME_STD", "welcome_std", "email"),
    ("EMAIL_WELCOME_LIC", "welcome_lic", "email"), ("EMAIL_REENGAGEMENT", "reengagement", "email"),
    ("csv_import", "welcome_std", "email"), ("license_allocation", "welcome_lic", "email"),
    ("reengagement", "reengagement", "email"), ("reminder", "reminder", "email"),
])
def test_the_seeds_type_names_map_to_mani_types(name, job_type, action):
    from backend.jobs.job_json import parse_job_request

    request = parse_job_request(_seed_job(type=name, generate_certificate=False), max_field_length=1000)
    assert (request.job_type, request.action) == (job_type, action)


def test_certificate_types_and_timestamps():
    from backend.jobs.job_json import parse_job_request, parse_timestamp

    assert parse_job_request(_seed_job(type="CERTIFICATE"), max_field_length=1000).action == "both"
    assert parse_job_request(_seed_job(type="CERTIFICATE_GEN"), max_field_length=1000).action == "certificate"
    assert parse_timestamp("2025-11-18T12:00:00Z") == parse_timestamp(1763467200) == parse_timestamp("1763467200")


def test_an_oversized_body_is_413(api):
    big = _seed_job(recipients=[{"userid": i, "email": f"user{i}@example.com", "note": "x" * 200}
                                for i in range(6000)])
    answer = api.post("/api/v1/jobs", content=json.dumps(big).encode(), headers={"Content-Type": "application/json"})
    assert answer.status_code == 413
    assert _audit("api.job.rejected")[0].details["status"] == 413


def test_an_oversized_body_without_a_length_is_counted_as_it_streams(api):
    def chunks():
        for _ in range(40):
            yield b" " * 65536

    answer = api.post("/api/v1/jobs", content=chunks(), headers={"Content-Type": "application/json"})
    assert answer.status_code == 413


def test_job_status_is_readable_by_its_own_company_only(api):
    api.post("/api/v1/jobs", json=SEED_JOB)
    answer = api.get(f"/api/v1/jobs/{SEED_JOB['job_id']}")
    assert answer.status_code == 200 and answer.json()["total"] == 2 and answer.json()["callbacks"]["total"] == 0
    other = httpx.get(f"{api.base_url}/api/v1/jobs/{SEED_JOB['job_id']}",
                      headers={"Authorization": f"Bearer {_token('456')}"})
    assert other.status_code == 404


def test_a_large_job_is_accepted_within_the_limit(serve_app):
    add_company("123")
    url = serve_app(create_app(config=ApiConfig()))
    recipients = [{"userid": i, "email": f"user{i}@example.com", "firstname": "A", "lastname": "B"}
                  for i in range(5000)]
    answer = httpx.post(f"{url}/api/v1/jobs", json=_seed_job(recipients=recipients, generate_certificate=False),
                        headers={"Authorization": f"Bearer {_token('123')}"}, timeout=120)
    assert answer.status_code == 202 and answer.json()["accepted"] == 5000
