"""Routing: every cloud preference, every fallback, with real endpoints that answer or do not."""

from __future__ import annotations

import uuid

import pytest

from backend.companies.service import add_company
from backend.companies.store import set_company_settings, set_global_settings
from backend.delivery.routing import Route, RouteUnavailable, choose_route
from models import Job



def job(session, *, company: str | None = "acme", total: int = 5000, preference: str = "auto", action: str = "email") -> Job:
    row = Job(uuid=str(uuid.uuid4()), type="welcome_std", company_id=company, total=total,
              cloud_preference=preference, action=action)
    session.add(row)
    session.flush()
    return row


@pytest.fixture
def acme(session, mailgun_server):
    """A company whose cloud is enabled, on Mailgun (a live fake), threshold 1,000."""
    add_company(session=session, company_id="acme", name="Acme", actor="t", source="test")
    set_company_settings(session=session, company_id="acme", actor="t", source="test", values={
        "enabled": "true", "email_provider": "mailgun", "threshold": "1000", "mailgun_domain": "mg.example.com",
        "mailgun_api_key": mailgun_server.api_key, "mailgun_api_url": mailgun_server.url,
    })
    return "acme"


def company_set(session, **values):
    set_company_settings(session=session, company_id="acme", values=values, actor="t", source="test")


def global_set(session, **values):
    set_global_settings(session=session, values=values, actor="t", source="test")


def test_auto_at_or_over_threshold_goes_to_the_cloud(session, acme):
    route = choose_route(session=session, job=job(session, total=5000))
    assert route == Route("cloud", "mailgun", "company acme: cloud enabled, 5,000 ≥ threshold 1,000 -> mailgun")
    assert choose_route(session=session, job=job(session, total=1000)).route == "cloud"


def test_auto_under_threshold_disabled_or_switched_off_stays_local(session, acme):
    route = choose_route(session=session, job=job(session, total=999))
    assert route == Route("local", "outbox", "company acme: 999 < threshold 1,000 -> outbox")
    company_set(session, enabled="false")
    assert choose_route(session=session, job=job(session)).reason == "company acme: cloud not enabled -> outbox"
    company_set(session, enabled="true")
    global_set(session, cloud_offload_enabled="false")
    assert choose_route(session=session, job=job(session)).reason == "company acme: cloud offload is off globally -> outbox"


def test_local_path_is_the_global_provider(session, acme, monkeypatch):
    from backend.core.settings import reset_settings_cache

    monkeypatch.setenv("MANI_EMAIL_PROVIDER", "smtp")
    reset_settings_cache()
    assert choose_route(session=session, job=job(session, total=10)).provider == "smtp"
    global_set(session, email_provider="outbox")  # the database overrides the environment
    assert choose_route(session=session, job=job(session, total=10)).provider == "outbox"


def test_force_local_and_no_company(session, acme):
    assert choose_route(session=session, job=job(session, preference="force_local")) == Route(
        "local", "outbox", "job prefers local -> outbox"
    )
    assert choose_route(session=session, job=job(session, company=None)) == Route("local", "outbox", "no company -> outbox")
    route = choose_route(session=session, job=job(session, company=None, preference="force_cloud"))
    assert route.route == "local" and "no company" in route.reason and "fallback queue_local" in route.reason


def test_force_cloud_ignores_the_threshold_but_not_the_company_switch(session, acme):
    assert choose_route(session=session, job=job(session, total=3, preference="force_cloud")) == Route(
        "cloud", "mailgun", "company acme: job forces cloud -> mailgun"
    )
    company_set(session, enabled="false")
    route = choose_route(session=session, job=job(session, total=3, preference="force_cloud"))
    assert route.route == "local"
    assert route.reason == "company acme: job forces cloud, but its cloud is not enabled; fallback queue_local -> outbox"


def test_dead_endpoint_queues_local_or_fails(session, acme, dead_url):
    company_set(session, mailgun_api_url=dead_url)
    route = choose_route(session=session, job=job(session))
    assert route.route == "local" and route.provider == "outbox"
    assert route.reason.startswith("company acme: cloud enabled, 5,000 ≥ threshold 1,000, but mailgun is unreachable (")
    assert route.reason.endswith("; fallback queue_local -> outbox")
    global_set(session, cloud_fallback_behavior="fail")
    with pytest.raises(RouteUnavailable, match=r"mailgun is unreachable .*cloud_fallback_behavior is fail"):
        choose_route(session=session, job=job(session))
    with pytest.raises(RouteUnavailable):
        choose_route(session=session, job=job(session, preference="force_cloud"))
    # force_local never looks at the cloud at all
    assert choose_route(session=session, job=job(session, preference="force_local")).route == "local"


def test_misconfigured_cloud_falls_back_with_the_reason(session, acme):
    company_set(session, mailgun_api_key="")
    route = choose_route(session=session, job=job(session))
    assert route.route == "local"
    assert "mailgun is misconfigured (mailgun_api_key is not set)" in route.reason
    company_set(session, email_provider="system")  # inherits the global provider: outbox is no cloud
    route = choose_route(session=session, job=job(session))
    assert "email_provider resolves to outbox, which is not a cloud provider" in route.reason
    global_set(session, cloud_fallback_behavior="fail")
    with pytest.raises(RouteUnavailable, match="not a cloud provider"):
        choose_route(session=session, job=job(session))


def test_certificate_jobs_need_a_bucket_for_s3(session, acme):
    company_set(session, storage="s3")
    assert choose_route(session=session, job=job(session)).route == "cloud"  # email only: no storage needed
    route = choose_route(session=session, job=job(session, action="both"))
    assert route.route == "local" and "storage is s3 but bucket is not set" in route.reason


def test_ses_route_checks_the_ses_endpoint(session, acme, moto_server, dead_url):
    company_set(session, email_provider="ses", aws_region="eu-west-1", ses_endpoint_url=moto_server.url)
    assert choose_route(session=session, job=job(session)) == Route(
        "cloud", "ses", "company acme: cloud enabled, 5,000 ≥ threshold 1,000 -> ses"
    )
    company_set(session, ses_endpoint_url=dead_url)
    assert "ses is unreachable" in choose_route(session=session, job=job(session)).reason
    company_set(session, aws_region="")
    assert "aws_region is not set" in choose_route(session=session, job=job(session)).reason


def test_smtp_company_relay(session, acme, smtp_sink, dead_url):
    company_set(session, email_provider="smtp", smtp_url=smtp_sink.url)
    assert choose_route(session=session, job=job(session)).provider == "smtp"
    port = dead_url.rsplit(":", 1)[1]
    company_set(session, smtp_url=f"smtp://127.0.0.1:{port}")
    assert "smtp is unreachable" in choose_route(session=session, job=job(session)).reason
