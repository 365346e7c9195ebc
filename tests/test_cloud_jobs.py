"""A whole job per cloud provider, routed by company settings, against real local servers."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select

from backend.companies.service import add_company
from backend.companies.store import set_company_settings
from backend.core.settings import reset_settings_cache
from models import Job, Recipient
from models.db import session_scope
from tests.support.engine import people, run_inline, submit, write_csv

SENDER = "noreply@mani.test"


@pytest.fixture
def keyed(any_db, monkeypatch):
    monkeypatch.setenv("MANI_SECRET_KEY", Fernet.generate_key().decode())
    monkeypatch.setenv("MANI_RETRY_SCHEDULE", "0,0")
    reset_settings_cache()


def company(values: dict) -> None:
    with session_scope() as session:
        add_company(session=session, company_id="acme", name="Acme Training", actor="t", source="test")
    with session_scope() as session:
        set_company_settings(session=session, company_id="acme", actor="t", source="test", values={
            "enabled": "true", "threshold": "100", "sender": SENDER, **values})


def run_job(tmp_path, count: int) -> tuple[Job, list[Recipient]]:
    job_id = submit(write_csv(tmp_path / "u.csv", people(count)), company_id="acme")
    job = run_inline(job_id)
    with session_scope() as session:
        rows = list(session.execute(select(Recipient).where(Recipient.job_id == job_id)).scalars())
    return job, rows


def check_deliveries(server, job: Job, rows: list[Recipient], count: int) -> None:
    assert (job.status, job.route, job.sent_count) == ("completed", "cloud", count)
    assert "acme" in job.route_reason and job.provider in job.route_reason
    by_to = {d.to: d for d in server.deliveries}
    assert len(server.deliveries) == len(by_to) == count
    for i in range(count):
        delivery = by_to[f"user{i}@example.com"]
        # Each recipient got their own message: their username and temporary password, no one else's.
        assert f"user{i}" in delivery.text and f"Tmp-{i:05d}!x" in delivery.text
    assert all(r.external_id for r in rows) and {r.attempts for r in rows} == {1}


def test_mailgun_job_in_batches_of_200_with_recipient_variables(keyed, mailgun_server, tmp_path):
    company({"email_provider": "mailgun", "mailgun_domain": "mg.example.com",
             "mailgun_api_key": mailgun_server.api_key, "mailgun_api_url": mailgun_server.url})
    job, rows = run_job(tmp_path, 450)
    check_deliveries(mailgun_server, job, rows, 450)
    assert [call["count"] for call in mailgun_server.calls] == [200, 200, 50]
    assert mailgun_server.leaks == 0


def test_sendgrid_job_with_one_personalization_per_recipient(keyed, sendgrid_server, tmp_path):
    company({"email_provider": "sendgrid", "sendgrid_api_key": sendgrid_server.api_key,
             "sendgrid_api_url": sendgrid_server.url})
    job, rows = run_job(tmp_path, 450)
    check_deliveries(sendgrid_server, job, rows, 450)
    assert [call["count"] for call in sendgrid_server.calls] == [200, 200, 50]


def test_ses_job_sends_raw_mime_per_recipient(keyed, moto_server, tmp_path):
    moto_server.verify("mani.test")
    company({"email_provider": "ses", "aws_region": "us-east-1", "aws_access_key_id": "AKIDTEST",
             "aws_secret_access_key": "secret-test-key", "ses_endpoint_url": moto_server.url})
    job, rows = run_job(tmp_path, 120)
    check_deliveries(moto_server, job, rows, 120)
    assert all(d.raw and f"Message-ID: <mani.{job.uuid}." in d.raw.decode() for d in moto_server.deliveries)


def test_throttling_is_waited_out_without_using_attempts(keyed, mailgun_server, tmp_path):
    company({"email_provider": "mailgun", "mailgun_domain": "mg.example.com",
             "mailgun_api_key": mailgun_server.api_key, "mailgun_api_url": mailgun_server.url})
    mailgun_server.throttle(2, retry_after=1)
    job, rows = run_job(tmp_path, 250)
    assert mailgun_server.throttled == 2
    check_deliveries(mailgun_server, job, rows, 250)


def test_a_dead_cloud_endpoint_falls_back_to_the_local_path(keyed, dead_url, tmp_path):
    company({"email_provider": "mailgun", "mailgun_domain": "mg.example.com",
             "mailgun_api_key": "key-x", "mailgun_api_url": dead_url})
    job, rows = run_job(tmp_path, 120)
    assert (job.status, job.route, job.provider, job.sent_count) == ("completed", "local", "outbox", 120)
    assert "unreachable" in job.route_reason and "queue_local" in job.route_reason
