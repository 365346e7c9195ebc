"""`mani moodle check|preview|courses` and `mani submit --moodle`, against the fixture site on real
MariaDB and PostgreSQL: JSON shapes, exit codes (0, 1, 2), settings per company, the password
never shown, and one certificate per completion across runs."""

from __future__ import annotations

import json

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import func
from sqlmodel import select
from typer.testing import CliRunner

import cli
from backend.core.settings import reset_settings_cache
from models import Job, MoodleCertificateClaim, Recipient
from models.db import session_scope
from tests.support.moodle_db import READONLY_PASSWORD
from tests.support.moodle_fixture import AT, COMPANY, COURSE, COURSE_NAME, EXPECTED

pytestmark = [pytest.mark.mariadb, pytest.mark.postgres]
runner = CliRunner()
AT_ISO = "2027-01-15T08:00:00Z"  # AT


def mani(*args: str):
    result = runner.invoke(cli.app, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    assert READONLY_PASSWORD not in result.output
    return result


@pytest.fixture
def moodle_env(sqlite_db, moodle_site, monkeypatch):
    """The embedded store, and the fixture site as the global Moodle (environment)."""
    import actors.broker

    actors.broker.reset()
    monkeypatch.setenv("MANI_MOODLE_DATABASE_URL", moodle_site.readonly_url)
    monkeypatch.setenv("MANI_MOODLE_TABLE_PREFIX", moodle_site.prefix)
    monkeypatch.setenv("MANI_MOODLE_SITE_URL", "https://moodle.example.org")
    reset_settings_cache()
    yield moodle_site
    actors.broker.reset()


def preview_json(*args):
    result = mani("moodle", "preview", "--company", COMPANY, "--at", AT_ISO, "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_check_reports_a_complete_read_only_site(moodle_env):
    result = mani("moodle", "check", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ok"] and report["reachable"] and report["problems"] == []
    assert report["can_write"] is False
    assert report["prefix"] == moodle_env.prefix
    assert all(table["found"] for table in report["tables"])
    human = mani("moodle", "check")
    assert human.exit_code == 0 and "Login can write: no" in human.stdout


def test_check_with_a_wrong_prefix_fails_with_one_sentence(moodle_env, monkeypatch):
    monkeypatch.setenv("MANI_MOODLE_TABLE_PREFIX", "mdl_")
    reset_settings_cache()
    result = mani("moodle", "check", "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert len(report["problems"]) == 1
    assert "No Moodle table was found under the prefix 'mdl_'" in report["problems"][0]
    assert moodle_env.prefix in report["problems"][0]  # the hint names the prefix that is there


def test_check_unreachable_and_bad_settings_are_one_sentence(sqlite_db, monkeypatch):
    monkeypatch.setenv("MANI_MOODLE_DATABASE_URL", f"mysql+pymysql://moodle:{READONLY_PASSWORD}@127.0.0.1:1/moodle")
    reset_settings_cache()
    result = mani("moodle", "check")
    assert result.exit_code == 1
    assert "Cannot reach the Moodle database at mysql+pymysql://moodle:••••••@127.0.0.1:1/moodle" in result.output
    monkeypatch.delenv("MANI_MOODLE_DATABASE_URL")
    reset_settings_cache()
    result = mani("moodle", "check")
    assert result.exit_code == 1 and "set moodle_database_url" in result.output
    monkeypatch.setenv("MANI_MOODLE_DATABASE_URL", "mysql+pymysql://u@h/db")
    monkeypatch.setenv("MANI_MOODLE_TABLE_PREFIX", "Bad-Prefix")
    reset_settings_cache()
    result = mani("moodle", "check")
    assert result.exit_code == 1 and "moodle_table_prefix 'Bad-Prefix'" in result.output


def test_preview_json_lists_recipients_and_invalid_addresses(moodle_env):
    document = preview_json("--type", "welcome_std", "--since", "24h")
    assert {row["userid"] for row in document["recipients"]} == EXPECTED["welcome_std"]
    assert {row["userid"]: row["reason"].split(":")[0] for row in document["invalid"]} == EXPECTED["welcome_std_invalid"]
    first = next(row for row in document["recipients"] if row["userid"] == 1)
    assert first["email"] == "user1@example.com" and first["username"] == "user1"


def test_preview_reminder_and_certificate_rows(moodle_env):
    reminder = preview_json("--type", "reminder", "--course", COURSE)
    assert {row["userid"]: row["completion_percent"] for row in reminder["recipients"]} == EXPECTED["reminder"]
    assert reminder["recipients"][0]["course_url"] == f"https://moodle.example.org/course/view.php?id={COURSE}"
    certificate = preview_json("--type", "certificate", "--since", "2027-01-08T08:00Z")
    got = {(row["userid"], row["courseid"]): row["grade"] for row in certificate["recipients"]}
    assert got == EXPECTED["certificate"]
    human = mani("moodle", "preview", "--company", COMPANY, "--at", AT_ISO, "--type", "reengagement",
                 "--course", COURSE, "--inactive-for", "30d")
    assert human.exit_code == 0, human.output
    assert f"{len(EXPECTED['reengagement'])} recipients, 1 with an unusable address." in human.stdout


@pytest.mark.parametrize(("args", "named"), [
    (["--type", "reminder"], "--course"),
    (["--type", "welcome_std"], "--since"),
    (["--type", "welcome_std", "--since", "yesterday"], "--since 'yesterday'"),
    (["--type", "reengagement", "--course", "1", "--inactive-for", "soon"], "--inactive-for 'soon'"),
    (["--type", "welcome_std", "--since", "24h", "--at", "tomorrow"], "--at 'tomorrow'"),
    (["--type", "welcome_std", "--since", "24h", "--course", "1"], "--course applies to"),
    (["--type", "nonsense", "--since", "24h"], "--type"),
])
def test_unusable_options_exit_2_naming_the_option(moodle_env, args, named):
    result = mani("moodle", "preview", "--company", COMPANY, *args)
    assert result.exit_code == 2, result.output
    assert named in result.output
    assert job_count() == 0


def test_unknown_company_and_course_exit_1(moodle_env):
    result = mani("moodle", "preview", "--company", "acme", "--type", "welcome_std", "--since", "24h")
    assert result.exit_code == 1 and "There is no company 'acme'" in result.output
    result = mani("moodle", "preview", "--company", 999, "--type", "welcome_std", "--since", "24h")
    assert result.exit_code == 1 and "Company 999 does not exist in the Moodle database" in result.output
    result = mani("submit", "--moodle", "--company", COMPANY, "--type", "reminder", "--course", 999)
    assert result.exit_code == 1 and "Course 999 does not exist" in result.output
    assert job_count() == 0


def job_count() -> int:
    with session_scope() as session:
        return session.exec(select(func.count()).select_from(Job)).one()


def test_submit_moodle_runs_end_to_end_on_the_embedded_default(moodle_env):
    result = mani("submit", "--moodle", "--company", COMPANY, "--type", "welcome_std", "--since", "24h",
                  "--at", AT_ISO, "--wait", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["status"] == "completed"
    assert document["accepted"] == len(EXPECTED["welcome_std"]) and document["invalid"] == 2
    assert document["counts"] == {"sent": len(EXPECTED["welcome_std"])}
    assert document["source"].startswith("moodle: welcome_std, company 1, since 2027-01-14 08:00 UTC")
    shown = json.loads(mani("jobs", "show", document["id"], "--json").stdout)
    assert shown["source_name"] == document["source"]


def test_submit_reminder_carries_the_course_and_its_progress(moodle_env):
    result = mani("submit", "--moodle", "--company", COMPANY, "--type", "reminder", "--course", COURSE,
                  "--at", AT_ISO, "--json")
    assert result.exit_code == 0, result.output
    with session_scope() as session:
        rows = session.exec(select(Recipient).where(Recipient.job_id == json.loads(result.stdout)["id"])).all()
        got = {int(row.userid): row.variables for row in rows}
    assert {user: int(v["completion_percent"]) for user, v in got.items()} == EXPECTED["reminder"]
    assert got[20]["course_name"] == COURSE_NAME and got[20]["due_date"] == "2027-02-14"


def test_certificates_once_per_completion_across_runs(moodle_env):
    args = ["submit", "--moodle", "--company", COMPANY, "--type", "certificate", "--since", "7d", "--at", AT_ISO, "--json"]
    first = json.loads(mani(*args).stdout)
    assert first["accepted"] == len(EXPECTED["certificate"]) and first["already_certified"] == 0
    again = mani(*args)
    assert again.exit_code == 0, again.output
    document = json.loads(again.stdout)
    assert document["job_id"] is None
    assert f"all {len(EXPECTED['certificate'])} completions already had a certificate" in document["message"]
    # A wider window issues only the completions the first job did not take on.
    wider = preview_json("--type", "certificate", "--since", "60d")["recipients"]
    later = json.loads(mani(*args[:-5], "--since", "60d", "--at", AT_ISO, "--json").stdout)
    assert later["already_certified"] == len(EXPECTED["certificate"])
    assert later.get("accepted", 0) == len(wider) - len(EXPECTED["certificate"])
    reissued = json.loads(mani(*args, "--allow-duplicates").stdout)
    assert reissued["accepted"] == len(EXPECTED["certificate"])
    with session_scope() as session:
        claims = session.exec(select(MoodleCertificateClaim)).all()
    assert {(c.moodle_userid, c.courseid) for c in claims} == {(r["userid"], r["courseid"]) for r in wider}
    assert {c.job_id for c in claims if (c.moodle_userid, c.courseid) in EXPECTED["certificate"]} == {first["id"]}


def test_company_settings_map_a_mani_company_to_its_moodle(moodle_env, monkeypatch):
    monkeypatch.setenv("MANI_SECRET_KEY", Fernet.generate_key().decode())
    monkeypatch.delenv("MANI_MOODLE_DATABASE_URL")
    reset_settings_cache()
    assert mani("companies", "add", "acme", "--name", "Acme").exit_code == 0
    result = mani("companies", "set", "acme", f"moodle_database_url={moodle_env.readonly_url}",
                  f"moodle_company_id={COMPANY}", "moodle_site_url=https://acme.example.org")
    assert result.exit_code == 0, result.output
    shown = json.loads(mani("companies", "show", "acme", "--json").stdout)
    assert shown["settings"]["moodle_database_url"]["value"].startswith(f"{moodle_env.readonly_url.split(':')[0]}:")
    assert "••••••" in shown["settings"]["moodle_database_url"]["value"]
    with session_scope() as session:
        from models import Company

        assert READONLY_PASSWORD not in json.dumps(session.get(Company, "acme").secrets)  # encrypted at rest
    document = json.loads(mani("moodle", "preview", "--company", "acme", "--type", "reminder", "--course", COURSE,
                               "--at", AT_ISO, "--json").stdout)
    assert document["recipients"][0]["course_url"].startswith("https://acme.example.org/")
    submitted = json.loads(mani("submit", "--moodle", "--company", "acme", "--type", "reminder", "--course", COURSE,
                                "--at", AT_ISO, "--json").stdout)
    assert submitted["company_id"] == "acme"
    # Without a mapping, a company whose id is not a number says which setting is missing.
    assert mani("companies", "add", "globex", "--name", "Globex").exit_code == 0
    result = mani("moodle", "preview", "--company", "globex", "--type", "welcome_std", "--since", "24h")
    assert result.exit_code == 1 and "moodle_company_id" in result.output
    assert mani("moodle", "check", "--company", "acme").exit_code == 0  # acme's own Moodle URL
    assert "set moodle_database_url" in mani("moodle", "check", "--company", "globex").output  # none for globex
    bad = mani("companies", "set", "acme", "moodle_database_url=ftp://x/y")
    assert bad.exit_code == 2 and "moodle_database_url must be a mysql+pymysql://" in bad.output


def test_submit_needs_exactly_one_source(moodle_env, tmp_path):
    assert "exactly one" in mani("submit", "--type", "welcome_std").output
    result = mani("submit", "--csv", str(tmp_path / "x.csv"), "--type", "welcome_std", "--since", "24h")
    assert result.exit_code == 2 and "--since applies to --moodle jobs only" in result.output


def test_dry_run_shows_the_job_a_selection_would_make_and_writes_nothing(moodle_env):
    args = ["submit", "--moodle", "--company", COMPANY, "--at", AT_ISO, "--dry-run", "--json"]
    result = mani(*args, "--type", "reminder", "--course", COURSE)
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["accepted"] == len(EXPECTED["reminder"]) and document["rejected_count"] == 1
    assert document["source"].startswith(f"moodle: reminder, company 1, course {COURSE}")
    assert document["first_message"]["subject"] == f"Reminder: complete {COURSE_NAME} by 2027-02-14"
    assert job_count() == 0
    certificate = ["--type", "certificate", "--since", "7d"]
    assert json.loads(mani(*args, *certificate).stdout)["already_certified"] == 0
    assert mani(*args[:-2], "--json", *certificate).exit_code == 0  # the real job
    after = json.loads(mani(*args, *certificate).stdout)
    assert (after["accepted"], after["already_certified"]) == (0, len(EXPECTED["certificate"]))


def test_certificate_claims_on_a_postgresql_store(postgres_db, moodle_site, monkeypatch):
    """The claims' conflict-free insert and look-up on PostgreSQL as mani's own store."""
    monkeypatch.setenv("MANI_MOODLE_DATABASE_URL", moodle_site.readonly_url)
    monkeypatch.setenv("MANI_MOODLE_TABLE_PREFIX", moodle_site.prefix)
    reset_settings_cache()
    args = ["submit", "--moodle", "--company", COMPANY, "--type", "certificate", "--since", "7d", "--at", AT_ISO, "--json"]
    assert json.loads(mani(*args).stdout)["accepted"] == len(EXPECTED["certificate"])
    assert json.loads(mani(*args).stdout)["job_id"] is None
    assert json.loads(mani(*args, "--allow-duplicates").stdout)["accepted"] == len(EXPECTED["certificate"])


def test_the_database_url_never_reaches_the_audit_log(moodle_env, monkeypatch):
    monkeypatch.setenv("MANI_SECRET_KEY", Fernet.generate_key().decode())
    reset_settings_cache()
    result = mani("settings", "set", f"moodle_database_url={moodle_env.readonly_url}")
    assert result.exit_code == 0, result.output
    assert "••••••" in result.output
    with session_scope() as session:
        from models import AuditEntry

        entries = json.dumps([entry.details for entry in session.exec(select(AuditEntry)).all()], ensure_ascii=False)
    assert "moodle_database_url" in entries and READONLY_PASSWORD not in entries
    monkeypatch.delenv("MANI_MOODLE_DATABASE_URL")
    reset_settings_cache()
    assert mani("moodle", "check").exit_code == 0  # the stored (encrypted) URL is the one read


def test_certificate_job_from_moodle_renders_and_sends_on_the_embedded_default(moodle_env):
    result = mani("submit", "--moodle", "--company", COMPANY, "--type", "certificate", "--since", "7d",
                  "--at", AT_ISO, "--wait", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["status"] == "completed", document
    assert document["counts"] == {"sent": len(EXPECTED["certificate"])}
    with session_scope() as session:
        from models import Certificate

        issued = session.exec(select(Certificate).where(Certificate.job_id == document["id"])).all()
    assert len(issued) == len(EXPECTED["certificate"])
    assert COURSE_NAME in {certificate.course_name for certificate in issued}
