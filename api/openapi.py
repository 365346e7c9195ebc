"""`/openapi.json`: mani's HTTP contract, generated from the pydantic models that validate the
requests (Job JSON, Callback JSON, Mailgun and SNS webhooks) and that shape the answers (the
`*Public` read models, `VerificationPublic`). The Moodle plugin's authors build against it."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema

from api.verify import VerificationPublic
from backend.jobs.job_json import JobJsonIn
from backend.jobs.public import JobDetailPublic, JobPublic
from backend.moodle.contracts import CallbackIn, MailgunWebhookIn, SnsMessageIn

VERSION = "1.0.0"


class FieldError(BaseModel):
    field: str
    message: str


class ErrorBody(BaseModel):
    """Every refusal: a short code for machines, one sentence for people, and the fields at fault."""

    error: str
    message: str
    errors: list[FieldError] | None = None
    request_id: str | None = Field(None, description="On a 500: the id the audit log and server log keep.")


class JobAnswer(JobPublic):
    """The job as `mani jobs show --json` shows it, and what this request did."""

    model_config = ConfigDict(frozen=True, extra="allow")
    existing: bool = Field(description="True when this job_id was posted before (the same job is answered).")
    accepted: int | None = None
    skipped_duplicates: int | None = None
    enqueued: bool | None = None
    links: dict[str, str] | None = None


class JobStatusAnswer(JobDetailPublic):
    model_config = ConfigDict(frozen=True, extra="allow")
    existing: bool = True


class RefusedUpdate(BaseModel):
    recipient: int | str | None
    from_: str = Field(alias="from")
    to: str


class CallbackAnswer(BaseModel):
    job_id: str
    applied: int = Field(description="Recipients whose status changed (and are reported to Moodle).")
    unchanged: int = Field(description="No-ops and refused transitions: nothing written, nothing forwarded.")
    unknown: list[int | str | None]
    refused: list[RefusedUpdate] = Field(description="Updates the recipient state machine does not allow.")
    open: int = Field(description="Recipients of the job not final yet.")


class WebhookEventOutcome(BaseModel):
    event_id: str
    type: str
    outcome: str


class WebhookAnswer(BaseModel):
    events: list[WebhookEventOutcome] | None = None
    confirmed: bool | None = None
    status: int | None = None
    ignored: str | None = None


class HealthPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    ok: bool
    error: str | None = None


class HealthAnswer(BaseModel):
    status: Literal["ok", "unavailable"]
    database: HealthPart
    broker: HealthPart


_MODELS: list[type[BaseModel]] = [JobJsonIn, CallbackIn, MailgunWebhookIn, SnsMessageIn, ErrorBody, JobAnswer,
                                  JobStatusAnswer, CallbackAnswer, WebhookAnswer, HealthAnswer, VerificationPublic]


def _ref(model: type[BaseModel]) -> dict:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _json(model: type[BaseModel], description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": _ref(model)}}}


def _errors(*statuses: int) -> dict:
    words = {400: "The body is not JSON (or nested too deep).", 401: "Not authenticated (token or signature).",
             403: "Authenticated, but not allowed.", 404: "Not found.", 409: "Conflicts with what is stored.",
             413: "The body is larger than the limit.", 422: "A field is not valid; `errors` names each.",
             500: "An unexpected error; `request_id` names it.", 502: "An upstream call failed."}
    return {str(status): _json(ErrorBody, words[status]) for status in (*statuses, 500)}


def _body(model: type[BaseModel], description: str) -> dict:
    return {"required": True, "description": description,
            "content": {"application/json": {"schema": _ref(model)}}}


_COMPANY = {"name": "company_id", "in": "path", "required": True, "schema": {"type": "string", "maxLength": 64}}
_SIGNATURE = {"name": "X-Signature", "in": "header", "required": True,
              "description": "Lowercase hex HMAC-SHA256 of the raw body, keyed with cloud_callback_secret.",
              "schema": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"}}


def _mailgun(company: bool) -> dict:
    return {"post": {
        "summary": "Mailgun webhook (bounces, complaints)" + (" with the company's own key" if company else ""),
        "operationId": "mailgunWebhookCompany" if company else "mailgunWebhook",
        **({"parameters": [_COMPANY]} if company else {}),
        "requestBody": _body(MailgunWebhookIn, "Mailgun's JSON webhook, signed in its `signature` block."),
        "responses": {"200": _json(WebhookAnswer, "Applied (or matched nothing)."), **_errors(400, 401, 413, 422)},
    }}


def _ses(company: bool) -> dict:
    return {"post": {
        "summary": "SES events through SNS" + (" (the company's topic allow-list)" if company else ""),
        "operationId": "sesWebhookCompany" if company else "sesWebhook",
        **({"parameters": [_COMPANY]} if company else {}),
        "requestBody": _body(SnsMessageIn, "An SNS message (signature version 1 or 2)."),
        "responses": {"200": _json(WebhookAnswer, "Applied, confirmed, or ignored."),
                      **_errors(400, 401, 413, 422, 502)},
    }}


def build_spec() -> dict[str, Any]:
    _, definitions = models_json_schema([(m, "validation") for m in _MODELS[:4]] +
                                        [(m, "serialization") for m in _MODELS[4:]],
                                        ref_template="#/components/schemas/{model}")
    paths = {
        "/api/v1/jobs": {"post": {
            "summary": "Submit a job (the seeds' Job JSON)", "operationId": "submitJob",
            "security": [{"bearer": []}],
            "requestBody": _body(JobJsonIn, "The Job JSON; all or nothing."),
            "responses": {"202": _json(JobAnswer, "Created and queued."),
                          "200": _json(JobAnswer, "This job_id was posted before: the same job."),
                          **_errors(400, 401, 403, 409, 413, 422)},
        }},
        "/api/v1/jobs/{job_id}": {"get": {
            "summary": "A job's status, batches and callbacks", "operationId": "jobStatus",
            "security": [{"bearer": []}],
            "parameters": [{"name": "job_id", "in": "path", "required": True,
                            "schema": {"type": "string", "maxLength": 64}}],
            "responses": {"200": _json(JobStatusAnswer, "The job."), **_errors(401, 404)},
        }},
        "/api/v1/callbacks": {"post": {
            "summary": "Status updates from an external worker (the seeds' Callback JSON)",
            "operationId": "workerCallback", "parameters": [_SIGNATURE],
            "requestBody": _body(CallbackIn, "Signed with cloud_callback_secret; `source: mani` is refused."),
            "responses": {"200": _json(CallbackAnswer, "Applied what the state machine allows."),
                          **_errors(400, 401, 403, 404, 409, 413, 422)},
        }},
        "/webhooks/mailgun": _mailgun(False),
        "/webhooks/mailgun/{company_id}": _mailgun(True),
        "/webhooks/ses": _ses(False),
        "/webhooks/ses/{company_id}": _ses(True),
        "/verify/{code}": {"get": {
            "summary": "Verify a certificate code (HTML for people, JSON with Accept: application/json)",
            "operationId": "verifyCertificate",
            "parameters": [{"name": "code", "in": "path", "required": True,
                            "schema": {"type": "string", "maxLength": 64}},
                           {"name": "format", "in": "query", "required": False,
                            "schema": {"type": "string", "enum": ["json", "html"]}}],
            "responses": {
                "200": {"description": "The certificate: name, course, dates, status, code.",
                        "content": {"application/json": {"schema": _ref(VerificationPublic)},
                                    "text/html": {"schema": {"type": "string"}}}},
                "404": {"description": "No certificate has this code.",
                        "content": {"application/json": {"schema": _ref(VerificationPublic)},
                                    "text/html": {"schema": {"type": "string"}}}},
                "500": _json(ErrorBody, "An unexpected error; `request_id` names it."),
            },
        }},
        "/healthz": {"get": {
            "summary": "Can this process reach the database and the broker?", "operationId": "healthz",
            "responses": {"200": _json(HealthAnswer, "Healthy."), "503": _json(HealthAnswer, "Unavailable."),
                          "500": _json(ErrorBody, "An unexpected error.")},
        }},
        "/metrics": {"get": {
            "summary": "Prometheus metrics", "operationId": "metrics",
            "responses": {"200": {"description": "Prometheus text format.",
                                  "content": {"text/plain": {"schema": {"type": "string"}}}},
                          "500": _json(ErrorBody, "An unexpected error.")},
        }},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "mani", "version": VERSION,
                 "description": "Bulk email and certificates off Moodle/IOMAD: Job JSON in, signed callbacks "
                                "in and out, provider webhooks, certificate verification."},
        "paths": paths,
        "components": {"schemas": definitions["$defs"],
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                                      "description": "mani companies token ID"}}},
    }


_spec: dict | None = None


def spec() -> dict[str, Any]:
    global _spec
    if _spec is None:
        _spec = build_spec()
    return _spec
