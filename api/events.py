"""Inbound events: POST /api/v1/callbacks (external workers), /webhooks/mailgun, /webhooks/ses."""

from __future__ import annotations

import logging

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from actors.enqueue import enqueue_after_commit
from api.common import (
    ApiConfig,
    ApiError,
    audit_rejection,
    client_address,
    http_error,
    read_body,
    signature_shape,
)
from backend.companies.resolution import resolve
from backend.core import audit, contract
from backend.core.errors import InvalidFields, ManiError, NotFound, UnusableInput
from backend.core.json_body import json_object
from backend.moodle import callbacks, webhooks
from backend.moodle.contracts import MailgunWebhookIn, SnsMessageIn
from backend.moodle.inbound import receive_worker_callback
from models.db import session_scope

log = logging.getLogger("mani.api")


async def _body(request: Request, action: str, limit: int) -> tuple[bytes | None, str | None, JSONResponse | None]:
    config: ApiConfig = request.app.state.config
    address = client_address(request, config)
    try:
        return await read_body(request, limit), address, None
    except ApiError as error:
        await run_in_threadpool(audit_rejection, action=action, address=address, error=error)
        return None, address, error.response()


def _webhook_json(body: bytes, model, what: str) -> dict:
    """The body as a JSON object that fits `model`: 400 when it is not JSON, 422 naming the field."""
    try:
        payload = json_object(body)
    except InvalidFields as error:
        raise ApiError(422, "invalid", str(error), error.errors) from None
    except ManiError:
        raise ApiError(400, "malformed_json", f"The body is not {what}.") from None
    try:
        contract.validate(model, payload, what=what[0].upper() + what[1:])
    except InvalidFields as error:
        raise ApiError(422, "invalid", str(error), error.errors) from None
    return payload


# /api/v1/callbacks ----------------------------------------------------------------------------

def handle_worker_callback(*, body: bytes, signature: str | None, address: str | None, window: int) -> JSONResponse:
    try:
        with session_scope() as session:
            result = receive_worker_callback(session=session, body=body, signature=signature, window=window)
            audit.record(session=session, actor="worker", source="api", action="api.callback.accepted",
                         target=result.job_uuid, address=address,
                         details={"applied": result.applied, "unchanged": result.unchanged,
                                  "unknown": len(result.unknown), "refused": result.refused[:20],
                                  "open": result.open_remaining})
    except ManiError as error:
        refused = http_error(error)
        audit_rejection(action="api.callback.rejected", address=address, error=refused, actor="worker",
                        details={"bytes": len(body)})
        return refused.response()
    # Not enqueued (no shared broker, or it is down): the workers' sweeper sends them.
    enqueue_after_commit(result.followups)
    return JSONResponse({"job_id": result.job_uuid, "applied": result.applied, "unchanged": result.unchanged,
                         "unknown": result.unknown[:100], "refused": result.refused[:100],
                         "open": result.open_remaining})


async def post_worker_callback(request: Request) -> JSONResponse:
    config: ApiConfig = request.app.state.config
    # Refused before a byte of the body is read: an anonymous caller costs its headers only.
    refused = signature_shape(request.headers.get("x-signature"))
    if refused is not None:
        await run_in_threadpool(audit_rejection, action="api.callback.rejected",
                                address=client_address(request, config), error=refused, actor="worker")
        return refused.response()
    body, address, refused = await _body(request, "api.callback.rejected", config.max_event_body)
    if refused is not None:
        return refused
    return await run_in_threadpool(handle_worker_callback, body=body, signature=request.headers.get("x-signature"),
                                   address=address, window=config.callback_window)


# Provider webhooks ----------------------------------------------------------------------------

def _apply(events: list[webhooks.ProviderEvent], *, provider: str, address: str | None) -> list[dict]:
    with session_scope() as session:
        stored = [webhooks.apply_event(session=session, event=event) for event in events]
        applied = [s for s in stored if s.outcome == "applied"]
        if events:
            audit.record(session=session, actor=f"webhook:{provider}", source="api", action=f"webhook.{provider}",
                         target=f"job:{applied[0].job_id}" if applied else None, address=address,
                         details={"events": len(events), "applied": len(applied),
                                  "outcomes": sorted({s.outcome for s in stored})})
        return [{"event_id": s.event_id, "type": s.event_type, "outcome": s.outcome} for s in stored]


