"""POST /api/v1/jobs (the seeds' Job JSON) and GET /api/v1/jobs/{job_id}."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from actors.enqueue import enqueue_after_commit
from api.common import (
    ApiConfig,
    ApiError,
    audit_rejection,
    bearer_token,
    client_address,
    http_error,
    read_body,
)
from backend.companies.resolution import resolve
from backend.core import audit, outbound
from backend.core.errors import ManiError, UnusableInput
from backend.core.settings import get_settings
from backend.jobs import queries
from backend.jobs.create import create_job
from backend.jobs.job_json import JobRequest, parse_body, parse_job_request
from backend.moodle import callbacks, tokens
from models import Job
from models.callbacks import ApiToken
from models.db import session_scope


@dataclass(slots=True)
class Caller:
    company_id: str
    token_id: int
    address: str | None

    @property
    def actor(self) -> str:
        return f"api:{self.company_id}"


def authenticate(*, session: Session, request_token: str | None, address: str | None) -> Caller:
    row: ApiToken | None = tokens.authenticate(session=session, token=request_token)
    if row is None:
        raise ApiError(401, "unauthorized", "A valid bearer token is required (mani companies token ID).")
    return Caller(company_id=row.company_id, token_id=row.id, address=address)


def _job_answer(session: Session, job_id: int, *, existing: bool, **extra) -> dict:
    """The job as every front end shows it (`JobPublic`), and whether it was there already."""
    return {**queries.get_job(session=session, job_id=job_id).model_dump(mode="json"), "existing": existing, **extra}


def _existing(session: Session, job_uuid: str, caller: Caller) -> JSONResponse | None:
    job = session.exec(select(Job).where(Job.uuid == job_uuid)).first()
    if job is None:
        return None
    if job.company_id != caller.company_id:
        # Never say more about another company's job than that the id is taken.
        raise ApiError(409, "job_id_taken", "This job_id is already used by another job.")
    return JSONResponse(_job_answer(session, job.id, existing=True), status_code=200)


def authenticate_request(*, request_token: str | None, address: str | None) -> Caller:
    """The caller of a token (ApiError 401 otherwise), checked before any of the body is read."""
    with session_scope() as session:
        return authenticate(session=session, request_token=request_token, address=address)


def own_hosts(request: Request) -> list[str]:
    """The names this server is reached by: the request's Host, and the public URLs in the settings."""
    settings = get_settings()
    configured = [settings.public_base_url, settings.certificate_verify_url.replace("{code}", "")]
    return [h for h in (request.headers.get("host"), *configured) if h]


