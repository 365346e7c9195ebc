"""The SSRF guard: callback URLs, cloud endpoints and provider API URLs are resolved and checked
when mani sends, and only a short cleaned excerpt of a reply is kept."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
from sqlmodel import select

from api.app import create_app
from api.common import ApiConfig
from backend.core import outbound
from backend.core.settings import reset_settings_cache
from backend.moodle import callbacks, tokens
from models import Job
from models.callbacks import CallbackAttempt
from models.db import session_scope
from tests.support.callbacks import SECRET, add_company, make_job
from tests.support.receiver import Receiver


@pytest.fixture
def no_allow_list(monkeypatch):
    monkeypatch.delenv("MANI_ALLOWED_CALLBACK_HOSTS", raising=False)
    reset_settings_cache()


@pytest.mark.parametrize("url", [
    "http://169.254.169.254/latest/meta-data/", "http://127.0.0.1:8080/x", "http://localhost/x",
    "http://10.0.0.5/", "http://192.168.1.1/", "http://172.16.0.1/", "http://[::1]/", "http://[fe80::1]/",
    "http://[fd00:ec2::254]/", "http://100.64.0.1/", "http://0.0.0.0/", "http://[::ffff:127.0.0.1]/",
    "http://2130706433/", "ftp://example.com/", "http:///nohost",
])
def test_addresses_that_are_not_public_are_refused(no_allow_list, url):
    with pytest.raises(outbound.UnsafeUrl):
        outbound.check_url(url)


def test_public_addresses_pass_and_the_allow_list_opens_a_host_or_network(no_allow_list, monkeypatch):
    outbound.check_url("https://93.184.215.14/callback")
    outbound.check_url("http://10.1.2.3/moodle", allowed=("10.0.0.0/8",))
    outbound.check_url("http://127.0.0.1:9000/", allowed=("127.0.0.1:9000",))
    with pytest.raises(outbound.UnsafeUrl):
        outbound.check_url("http://127.0.0.1:9001/", allowed=("127.0.0.1:9000",))
    monkeypatch.setenv("MANI_ALLOWED_CALLBACK_HOSTS", "moodle.intranet, 192.168.0.0/16")
    reset_settings_cache()
    outbound.check_url("http://192.168.4.4/")


def test_a_reply_excerpt_is_short_clean_and_masked():
    from backend.core.secrets import register_secret

    register_secret("reply-secret-0123456789")
    text = outbound.reply_excerpt(b"ok\x00\x1b[31m reply-secret-0123456789 " + b"x" * 5000)
    assert len(text) <= outbound.EXCERPT_LIMIT and "\x00" not in text and "\x1b" not in text
    assert "reply-secret-0123456789" not in text


@pytest.mark.usefixtures("cb_db")
def test_the_metadata_callback_url_of_the_issue_is_refused_at_intake(serve_app, no_allow_list):
    add_company("123")
    url = serve_app(create_app(config=ApiConfig()))
    with session_scope() as session:
        token = tokens.issue_token(session=session, company_id="123", actor="t", source="cli").token
    job = {"job_id": str(uuid.uuid4()), "tenant_id": 123, "type": "reminder",
           "recipients": [{"userid": 1, "email": "a@example.com"}],
           "template_data": {"course_name": "x", "due_date": "2025-12-31"},
           "callback_url": "http://169.254.169.254/latest/meta-data/"}
    answer = httpx.post(f"{url}/api/v1/jobs", json=job, headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 422 and answer.json()["errors"][0]["field"] == "callback_url"
    assert "metadata" in answer.json()["errors"][0]["message"]


@pytest.mark.usefixtures("cb_db")
def test_a_callback_is_checked_at_send_time_and_nothing_is_posted(monkeypatch):
    with Receiver(SECRET) as receiver:
        add_company("c1", callback_url=receiver.url)
        job_id = make_job(company_id="c1", recipients=2)
        with session_scope() as session:
            [delivery_id] = callbacks.on_recipients_changed(session=session, job=session.get(Job, job_id),
                                                            recipient_ids=[1, 2])
        # Allowed when the job was made; the allow-list is gone when it is sent.
        monkeypatch.delenv("MANI_ALLOWED_CALLBACK_HOSTS")
        reset_settings_cache()
        with session_scope() as session, httpx.Client() as client:
            outcome = callbacks.deliver(session=session, delivery_id=delivery_id, http_client=client)
        assert outcome.result == "retry" and "loopback" in outcome.error and outcome.status_code is None
        assert receiver.received == []


@pytest.mark.usefixtures("cb_db")
def test_only_a_bounded_clean_excerpt_of_a_reply_is_stored(serve_app):
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    async def chatty(request):
        return Response(b"\x00\x07" + b"A" * 5_000_000, status_code=500)

    url = serve_app(Starlette(routes=[Route("/cb", chatty, methods=["POST"])]))
    add_company("c1", callback_url=f"{url}/cb")
    job_id = make_job(company_id="c1", recipients=1)
    with session_scope() as session:
        [delivery_id] = callbacks.on_recipients_changed(session=session, job=session.get(Job, job_id),
                                                        recipient_ids=[1])
    with session_scope() as session, httpx.Client() as client:
        outcome = callbacks.deliver(session=session, delivery_id=delivery_id, http_client=client)
    assert outcome.status_code == 500
    with session_scope() as session:
        attempt = session.exec(select(CallbackAttempt)).one()
    assert attempt.response_excerpt.startswith("AAAA") and len(attempt.response_excerpt) <= outbound.EXCERPT_LIMIT


def test_provider_api_urls_and_the_cloud_endpoint_are_checked(no_allow_list):
    from backend.core.settings import get_settings
    from backend.delivery.handoff import HandoffFailed, post_api_gateway
    from backend.mail.providers import get_provider

    with pytest.raises(outbound.UnsafeUrl, match="mailgun_api_url"):
        get_provider("mailgun", settings=get_settings(), company_settings={
            "mailgun_api_url": "http://169.254.169.254/", "mailgun_api_key": "k", "mailgun_domain": "mg.example.com"})
    with pytest.raises(HandoffFailed, match="cloud_endpoint"):
        post_api_gateway([json.dumps({})], resolved={"cloud_endpoint": "http://127.0.0.1:1/jobs",
                                                     "cloud_auth_token": "t", "cloud_callback_secret": "s"})