def _mailgun_keys(config: ApiConfig, company_id: str | None) -> list[str]:
    keys = [config.mailgun_signing_key] if config.mailgun_signing_key else []
    with session_scope() as session:
        try:
            resolved = resolve(session=session, company_id=company_id)
        except NotFound:
            return keys
        own = callbacks.resolved_value(resolved, "mailgun_webhook_signing_key")
    return ([own] if own else []) + keys


def handle_mailgun(*, body: bytes, company_id: str | None, address: str | None, config: ApiConfig) -> JSONResponse:
    try:
        payload = _webhook_json(body, MailgunWebhookIn, "a Mailgun JSON webhook")
        signature = payload["signature"]
        keys = _mailgun_keys(config, company_id)
        if not keys:
            raise ApiError(401, "not_configured", "No Mailgun webhook signing key is configured.")
        try:
            webhooks.verify_mailgun(signature, keys, max_age=config.mailgun_max_age)
            event = webhooks.parse_mailgun(payload)
        except webhooks.WebhookRejected as error:
            raise ApiError(401, "bad_signature", str(error)) from None
        except UnusableInput as error:
            raise ApiError(422, "invalid", str(error)) from None
    except ApiError as error:
        audit_rejection(action="webhook.mailgun.rejected", address=address, error=error, actor="webhook:mailgun")
        return error.response()
    return JSONResponse({"events": _apply([event], provider="mailgun", address=address)})


async def post_mailgun(request: Request) -> JSONResponse:
    body, address, refused = await _body(request, "webhook.mailgun.rejected",
                                         request.app.state.config.max_webhook_body)
    if refused is not None:
        return refused
    return await run_in_threadpool(handle_mailgun, body=body, company_id=request.path_params.get("company_id"),
                                   address=address, config=request.app.state.config)


def _sns_topics(config: ApiConfig, company_id: str | None) -> list[str]:
    """The topics accepted: the configured ones and the company's (or, without one, the global) setting."""
    topics = list(config.sns_topic_arns)
    with session_scope(read_only=True) as session:
        try:
            resolved = resolve(session=session, company_id=company_id)
        except NotFound:
            return topics
        own = callbacks.resolved_value(resolved, "sns_topic_arns") or ""
    return topics + [arn.strip() for arn in str(own).split(",") if arn.strip()]


def handle_sns(*, body: bytes, address: str | None, config: ApiConfig, http_client,
               company_id: str | None = None) -> JSONResponse:
    try:
        message = _webhook_json(body, SnsMessageIn, "an SNS message")
        kind = message["Type"]
        try:
            webhooks.verify_sns(message, http_client=http_client, cert_pattern=config.sns_cert_url_pattern,
                                topic_arns=_sns_topics(config, company_id) or None)
        except webhooks.WebhookRejected as error:
            raise ApiError(401, "bad_signature", str(error)) from None
        if kind == "SubscriptionConfirmation":
            try:
                status = webhooks.confirm_subscription(message, http_client=http_client,
                                                       cert_pattern=config.sns_cert_url_pattern)
            except webhooks.WebhookRejected as error:
                raise ApiError(401, "bad_url", str(error)) from None
            except ManiError as error:
                # SNS sends the confirmation again later; say why this one did not work.
                raise ApiError(502, "confirm_failed", str(error)) from None
            with session_scope() as session:
                audit.record(session=session, actor="webhook:ses", source="api", action="webhook.ses.subscribe",
                             target=message.get("TopicArn"), address=address, details={"confirm_status": status})
            return JSONResponse({"confirmed": 200 <= status < 300, "status": status})
        if kind != "Notification":
            return JSONResponse({"ignored": kind})
        try:
            events = webhooks.parse_ses(message)
        except UnusableInput as error:
            raise ApiError(422, "invalid", str(error)) from None
    except ApiError as error:
        audit_rejection(action="webhook.ses.rejected", address=address, error=error, actor="webhook:ses")
        return error.response()
    return JSONResponse({"events": _apply(events, provider="ses", address=address)})


async def post_ses(request: Request) -> JSONResponse:
    body, address, refused = await _body(request, "webhook.ses.rejected", request.app.state.config.max_webhook_body)
    if refused is not None:
        return refused
    return await run_in_threadpool(handle_sns, body=body, address=address, config=request.app.state.config,
                                   http_client=request.app.state.http_client,
                                   company_id=request.path_params.get("company_id"))
