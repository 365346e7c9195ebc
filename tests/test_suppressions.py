"""The suppression list: a bounce or complaint (through the real webhook endpoint) keeps the
address out of the company's next job, admins manage the list from the CLI, every change is
audited, the intake asks once per chunk, and an exported list is safe to open in a spreadsheet."""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
import time
import uuid

import httpx
import pytest
from sqlalchemy import event, select
from typer.testing import CliRunner

import cli
from api.app import create_app
from api.common import ApiConfig
from backend.companies import suppressions
from backend.core.settings import reset_settings_cache
from backend.jobs.create import DUPLICATE_CHUNK
from backend.jobs.preview import preview_csv
from models import AuditEntry, Job, Recipient, RecipientStatus, Suppression
from models.db import get_engine, session_scope
from tests.support.callbacks import add_company
from tests.support.engine import people, run_inline, submit, write_csv

pytestmark = pytest.mark.usefixtures("cb_db")
MAILGUN_KEY = "key-test-signing"
runner = CliRunner()


def mani(*args: str):
    result = runner.invoke(cli.app, list(args))
    assert "Traceback" not in result.output, result.output
    return result


def _recipients(job_id: int) -> dict[str, Recipient]:
    with session_scope() as session:
        rows = session.execute(select(Recipient).where(Recipient.job_id == job_id)).scalars().all()
        return {row.email_norm: row for row in rows}


def _mailgun(event_name: str, recipient: Recipient, job_uuid: str, **data) -> dict:
    stamp, token = str(int(time.time())), uuid.uuid4().hex
    signature = hmac.new(MAILGUN_KEY.encode(), (stamp + token).encode(), hashlib.sha256).hexdigest()
    return {"signature": {"timestamp": stamp, "token": token, "signature": signature},
            "event-data": {"event": event_name, "id": uuid.uuid4().hex, "recipient": recipient.email,
                           "message": {"headers": {"message-id": f"mani.{job_uuid}.{recipient.id}@mani.localhost"}},
                           "delivery-status": {"code": 550, "description": "5.1.1 No such user"}, **data}}


def test_a_bounced_address_is_skipped_by_the_next_job(serve_app, smtp_sink, monkeypatch, tmp_path):
    monkeypatch.setenv("MANI_EMAIL_PROVIDER", "smtp")
    monkeypatch.setenv("MANI_SMTP_URL", smtp_sink.url)
    reset_settings_cache()
    add_company("acme")
    add_company("other")
    csv_path = write_csv(tmp_path / "u.csv", people(4))
    first = submit(csv_path, company_id="acme")
    assert run_inline(first).status == "completed"
    assert smtp_sink.wait_for(4)
    with session_scope() as session:
        job_uuid = session.get(Job, first).uuid
    sent = _recipients(first)

    url = serve_app(create_app(config=ApiConfig(mailgun_signing_key=MAILGUN_KEY)))
    with httpx.Client(base_url=url, timeout=30) as client:
        bounce = _mailgun("failed", sent["user1@example.com"], job_uuid, severity="permanent")
        assert client.post("/webhooks/mailgun", json=bounce).json()["events"][0]["outcome"] == "applied"
        complaint = _mailgun("complained", sent["user2@example.com"], job_uuid)
        assert client.post("/webhooks/mailgun", json=complaint).status_code == 200
        # A temporary failure is no reason to suppress anyone.
        soft = _mailgun("failed", sent["user3@example.com"], job_uuid, severity="temporary")
        assert client.post("/webhooks/mailgun", json=soft).status_code == 200

    with session_scope() as session:
        listed = {row.email_norm: row for row in session.execute(select(Suppression)).scalars()}
        audits = session.execute(select(AuditEntry).where(AuditEntry.action.like("suppression.%"))).scalars().all()
    assert set(listed) == {"user1@example.com", "user2@example.com"}
    assert {row.company_key for row in listed.values()} == {"acme"}
    assert listed["user1@example.com"].source == "bounce" and "No such user" in listed["user1@example.com"].reason
    assert listed["user2@example.com"].source == "complaint" and listed["user1@example.com"].job_id == first
    assert sorted(entry.action for entry in audits) == ["suppression.bounce", "suppression.complaint"]
    assert all(entry.actor == "webhook:mailgun" for entry in audits)

    # The next job of the same company (duplicates allowed, so only the list keeps anyone out).
    second = submit(csv_path, company_id="acme", allow_duplicates=True)
    assert run_inline(second).status == "completed"
    recipients = _recipients(second)
    assert recipients["user1@example.com"].status == RecipientStatus.SUPPRESSED
    assert recipients["user1@example.com"].last_error.startswith("suppressed: bounce: ")
    assert recipients["user1@example.com"].batch_id is None and recipients["user1@example.com"].attempts == 0
    assert recipients["user2@example.com"].status == RecipientStatus.SUPPRESSED
    assert "complaint" in recipients["user2@example.com"].last_error
    assert {recipients[f"user{i}@example.com"].status for i in (0, 3)} == {RecipientStatus.SENT}
    assert smtp_sink.wait_for(6)
    time.sleep(0.2)
    received = [address for message in smtp_sink.messages[4:] for address in message.rcpt_tos]
    assert sorted(received) == ["user0@example.com", "user3@example.com"]
    with session_scope() as session:
        assert session.get(Job, second).total == 2

    # Another company's list is its own.
    third = submit(csv_path, company_id="other", allow_duplicates=True)
    assert {r.status for r in _recipients(third).values()} == {RecipientStatus.PENDING}


