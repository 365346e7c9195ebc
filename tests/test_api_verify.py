"""`GET /verify/{code}`, where each certificate's QR code leads, served by `mani serve`."""

from __future__ import annotations

import json

import httpx
import pytest
from sqlalchemy import select

from api.app import create_app
from backend.certificates.service import revoke
from models import Job, Recipient
from models.db import session_scope
from tests.support.engine import run_inline, submit, write_csv


pytestmark = pytest.mark.usefixtures("qpdf_checked")  # qpdf checks every PDF made here


def test_the_verification_page_answers_people_and_scripts(sqlite_db, tmp_path, serve_app):  # noqa: F811
    rows = [{"email": "zoe@example.com", "firstname": "Zoë", "lastname": "Øster"},
            {"email": "dmitri@example.com", "firstname": "Дмитрий", "lastname": "Иванов"}]
    job_id = submit(write_csv(tmp_path / "c.csv", rows), "certificate", template_data={"course_name": "Fire <Safety>"})
    assert run_inline(job_id).status == "completed"
    with session_scope() as session:
        valid, revoked = session.execute(select(Recipient.certificate_code).where(Recipient.job_id == job_id)
                                         .order_by(Recipient.id)).scalars().all()
        revoke(session=session, code=revoked, reason="issued in error", actor="t", source="test")
    base = serve_app(create_app())

    page = httpx.get(f"{base}/verify/{valid}")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "Valid certificate" in page.text and "Zoë Øster" in page.text
    assert "Fire &lt;Safety&gt;" in page.text  # escaped, never markup

    document = httpx.get(f"{base}/verify/{valid.lower()}", headers={"Accept": "application/json"}).json()
    assert (document["valid"], document["status"], document["fullname"]) == (True, "valid", "Zoë Øster")
    # The holder's address and the job stay private (issue 11): not in the JSON, not on the page.
    assert "email" not in document and "job_id" not in document and "zoe@example.com" not in page.text
    with session_scope() as session:
        job_uuid = session.get(Job, job_id).uuid
    assert job_uuid not in json.dumps(document) and job_uuid not in page.text

    gone = httpx.get(f"{base}/verify/{revoked}?format=json").json()
    assert (gone["valid"], gone["status"]) == (False, "revoked")
    assert "was revoked" in httpx.get(f"{base}/verify/{revoked}").text

    missing = httpx.get(f"{base}/verify/MANI-0000-0000-0000")
    assert missing.status_code == 404 and "No certificate has this code" in missing.text
