"""The HTTP service `mani serve` runs: Job JSON in, worker callbacks and provider webhooks in,
health and metrics out. Every handler is a thin caller of `backend/`."""

from __future__ import annotations

import contextlib
import logging

import httpx
import uvicorn
from sqlalchemy import text
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from api import events, jobs, openapi, verify
from api.common import ApiConfig
from api.errors import RequestIdAndErrors
from backend.ops import deadletters, metrics
from models.db import session_scope

log = logging.getLogger("mani.api")


def check_health() -> tuple[bool, dict]:
    """Can this process reach the database and the broker?"""
    report: dict = {}
    try:
        with session_scope(read_only=True) as session:
            session.execute(text("SELECT 1"))
        report["database"] = {"ok": True}
    except Exception as error:  # noqa: BLE001 - any failure means "not reachable", said in the body
        report["database"] = {"ok": False, "error": f"{type(error).__name__}: {error}"[:300]}
    try:
        stats = deadletters.broker_stats()
        kind = "embedded" if stats.kind in ("none", "stub") else stats.kind
        report["broker"] = {"ok": True, "kind": kind, "depth": stats.depth, "dead_letters": stats.dead_letters}
    except Exception as error:  # noqa: BLE001
        report["broker"] = {"ok": False, "error": f"{type(error).__name__}: {error}"[:300]}
    healthy = all(part["ok"] for part in report.values())
    return healthy, {"status": "ok" if healthy else "unavailable", **report}


async def healthz(request: Request) -> JSONResponse:
    healthy, report = await run_in_threadpool(check_health)
    return JSONResponse(report, status_code=200 if healthy else 503)


async def metrics_endpoint(request: Request) -> Response:
    body = await run_in_threadpool(metrics.render, request.app.state.registry)
    return Response(body, media_type=metrics.CONTENT_TYPE)


async def openapi_endpoint(request: Request) -> JSONResponse:
    return JSONResponse(openapi.spec())


def create_app(*, config: ApiConfig | None = None, http_client: httpx.Client | None = None) -> Starlette:
    """The starlette app; `config` defaults to the settings, `http_client` fetches SNS certificates."""
    config = config or ApiConfig.from_settings()

    own_client = http_client is None
    client = http_client or httpx.Client(follow_redirects=False)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        try:
            yield
        finally:
            if own_client:
                client.close()

    routes = [
        Route("/api/v1/jobs", jobs.post_job, methods=["POST"]),
        Route("/api/v1/jobs/{job_id}", jobs.get_job, methods=["GET"]),
        Route("/api/v1/callbacks", events.post_worker_callback, methods=["POST"]),
        Route("/webhooks/mailgun", events.post_mailgun, methods=["POST"]),
        Route("/webhooks/mailgun/{company_id}", events.post_mailgun, methods=["POST"]),
        Route("/webhooks/ses", events.post_ses, methods=["POST"]),
        Route("/webhooks/ses/{company_id}", events.post_ses, methods=["POST"]),
        Route("/verify/{code}", verify.verify_certificate, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
        Route("/openapi.json", openapi_endpoint, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, middleware=[Middleware(RequestIdAndErrors)])
    app.state.config = config
    app.state.registry = metrics.build_registry()
    app.state.http_client = client
    return app


def serve(*, host: str = "127.0.0.1", port: int = 8080, config: ApiConfig | None = None) -> None:
    """Run the app under uvicorn until stopped (what `mani serve` calls).

    Forwarded headers are handled by mani itself (`ApiConfig.trusted_proxies`), not by
    uvicorn, so the audit log records the address the trusted proxy saw.
    """
    uvicorn.run(create_app(config=config), host=host, port=port, proxy_headers=False, log_level="info")