def test_the_intake_asks_the_list_once_per_chunk(tmp_path):
    with session_scope() as session:
        suppressions.add(session=session, company_id=None, source="admin", actor="test", audit_source="cli",
                         entries=[suppressions.Entry(email=f"user{i}@example.com", reason="test") for i in (5, 2400)])
    path = write_csv(tmp_path / "big.csv", people(2 * DUPLICATE_CHUNK + 500))
    statements: list[str] = []

    def count(conn, cursor, statement, *args):
        if "suppressions" in statement:
            statements.append(statement)

    engine = get_engine()
    event.listen(engine, "before_cursor_execute", count)
    try:
        job_id = submit(path)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert len(statements) == 3  # 2,500 rows: three chunks, one query each
    statuses = {email: row.status for email, row in _recipients(job_id).items()}
    assert sorted(e for e, s in statuses.items() if s == RecipientStatus.SUPPRESSED) == [
        "user2400@example.com", "user5@example.com"]
    with session_scope() as session:
        preview = preview_csv(session=session, path=path, job_type="welcome_std", allow_duplicates=True)
    assert preview.suppressed_count == 2 and preview.accepted == 2 * DUPLICATE_CHUNK + 498


def test_a_job_of_only_suppressed_addresses_completes_with_nothing_sent(tmp_path):
    with session_scope() as session:
        suppressions.add(session=session, company_id=None, source="admin", actor="test", audit_source="cli",
                         entries=[suppressions.Entry(email="user0@example.com", reason="asked to stop")])
    result = mani("submit", "--csv", str(write_csv(tmp_path / "one.csv", people(1))), "--type", "welcome_std",
                  "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["status"] == "completed" and document["counts"] == {"suppressed": 1}
    [row] = json.loads(mani("jobs", "recipients", str(document["id"]), "--json").stdout)
    assert row["status"] == "suppressed" and row["error"] == "suppressed: admin: asked to stop"


def test_cli_add_list_remove_import_export(tmp_path):
    add_company("acme")
    result = mani("suppressions", "add", "A@Example.com", "b@example.com", "--company", "acme", "--reason", "left")
    assert result.exit_code == 0 and "2 of 2 added" in result.stdout
    assert "1 of 2 added" in mani("suppressions", "add", "a@example.com", "c@example.com", "--company", "acme").stdout
    listed = json.loads(mani("suppressions", "list", "--company", "acme", "--json").stdout)
    assert listed["total"] == 3 and {row["email"] for row in listed["suppressions"]} == {
        "a@example.com", "b@example.com", "c@example.com"}
    assert set(listed["suppressions"][0]) == {"id", "company_id", "email", "source", "reason", "job_id",
                                              "created_by", "created_at"}
    assert json.loads(mani("suppressions", "list", "--json").stdout)["total"] == 0  # no-company list is apart

    bad = mani("suppressions", "add", "not-an-address", "--company", "acme")
    assert bad.exit_code == 2 and "'not-an-address' is not a valid email address" in bad.stderr
    unknown = mani("suppressions", "list", "--company", "nope")
    assert unknown.exit_code == 2 and "company 'nope' does not exist" in unknown.stderr

    good = tmp_path / "good.csv"
    good.write_text("email,reason\n=cmd@example.com,=HYPERLINK(\"http://x\")\nd@example.com,\n", encoding="utf-8")
    broken = tmp_path / "broken.csv"
    broken.write_text("email,reason\ne@example.com,x\n\nnobody,y\n", encoding="utf-8")
    failed = mani("suppressions", "import", str(broken), "--company", "acme")
    assert failed.exit_code == 2 and "line 4: 'nobody' is not a valid email address" in failed.stderr
    imported = mani("suppressions", "import", str(good), "--company", "acme", "--json")
    assert imported.exit_code == 0 and json.loads(imported.stdout) == {"company_id": "acme", "rows": 2, "added": 2}

    out = tmp_path / "export.csv"
    assert mani("suppressions", "export", "--company", "acme", "--out", str(out)).exit_code == 0
    rows = list(csv.reader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert rows[0] == list(suppressions.EXPORT_COLUMNS) and len(rows) == 6
    by_email = {row[1]: row for row in rows[1:]}
    assert "'=cmd@example.com" in by_email and by_email["'=cmd@example.com"][3] == "'=HYPERLINK(\"http://x\")"
    assert by_email["d@example.com"][3] == "imported"
    for row in rows[1:]:
        assert not any(cell.startswith(("=", "+", "-", "@", "\t", "\r")) for cell in row)

    removed = mani("suppressions", "remove", "a@example.com", "zzz@example.com", "--company", "acme", "--json")
    assert removed.exit_code == 0 and json.loads(removed.stdout)["removed"] == 1
    assert mani("suppressions", "remove", "zzz@example.com", "--company", "acme").exit_code == 1
    with session_scope() as session:
        actions = [entry.action for entry in session.execute(
            select(AuditEntry).where(AuditEntry.action.like("suppression.%")).order_by(AuditEntry.id)).scalars()]
    assert actions == ["suppression.admin", "suppression.admin", "suppression.import", "suppression.remove",
                       "suppression.remove"]


@pytest.mark.parametrize("value, expected", [
    ("=1+1", "'=1+1"), ("+1", "'+1"), ("-1", "'-1"), ("@SUM(A1)", "'@SUM(A1)"), ("\tx", "'\tx"), ("\rx", "'\rx"),
    ("plain", "plain"), ("a=b", "a=b"), (None, ""), (7, "7"),
])
def test_spreadsheet_safe_cells(value, expected):
    assert suppressions.spreadsheet_safe(value) == expected
