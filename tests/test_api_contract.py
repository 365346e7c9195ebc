"""The OpenAPI contract: `/openapi.json` is served, is valid OpenAPI, and schemathesis fuzzes every
operation against a real `mani serve` (uvicorn) with it: no 500, and every answer fits the spec.

Bounded for CI: EXAMPLES generated bodies and parameters per operation, derandomized, no
shrinking budget beyond hypothesis' default."""

from __future__ import annotations

import json
import time

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.app import create_app
from api.common import ApiConfig
from api.openapi import build_spec
from backend.moodle import signing, tokens
from models.db import session_scope
from tests.support.callbacks import WORKER_SECRET, add_company, make_job

EXAMPLES = 30
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
schema = schemathesis.openapi.from_dict(build_spec())


def test_openapi_json_is_served_and_valid(sqlite_cb_db, serve_app):
    from openapi_spec_validator import validate

    url = serve_app(create_app(config=ApiConfig()))
    document = httpx.get(f"{url}/openapi.json").json()
    validate(document)
    assert {"/api/v1/jobs", "/api/v1/jobs/{job_id}", "/api/v1/callbacks", "/webhooks/mailgun", "/webhooks/ses",
            "/verify/{code}", "/healthz", "/metrics"} <= set(document["paths"])
    job_json = document["components"]["schemas"]["JobJsonIn"]
    assert {"job_id", "tenant_id", "type", "recipients"} <= set(job_json["required"])


@pytest.fixture
def live(sqlite_cb_db, serve_app):
    add_company("123")
    make_job(company_id="123", recipients=3, recipient_status="processing")
    with session_scope() as session:
        token = tokens.issue_token(session=session, company_id="123", actor="test", source="cli").token
    url = serve_app(create_app(config=ApiConfig(max_job_body=2 * 1024 * 1024)))
    with httpx.Client(timeout=30) as client:
        yield {"url": url, "token": token, "client": client}


@pytest.mark.slow
@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_every_operation_answers_by_the_contract(case, live):
    kwargs = case.as_transport_kwargs(base_url=live["url"])
    headers = dict(kwargs.get("headers") or {})
    content = None
    if "json" in kwargs:
        body = kwargs["json"]
        if isinstance(body, dict) and case.path == "/api/v1/callbacks":
            body = {**body, "timestamp": int(time.time())}  # inside the window, so validation is reached
        content = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if case.path.startswith("/api/v1/jobs"):
        headers["Authorization"] = f"Bearer {live['token']}"
    if case.path == "/api/v1/callbacks" and content is not None:
        headers["X-Signature"] = signing.sign(content, WORKER_SECRET)
    response = live["client"].request(kwargs["method"], kwargs["url"], params=kwargs.get("params"),
                                      headers=headers, content=content)
    assert response.status_code < 500, response.text
    case.validate_response(response, checks=CHECKS)
