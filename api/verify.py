"""`GET /verify/{code}`: where every certificate's QR code and link lead.

A person gets a small HTML page; a script that asks for JSON (`Accept: application/json` or
`?format=json`) gets `mani certificates verify --json`'s document. Codes carry over 60 random
bits, so answering "not found" reveals nothing worth guessing for.
"""

from __future__ import annotations

from html import escape
from typing import Literal

from pydantic import BaseModel, ConfigDict

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from models.db import session_scope

VERDICTS = {
    "valid": ("Valid certificate", "#1a7f37"),
    "expired": ("This certificate has expired", "#9a6700"),
    "revoked": ("This certificate was revoked", "#cf222e"),
    "not_found": ("No certificate has this code", "#cf222e"),
}


class VerificationPublic(BaseModel):
    """What anyone holding a code may learn: who, which course, when, and whether it stands.
    Never the holder's email address or the job it came from."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    code: str
    valid: bool
    status: Literal["valid", "expired", "revoked", "not_found"]
    fullname: str | None = None
    course_name: str | None = None
    issued_at: str | None = None
    expires_at: str | None = None
    revoked_at: str | None = None
    revoke_reason: str | None = None


def _lookup(code: str) -> dict:
    # Deferred: the certificate service loads fpdf2, which the rest of `mani serve` never needs.
    from backend.certificates.service import verify

    with session_scope(read_only=True) as session:
        found = verify(session=session, code=code)
    found = {**found, "code": str(found.get("code") or code)[:64]}
    return VerificationPublic.model_validate(
        {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in found.items()}).model_dump(mode="json")


async def verify_certificate(request: Request) -> Response:
    code = request.path_params["code"]
    result = await run_in_threadpool(_lookup, code)
    status = 404 if result["status"] == "not_found" else 200
    wants_json = request.query_params.get("format") == "json" or "application/json" in request.headers.get("accept", "")
    if wants_json:
        return JSONResponse(result, status_code=status)
    return HTMLResponse(_page(code, result), status_code=status)


def _page(code: str, result: dict) -> str:
    title, colour = VERDICTS.get(result["status"], VERDICTS["not_found"])
    rows = [
        ("Code", code),
        ("Name", result.get("fullname")),
        ("Course", result.get("course_name")),
        ("Issued", (result.get("issued_at") or "")[:10] or None),
        ("Expires", (result.get("expires_at") or "")[:10] or None),
        ("Revoked", (result.get("revoked_at") or "")[:10] or None),
        ("Reason", result.get("revoke_reason")),
    ]
    details = "".join(
        f"<tr><th>{escape(label)}</th><td>{escape(str(value))}</td></tr>" for label, value in rows if value
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:36rem;margin:3rem auto;padding:0 1rem;color:#1f2328}}
h1{{color:{colour};font-size:1.5rem}}th{{text-align:left;padding:.3rem 1.5rem .3rem 0;color:#59636e;font-weight:normal}}
td{{padding:.3rem 0}}</style></head>
<body><h1>{escape(title)}</h1><table>{details}</table></body></html>
"""
