"""The `mani` command line: JSON shapes, exit codes (0 ok, 1 failed, 2 unusable input), no tracebacks."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

import cli
from backend.core.settings import reset_settings_cache
from models import Job, Recipient
from models.db import session_scope
from tests.support.engine import people, write_csv

runner = CliRunner()


def mani(*args: str):
    result = runner.invoke(cli.app, list(args))
    assert "Traceback" not in result.output, result.output
    return result


def job_rows() -> int:
    with session_scope() as session:
        return session.execute(select(func.count()).select_from(Job)).scalar_one()


@pytest.fixture
def embedded(sqlite_db):
    import actors.broker

    actors.broker.reset()
    yield
    actors.broker.reset()


def test_submit_wait_runs_the_job_on_the_embedded_default(embedded, tmp_path):
    rows = people(5) + [{"email": "not-an-address"}, {"email": "USER0@example.com"}, {"email": "", "firstname": "Nobody"}]
    result = mani("submit", "--csv", str(write_csv(tmp_path / "u.csv", rows)), "--type", "welcome_std", "--wait", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["status"] == "completed"
    assert (document["total"], document["accepted"], document["skipped_duplicates"]) == (8, 5, 0)
    assert document["counts"] == {"sent": 5}
    reasons = {row["line"]: row["reason"] for row in document["rejected"]}
    assert set(reasons) == {7, 8, 9}
    assert "invalid email" in reasons[7] and "duplicate of line 2" in reasons[8] and "missing email" in reasons[9]
    assert len(list((tmp_path / "mani-data" / "outbox").rglob("*.eml"))) == 5

    shown = json.loads(mani("jobs", "show", document["job_id"][:8], "--json").stdout)
    assert {k: shown[k] for k in ("job_id", "type", "status", "total")} == {
        "job_id": document["job_id"], "type": "welcome_std", "status": "completed", "total": 5}
    assert [{k: b[k] for k in ("number", "status", "size", "sent", "failed", "attempts")} for b in shown["batches"]] == [
        {"number": 1, "status": "completed", "size": 5, "sent": 5, "failed": 0, "attempts": 1}]
    recipients = json.loads(mani("jobs", "recipients", str(document["id"]), "--json").stdout)
    assert set(recipients[0]) >= {"userid", "email", "status", "attempts", "error", "certificate_url", "sent_at"}
    assert [r["status"] for r in recipients] == ["sent"] * 5
    listed = json.loads(mani("jobs", "list", "--json").stdout)
    assert [j["job_id"] for j in listed] == [document["job_id"]]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"name,mail\nA,a@example.com\n", "has no 'email' column"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00", "is not a text file"),
        (b"email,username\nnope,a\n@@,b\n", "no valid rows"),
        (b"email,username\n\xff\xfeb@example.com,b\n", "utf-8"),
        (b"", "is empty"),
    ],
)
def test_unusable_files_exit_2_with_one_sentence_and_create_nothing(sqlite_db, tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    result = mani("submit", "--csv", str(path), "--type", "welcome_std")
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and message in result.stderr.lower()
    assert len(result.stderr.strip().splitlines()) == 1
    assert job_rows() == 0
    with session_scope() as session:
        assert session.execute(select(func.count()).select_from(Recipient)).scalar_one() == 0


def test_missing_file_unknown_type_and_missing_variable_exit_2(sqlite_db, tmp_path):
    assert mani("submit", "--csv", str(tmp_path / "nope.csv"), "--type", "welcome_std").exit_code == 2
    path = write_csv(tmp_path / "u.csv", people(2))
    unknown = mani("submit", "--csv", str(path), "--type", "newsletter")
    assert unknown.exit_code == 2 and "welcome_std" in unknown.stderr
    missing = mani("submit", "--csv", str(path), "--type", "welcome_lic")
    assert missing.exit_code == 2 and "course_name" in missing.stderr
    assert job_rows() == 0


def test_unknown_job_and_bad_transitions(sqlite_db, tmp_path):
    assert mani("jobs", "show", "424242").exit_code == 2
    path = write_csv(tmp_path / "u.csv", people(2))
    created = json.loads(mani("submit", "--csv", str(path), "--type", "welcome_std", "--json").stdout)
    assert created["status"] == "pending"
    retry = mani("jobs", "retry", str(created["id"]))
    assert retry.exit_code == 1 and "no failed recipients" in retry.stderr
    paused = json.loads(mani("jobs", "pause", str(created["id"]), "--json").stdout)
    assert paused["status"] == "paused"
    assert mani("jobs", "resume", str(created["id"])).exit_code == 0
    cancelled = json.loads(mani("jobs", "cancel", str(created["id"]), "--json").stdout)
    assert (cancelled["status"], cancelled["recipients"]) == ("cancelled", 2)
    assert mani("jobs", "cancel", str(created["id"])).exit_code == 1


def test_submit_with_redis_down_stores_the_job_and_exits_0(sqlite_db, tmp_path, monkeypatch):
    import actors.broker

    monkeypatch.setenv("MANI_REDIS_URL", "redis://127.0.0.1:1/0")  # nothing listens there
    reset_settings_cache()
    actors.broker.reset()
    try:
        result = mani("submit", "--csv", str(write_csv(tmp_path / "u.csv", people(3))), "--type", "welcome_std")
    finally:
        actors.broker.reset()
    assert result.exit_code == 0, result.output
    assert "stored and will be dispatched" in result.stdout
    with session_scope() as session:
        job = session.execute(select(Job)).scalar_one()
        assert (job.status, job.total, job.enqueued_at) == ("pending", 3, None)


def test_db_upgrade_and_current(sqlite_db):
    from alembic.script import ScriptDirectory

    from models.db import MIGRATIONS_DIR

    head = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
    assert json.loads(mani("db", "upgrade", "--json").stdout)["to"] == head
    current = json.loads(mani("db", "current", "--json").stdout)
    assert current["database"] == current["code"] == head


@pytest.mark.parametrize(("provider", "message"), [("postfix", "Unknown email provider 'postfix'"),
                                                   ("smtp", "set MANI_SMTP_URL")])
def test_an_unusable_email_provider_is_refused_at_submit(sqlite_db, tmp_path, monkeypatch, provider, message):
    monkeypatch.setenv("MANI_EMAIL_PROVIDER", provider)
    reset_settings_cache()
    result = mani("submit", "--csv", str(write_csv(tmp_path / "u.csv", people(2))), "--type", "welcome_std")
    assert result.exit_code == 2 and message in result.stderr
    assert job_rows() == 0
