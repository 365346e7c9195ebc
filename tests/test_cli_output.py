"""What the `mani` command line prints: true messages, validated filters, clean help, tables that
fit 80 columns (or show cells whole with --wide), one `error:` line on stderr, quiet libraries."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select, text
from typer.testing import CliRunner

import cli
from backend.core.settings import reset_settings_cache
from models import AuditEntry, Job, Recipient
from models.db import get_engine, session_scope
from tests.support.engine import people, write_csv

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]


def mani(*args: str, env: dict | None = None):
    result = runner.invoke(cli.app, list(args), env=env)
    assert "Traceback" not in result.output, result.output
    return result


def count(model) -> int:
    with session_scope() as session:
        return session.execute(select(func.count()).select_from(model)).scalar_one()


@pytest.fixture
def embedded(sqlite_db):
    import actors.broker

    actors.broker.reset()
    yield
    actors.broker.reset()


# --- submit --dry-run ----------------------------------------------------------------------------


def test_dry_run_counts_every_row_and_writes_nothing(embedded, tmp_path):
    """More than 1,000 duplicates and more than 1,000 rejected rows: the counts are complete."""
    earlier = write_csv(tmp_path / "earlier.csv", people(1200))
    assert mani("submit", "--csv", str(earlier), "--type", "welcome_std", "--wait", "--json").exit_code == 0
    jobs, recipients = count(Job), count(Recipient)

    rows = people(1200) + people(30, start=5000) + [{"email": f"broken{i}.example.com"} for i in range(1100)]
    path = write_csv(tmp_path / "next.csv", rows)
    result = mani("submit", "--csv", str(path), "--type", "welcome_std", "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert (document["accepted"], document["skipped_duplicates"], document["rejected_count"]) == (30, 1200, 1100)
    assert len(document["rejected"]) == 1000  # the rows shown; the count above is complete
    assert document["rejected"][0] == {"line": 1232, "email": "broken0.example.com",
                                       "reason": document["rejected"][0]["reason"]}
    assert "email" in document["rejected"][0]["reason"].lower()
    first = document["first_message"]
    assert first["to"] == "user5000@example.com" and first["subject"] and "First5000" in first["text"]
    assert (count(Job), count(Recipient)) == (jobs, recipients)  # nothing written

    human = mani("submit", "--csv", str(path), "--type", "welcome_std", "--dry-run")
    assert human.exit_code == 0
    summary = human.stdout.splitlines()[0]
    assert "30 would be sent, 1,200 skipped as recent duplicates" in summary and "1,100 rows rejected" in summary
    assert "Subject: " + first["subject"] in human.stdout
    assert (count(Job), count(Recipient)) == (jobs, recipients)


def test_dry_run_of_an_unusable_file_exits_2(sqlite_db, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("name\nA\n", encoding="utf-8")
    result = mani("submit", "--csv", str(path), "--type", "welcome_std", "--dry-run")
    assert result.exit_code == 2 and result.stderr.startswith("error: ") and "'email' column" in result.stderr


# --- true messages -------------------------------------------------------------------------------


def test_one_row_rejected_is_singular_and_the_outbox_line_only_when_files_were_written(embedded, tmp_path):
    rows = people(3) + [{"email": "not-an-address"}]
    result = mani("submit", "--csv", str(write_csv(tmp_path / "u.csv", rows)), "--type", "welcome_std", "--wait")
    assert result.exit_code == 0, result.output
    assert "3 recipients accepted" in result.stdout and "1 row rejected." in result.stdout
    assert "The messages are .eml files in" in result.stdout
    assert list((tmp_path / "mani-data" / "outbox").rglob("*.eml"))


def test_an_smtp_job_names_no_outbox(embedded, smtp_sink, tmp_path, monkeypatch):
    monkeypatch.setenv("MANI_EMAIL_PROVIDER", "smtp")
    monkeypatch.setenv("MANI_SMTP_URL", smtp_sink.url)
    reset_settings_cache()
    result = mani("submit", "--csv", str(write_csv(tmp_path / "u.csv", people(1))), "--type", "welcome_std", "--wait")
    assert result.exit_code == 0, result.output
    assert "1 recipient accepted" in result.stdout and "0 rows rejected" in result.stdout
    assert "outbox" not in result.stdout and "eml" not in result.stdout
    assert len(smtp_sink.messages) == 1


def test_retry_counts_what_it_retried_and_warns_that_no_worker_runs(embedded, smtp_sink, tmp_path, monkeypatch):
    monkeypatch.setenv("MANI_EMAIL_PROVIDER", "smtp")
    monkeypatch.setenv("MANI_SMTP_URL", smtp_sink.url)
    reset_settings_cache()
    reason = "5.1.1 <user1@example.com>: Recipient address rejected: User unknown in virtual mailbox table " * 2
    smtp_sink.fail("user1@example.com", code=550, text=reason.strip())
    smtp_sink.fail("user2@example.com", code=550, text=reason.strip())
    submitted = mani("submit", "--csv", str(write_csv(tmp_path / "u.csv", people(4))), "--type", "welcome_std",
                     "--wait", "--json")
    job = json.loads(submitted.stdout)
    assert submitted.exit_code == 1 and job["counts"]["sent"] == 2

    with session_scope() as session:
        from backend.jobs.queries import job_detail

        asked = job_detail(session=session, job_ref=str(job["id"])).retryable  # what the console asks
    retried = mani("jobs", "retry", str(job["id"]))
    assert retried.exit_code == 0, retried.output
    assert f"{asked} recipients set to retry." in retried.stdout and asked == 2
    assert "Nothing sends until a worker runs" in retried.stdout and "mani worker" in retried.stdout
    assert "queued" not in retried.stdout

    # At 80 columns the long SMTP error wraps (nothing cut); --wide prints it whole on one line.
    env = {"COLUMNS": "80"}
    with session_scope() as session:
        session.execute(text("UPDATE recipients SET status='failed', last_error=:e WHERE email='user1@example.com'"),
                        {"e": reason.strip()})
    narrow = mani("jobs", "recipients", str(job["id"]), env=env)
    assert max(len(line) for line in narrow.stdout.splitlines()) <= 80
    assert "virtual mailbox table" in " ".join(narrow.stdout.split())
    assert "…" not in narrow.stdout
    wide = mani("jobs", "recipients", str(job["id"]), "--wide", env=env)
    assert any(reason.strip() in line for line in wide.stdout.splitlines())


def test_companies_set_prints_values_as_a_person_writes_them(sqlite_db):
    assert mani("companies", "add", "acme", "--name", "Acme").exit_code == 0
    result = mani("companies", "set", "acme", "enabled=true", "threshold=500")
    assert result.exit_code == 0, result.output
    assert "enabled: off → on" in result.stdout and "threshold: " in result.stdout
    assert "None" not in result.stdout and "True" not in result.stdout
    cleared = mani("companies", "set", "acme", "enabled=")
    assert "enabled: on → off (from " in cleared.stdout


def test_the_audit_log_keeps_unicode_in_the_database_and_in_json(sqlite_db):
    assert mani("companies", "add", "nc", "--name", "Nëw Co").exit_code == 0
    with get_engine().connect() as connection:
        stored = connection.execute(text("SELECT details FROM audit_log")).scalar_one()
    assert "Nëw Co" in stored and "\\u00eb" not in stored
    listed = mani("audit", "--json")
    assert '"Nëw Co"' in listed.stdout and "\\u00eb" not in listed.stdout
    assert json.loads(listed.stdout)[0]["details"] == {"name": "Nëw Co"}
    assert "Nëw Co" in mani("audit").stdout
    with session_scope() as session:
        assert session.execute(select(AuditEntry.details)).scalar_one() == {"name": "Nëw Co"}


# --- filters validate ----------------------------------------------------------------------------


@pytest.mark.parametrize(("args", "named"), [
    (("jobs", "list", "--status", "bogus"), "partial_failure"),
    (("jobs", "list", "--type", "nope"), "welcome_std"),
    (("jobs", "recipients", "1", "--status", "nope"), "permanently_failed"),
    (("callbacks", "list", "--status", "nope"), "delivered"),
    (("submit", "--csv", "x.csv", "--type", "welcome_std", "--cloud", "sky"), "force_local"),
])
def test_an_unknown_choice_exits_2_naming_the_valid_values(sqlite_db, args, named):
    result = mani(*args)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr.startswith("error: ") and named in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_an_unknown_company_exits_2_naming_the_known_ones(sqlite_db):
    assert mani("companies", "add", "acme", "--name", "Acme").exit_code == 0
    for args in (("rates", "--company", "nope"), ("jobs", "list", "--company", "nope")):
        result = mani(*args)
        assert result.exit_code == 2, result.output
        assert result.stderr.startswith("error: unknown company 'nope'") and "acme" in result.stderr
    assert mani("rates", "--company", "acme").exit_code == 0
    assert mani("jobs", "list", "--company", "acme").exit_code == 0


# --- help and lists ------------------------------------------------------------------------------


def _commands(group, path=()):
    import typer.main

    command = typer.main.get_command(group) if not path else group
    for name, sub in getattr(command, "commands", {}).items():
        yield (*path, name)
        yield from _commands(sub, (*path, name))


def test_help_shows_no_python_types_and_no_jargon():
    for path in [(), *_commands(cli.app)]:
        result = mani(*path, "--help", env={"COLUMNS": "120"})
        assert result.exit_code == 0, (path, result.output)
        for bad in ("<bool>", "<list[", "seeds'", "seed target"):
            assert bad not in result.stdout, (path, bad)
    submit_help = mani("submit", "--help", env={"COLUMNS": "120"}).stdout
    assert "KEY=VALUE" in submit_help and "--dry-run" in submit_help
    assert "welcome_std|welcome_lic" in submit_help


def test_jobs_list_fits_80_columns_without_cutting_statuses(embedded, smtp_sink, tmp_path, monkeypatch):
    monkeypatch.setenv("MANI_EMAIL_PROVIDER", "smtp")
    monkeypatch.setenv("MANI_SMTP_URL", smtp_sink.url)
    reset_settings_cache()
    smtp_sink.fail("user0@example.com", code=550)
    csv = write_csv(tmp_path / "u.csv", people(3))
    assert mani("submit", "--csv", str(csv), "--type", "welcome_std", "--wait", "--allow-duplicates").exit_code == 1
    listed = mani("jobs", "list", env={"COLUMNS": "80"})
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["ID", "TYPE", "STATUS", "COMPANY", "SENT/TOTAL", "FAILED", "CREATED"]
    assert max(len(line) for line in lines) <= 80
    row = lines[1]
    assert "partial_failure" in row and "welcome_std" in row and re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d", row)
    assert "…" not in listed.stdout
    wide = mani("jobs", "list", "--wide", env={"COLUMNS": "80"})
    assert wide.stdout.splitlines()[0].split()[:2] == ["ID", "JOB"]
    with session_scope() as session:
        uuid = session.execute(select(Job.uuid)).scalar_one()
    assert uuid in wide.stdout


def test_certificates_list_has_a_header_and_verify_errors_go_to_stderr(embedded, tmp_path):
    rows = [{**person, "course_name": "Fire Safety"} for person in people(2)]
    created = mani("submit", "--csv", str(write_csv(tmp_path / "c.csv", rows)), "--type", "certificate", "--wait",
                   "--json")
    assert created.exit_code == 0, created.output
    job_id = str(json.loads(created.stdout)["id"])
    listed = mani("certificates", "list", job_id)
    assert listed.stdout.splitlines()[0].split() == ["CODE", "STATUS", "EMAIL", "NAME"]
    assert len(listed.stdout.splitlines()) == 3

    garbage = mani("certificates", "verify", "garbage")
    assert garbage.exit_code == 2 and garbage.stdout == ""
    assert garbage.stderr.startswith("error: 'garbage' is not a certificate code")
    unknown = mani("certificates", "verify", "MANI-0000-0000-0000")
    assert unknown.exit_code == 2 and unknown.stdout == "" and unknown.stderr.startswith("error: no certificate")


# --- quiet libraries -----------------------------------------------------------------------------


def test_companies_test_says_one_plain_line_per_failed_check(sqlite_db, monkeypatch):
    monkeypatch.setenv("MANI_SECRET_KEY", "a" * 43 + "=")
    reset_settings_cache()
    env = {**os.environ, "MANI_SECRET_KEY": "a" * 43 + "="}
    run = lambda *args: subprocess.run([sys.executable, "-m", "cli", *args], cwd=ROOT, env=env,  # noqa: E731
                                       capture_output=True, text=True, timeout=120)
    assert run("companies", "add", "acme", "--name", "Acme").returncode == 0
    assert run("companies", "set", "acme", "enabled=true", "email_provider=mailgun", "mailgun_domain=mg.example.com",
               "mailgun_api_key=key-bad-000000000000", "mailgun_api_url=http://127.0.0.1:1").returncode == 0
    tested = run("companies", "test", "acme")
    assert tested.returncode == 1
    assert "CRITICAL" not in tested.stderr and tested.stderr == ""
    failed = [line for line in tested.stdout.splitlines() if line.startswith("FAIL")]
    assert failed == [failed[0]] and "http://127.0.0.1:1 refused the connection" in failed[0]
    assert "HTTPConnectionPool" not in tested.stdout and "Errno" not in tested.stdout


def test_worker_starts_without_migration_chatter(mani_env, tmp_path):
    env = {**os.environ, "MANI_DATA_DIR": str(tmp_path / "fresh")}
    worker = subprocess.Popen([sys.executable, "-m", "cli", "worker"], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        database = tmp_path / "fresh" / "mani.db"
        for _ in range(200):
            if database.exists() and _migrated(database):
                break
            subprocess.run(["sleep", "0.1"])
        worker.terminate()
        _, stderr = worker.communicate(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert _migrated(database)
    assert stderr.splitlines()[0].startswith("mani worker: 1 process(es)")
    assert "alembic" not in stderr and "setup plugin" not in stderr.lower()
    assert "WARNING" not in stderr  # one Dramatiq worker per lane on one broker is on purpose


def _migrated(database: Path) -> bool:
    import sqlite3

    try:
        with sqlite3.connect(database) as connection:
            return connection.execute("SELECT count(*) FROM alembic_version").fetchone()[0] == 1
    except sqlite3.Error:
        return False