def submit_job(*, body: bytes, caller: Caller, address: str | None, hosts: list[str] = ()) -> JSONResponse:
    """Validate everything, then create the job in one transaction and enqueue it."""
    try:
        payload = parse_body(body)
        request = parse_job_request(payload, max_field_length=get_settings().max_field_length)
        if request.callback_url:
            with session_scope(read_only=True) as session:
                public_url = callbacks.resolved_value(resolve(session=session, company_id=None), "public_url")
            hosts = [*hosts, public_url] if public_url else list(hosts)
        if request.callback_url and callbacks.points_to_mani(request.callback_url, hosts):
            message = "must not point to mani itself (its callbacks would come back to it)"
            raise ApiError(422, "invalid", f"callback_url {message}.", [{"field": "callback_url", "message": message}])
        if request.callback_url:
            try:  # checked again, resolved, before every delivery
                outbound.check_url(request.callback_url, what="callback_url", resolve=False)
            except outbound.UnsafeUrl as error:
                raise ApiError(422, "invalid", str(error), [{"field": "callback_url", "message": str(error)}]) from None
        if request.tenant_id != caller.company_id:
            raise ApiError(403, "wrong_tenant", "This token may only submit jobs for its own company.")
        with session_scope() as session:
            answer = _existing(session, request.job_uuid, caller)
            if answer is not None:
                return answer
            try:
                created = create_job(
                    session=session, job_type=request.job_type, rows=request.rows,
                    available_variables=request.fields | {"fullname"}, company_id=caller.company_id,
                    template_data=request.template_data, source="api", source_name=f"api:{caller.company_id}",
                    allow_duplicates=request.allow_duplicates, callback_url=request.callback_url,
                    action=request.action, job_uuid=request.job_uuid, template_id=request.template_id,
                    created_by=caller.actor,
                )
            except UnusableInput as error:
                raise ApiError(422, "invalid", str(error), [{"field": _field_of(error), "message": str(error)}]) from None
            job = created.job
            audit.record(session=session, actor=caller.actor, source="api", action="api.job.create",
                         target=job.uuid, address=address,
                         details={"job_id": job.id, "type": job.type, "recipients": created.accepted,
                                  "skipped_duplicates": created.skipped_duplicates,
                                  "moodle_user": request.created_by})
    except IntegrityError:
        # The same job_id posted twice at once: the other request won; answer with its job.
        with session_scope() as session:
            answer = _existing(session, request.job_uuid, caller)
        if answer is None:
            raise
        return answer
    except (ApiError, ManiError) as raised:
        error = raised if isinstance(raised, ApiError) else http_error(raised)
        audit_rejection(action="api.job.rejected", address=address, error=error,
                        actor=caller.actor, target=_target_of(body), details={"errors": error.errors[:20]})
        return error.response()
    # Not enqueued = stored for the workers' sweeper, which dispatches it within seconds.
    queued = enqueue_after_commit(created.followups)
    with session_scope(read_only=True) as session:
        answer = _job_answer(session, job.id, existing=False, accepted=created.accepted,
                             skipped_duplicates=created.skipped_duplicates, enqueued=queued,
                             links={"self": f"/api/v1/jobs/{job.uuid}"})
    return JSONResponse(answer, status_code=202)


def _field_of(error: UnusableInput) -> str:
    text = str(error)
    if "template variable" in text:
        return "template_data"
    if "certificate" in text:
        return "certificate_template"
    if "company" in text:
        return "tenant_id"
    return "type" if "type" in text else "job"


def _target_of(body: bytes) -> str | None:
    """The job_id of a rejected body, if one can be read (for the audit entry only)."""
    match = re.search(rb'"job_id"\s*:\s*"([0-9a-fA-F-]{1,36})"', body[:4096])
    return match.group(1).decode() if match else None


def job_status(*, job_uuid: str, request_token: str | None, address: str | None) -> JSONResponse:
    try:
        with session_scope() as session:
            caller = authenticate(session=session, request_token=request_token, address=address)
            job = session.exec(select(Job).where(Job.uuid == job_uuid)).first()
            if job is None or job.company_id != caller.company_id:
                raise ApiError(404, "not_found", "No such job for this company.")
            # The job as `mani jobs show --json` and the console show it (`JobDetailPublic`).
            body = {**queries.job_detail(session=session, job_ref=job.id).model_dump(mode="json"), "existing": True}
    except ApiError as error:
        if error.status == 401:
            audit_rejection(action="api.job.status_rejected", address=address, error=error, target=job_uuid)
        return error.response()
    return JSONResponse(body)


async def post_job(request: Request) -> JSONResponse:
    config: ApiConfig = request.app.state.config
    address = client_address(request, config)
    caller = None
    try:
        # The token first: a caller without one never makes mani read (or hold) its body.
        caller = await run_in_threadpool(authenticate_request, request_token=bearer_token(request), address=address)
        body = await read_body(request, config.max_job_body)
    except ApiError as error:
        await run_in_threadpool(audit_rejection, action="api.job.rejected", address=address, error=error,
                                actor=caller.actor if caller else "api:anonymous")
        return error.response()
    return await run_in_threadpool(submit_job, body=body, caller=caller, address=address, hosts=own_hosts(request))


async def get_job(request: Request) -> JSONResponse:
    config: ApiConfig = request.app.state.config
    return await run_in_threadpool(job_status, job_uuid=request.path_params["job_id"],
                                   request_token=bearer_token(request), address=client_address(request, config))


__all__ = ["JobRequest", "get_job", "post_job", "submit_job"]
