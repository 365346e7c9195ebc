"""`mani certificates ...` through Typer's runner, on the embedded SQLite store."""

from __future__ import annotations

import pytest

import json
import subprocess
import zipfile

from sqlmodel import select
from typer.testing import CliRunner

from backend.certificates import service
from cli_certificates import certificates_app as app
from models import Recipient
from models.db import session_scope
from tests.test_certificates_service import make_job

pytestmark = pytest.mark.usefixtures("qpdf_checked")  # qpdf checks every PDF made here

runner = CliRunner()


def issue(count: int = 2) -> tuple[str, list[str]]:
    with session_scope() as session:
        job = make_job(session)
        recipients = list(session.exec(select(Recipient).where(Recipient.job_id == job.id).order_by(Recipient.id)))[:count]
        results = service.prepare_batch(session=session, job=job, recipients=recipients)
        return job.uuid, [results[r.id].code for r in recipients]


def test_preview_writes_a_sample_pdf(sqlite_db, tmp_path):
    out = tmp_path / "sample.pdf"
    result = runner.invoke(app, ["preview", "--template", "default", "--out", str(out), "--name", "Αθηνά Παππά"])
    assert result.exit_code == 0, result.output
    text = subprocess.run(["pdftotext", str(out), "-"], capture_output=True, check=True).stdout.decode()
    assert "Αθηνά Παππά" in text and "MANI-" in text


def test_preview_of_a_bad_template_exits_2(sqlite_db, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[page]\nsize = "A9"\n[[element]]\ntext = "{nope}"\ny = 1\n', encoding="utf-8")
    result = runner.invoke(app, ["preview", "--template", str(bad), "--out", str(tmp_path / "x.pdf")])
    assert result.exit_code == 2
    assert "page: size 'A9' is not one of" in result.output and "element 1: unknown placeholder 'nope'" in result.output


def test_verify_revoke_and_exit_codes(sqlite_db):
    _, (code, other) = issue()
    result = runner.invoke(app, ["verify", code, "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert {k: document[k] for k in ("valid", "status", "email", "course_name")} == {
        "valid": True, "status": "valid", "email": "zoe@example.com", "course_name": "Fire Safety — Level 2"}
    assert "VALID" in runner.invoke(app, ["verify", code.lower()]).output

    result = runner.invoke(app, ["revoke", code, "--reason", "duplicate"])
    assert result.exit_code == 0 and f"revoked {code}" in result.output
    result = runner.invoke(app, ["verify", code, "--json"])
    assert result.exit_code == 1 and json.loads(result.output)["status"] == "revoked"
    assert runner.invoke(app, ["revoke", code]).exit_code == 1  # already revoked

    result = runner.invoke(app, ["verify", "MANI-0000-0000-0000", "--json"])
    assert result.exit_code == 2 and json.loads(result.output)["status"] == "not_found"
    assert runner.invoke(app, ["revoke", "MANI-0000-0000-0000"]).exit_code == 2
    assert runner.invoke(app, ["verify", other]).exit_code == 0


def test_list_and_export(sqlite_db, tmp_path):
    job_uuid, codes = issue(3)
    listed = json.loads(runner.invoke(app, ["list", job_uuid, "--json"]).output)
    assert [row["code"] for row in listed] == codes
    result = runner.invoke(app, ["export", job_uuid[:8], "--zip", str(tmp_path / "job.zip"), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["certificates"] == 3
    with zipfile.ZipFile(tmp_path / "job.zip") as archive:
        pdfs = [n for n in archive.namelist() if n.endswith(".pdf")]
        assert sorted(n[-23:-4] for n in pdfs) == sorted(codes)
    assert runner.invoke(app, ["export", "nosuchjob", "--zip", str(tmp_path / "x.zip")]).exit_code == 2
