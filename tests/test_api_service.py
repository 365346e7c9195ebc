"""GET /healthz, GET /metrics, tokens, and the client address behind a reverse proxy."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlmodel import select
from starlette.testclient import TestClient

from api.app import create_app
from api.common import ApiConfig, client_address
from backend.core.errors import NotFound
from backend.core.settings import reset_settings_cache
from backend.moodle import tokens
from models import AuditEntry, utcnow
from models.callbacks import ApiToken
from models.db import dispose_engines, session_scope
from tests.support.callbacks import add_company, make_job, set_recipients


def _samples(text: str) -> dict:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


@pytest.mark.usefixtures("cb_db")
def test_healthz_and_metrics_from_the_store(serve_app):
    add_company("c1", callback_url="http://127.0.0.1:9/cb")
    job_id = make_job(company_id="c1", recipients=10, status="completed")
    set_recipients(job_id, status="sent", sent_at=utcnow())
    with session_scope() as session:
        from models import Job

        job = session.get(Job, job_id)
        job.sent_count, job.bounced_count = 10, 1
        session.add(job)
    make_job(company_id="c1", recipients=3, status="processing")
    url = serve_app(create_app(config=ApiConfig()))
    health = httpx.get(f"{url}/healthz")
    assert health.status_code == 200 and health.json()["database"]["ok"] and health.json()["broker"]["ok"]
    text = httpx.get(f"{url}/metrics").text
    samples = _samples(text)
    assert samples[("mani_jobs", (("status", "completed"),))] == 1
    assert samples[("mani_jobs", (("status", "processing"),))] == 1
    assert samples[("mani_recipients", (("outcome", "sent"),))] == 10
    assert samples[("mani_recipients", (("outcome", "bounced"),))] == 1
    assert samples[("mani_send_rate_per_second", ())] == pytest.approx(10 / 300)
    assert samples[("mani_store_up", ())] == 1
    for name in ("mani_queue_depth", "mani_dead_letters", "mani_callback_deliveries"):
        assert any(key[0] == name for key in samples), name


def test_healthz_is_503_when_the_database_is_unreachable(monkeypatch, serve_app):
    monkeypatch.setenv("MANI_DATABASE_URL", "postgresql+psycopg://nobody@127.0.0.1:1/none")
    reset_settings_cache()
    dispose_engines()
    url = serve_app(create_app(config=ApiConfig()))
    answer = httpx.get(f"{url}/healthz")
    assert answer.status_code == 503 and answer.json()["database"]["ok"] is False
    assert _samples(httpx.get(f"{url}/metrics").text)[("mani_store_up", ())] == 0


@pytest.mark.redis
def test_healthz_sees_redis(redis_url, sqlite_cb_db, serve_app):
    url = serve_app(create_app(config=ApiConfig()))
    answer = httpx.get(f"{url}/healthz").json()
    assert answer["broker"] == {"ok": True, "kind": "redis", "depth": 0, "dead_letters": 0}


def test_healthz_is_503_when_redis_is_down(monkeypatch, sqlite_cb_db, serve_app):
    monkeypatch.setenv("MANI_REDIS_URL", "redis://127.0.0.1:1/0")
    reset_settings_cache()
    url = serve_app(create_app(config=ApiConfig()))
    answer = httpx.get(f"{url}/healthz")
    assert answer.status_code == 503 and answer.json()["broker"]["ok"] is False


@pytest.mark.usefixtures("cb_db")
def test_tokens_are_stored_hashed_shown_once_and_scoped():
    add_company("c1")
    with session_scope() as session:
        issued = tokens.issue_token(session=session, company_id="c1", actor="admin", source="cli")
        with pytest.raises(NotFound):
            tokens.issue_token(session=session, company_id="nope", actor="admin", source="cli")
    with session_scope() as session:
        row = session.exec(select(ApiToken)).one()
        assert issued.token not in (row.token_hash, row.prefix) and row.token_hash == tokens.digest(issued.token)
        assert tokens.authenticate(session=session, token=issued.token).company_id == "c1"
        assert tokens.authenticate(session=session, token=issued.token + "x") is None
        assert tokens.authenticate(session=session, token=None) is None
        entry = session.exec(select(AuditEntry).where(AuditEntry.action == "api_token.issue")).one()
        assert issued.token not in str(entry.details)
    with session_scope() as session:
        again = tokens.issue_token(session=session, company_id="c1", actor="admin", source="cli", revoke_others=True)
    with session_scope() as session:
        assert tokens.authenticate(session=session, token=issued.token) is None
        assert tokens.authenticate(session=session, token=again.token) is not None


def _address(peer: str, forwarded: str | None, trusted: tuple[str, ...]) -> str:
    config = ApiConfig(trusted_proxies=trusted)
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def whoami(request):
        return PlainTextResponse(client_address(request, config))

    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    with TestClient(Starlette(routes=[Route("/", whoami)]), client=(peer, 5000)) as client:
        return client.get("/", headers=headers).text


def test_x_forwarded_for_is_believed_only_from_trusted_proxies():
    assert _address("203.0.113.9", "198.51.100.1", ()) == "203.0.113.9"
    assert _address("10.0.0.2", "198.51.100.1", ("10.0.0.0/8",)) == "198.51.100.1"
    # A client's own forged hop, left of what our proxy appended, is not believed.
    assert _address("10.0.0.2", "1.2.3.4, 198.51.100.1", ("10.0.0.0/8",)) == "198.51.100.1"
    assert _address("10.0.0.2", "198.51.100.1, 10.0.0.7", ("10.0.0.0/8",)) == "198.51.100.1"
    assert _address("10.0.0.2", None, ("10.0.0.0/8",)) == "10.0.0.2"
    assert _address("::1", "2001:db8::5", ("::1",)) == "2001:db8::5"
