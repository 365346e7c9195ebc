"""One place for the unexpected: every request gets an id (the `X-Request-Id` header), and an
error no handler expected is logged, audited under that id, and answered with a JSON 500 that
names the id and nothing else (no traceback, no exception text)."""

from __future__ import annotations

import logging
import uuid

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend.core import audit
from models.db import session_scope

log = logging.getLogger("mani.api")
REQUEST_ID_HEADER = "x-request-id"


def audit_unexpected(*, request_id: str, method: str, path: str, address: str | None, error: BaseException) -> None:
    try:
        with session_scope() as session:
            audit.record(session=session, actor="api:anonymous", source="api", action="api.error",
                         target=f"request:{request_id}", address=address,
                         details={"status": 500, "method": method, "path": path[:300],
                                  "error": type(error).__name__})
    except Exception:  # noqa: BLE001 - the answer is a 500 already; the log keeps the rest
        log.exception("could not audit request %s", request_id)


class RequestIdAndErrors:
    """ASGI middleware: the request id, and the 500 answer for anything a handler let through."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex[:16]
        scope.setdefault("state", {})["request_id"] = request_id
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                MutableHeaders(scope=message).append(REQUEST_ID_HEADER, request_id)
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as error:  # noqa: BLE001 - this is the handler of last resort
            method, path = scope.get("method", "?"), scope.get("path", "?")
            log.error("unexpected %s in %s %s (request %s)", type(error).__name__, method, path, request_id,
                      exc_info=error)
            client = scope.get("client")
            await run_in_threadpool(audit_unexpected, request_id=request_id, method=method, path=path,
                                    address=client[0] if client else None, error=error)
            if not started:
                answer = JSONResponse({"error": "internal",
                                       "message": f"Something went wrong on mani's side; it is recorded "
                                                  f"as request {request_id}.",
                                       "request_id": request_id}, status_code=500)
                await answer(scope, receive, send_with_id)
