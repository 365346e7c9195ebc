"""`username` is optional for welcome_std: such a row is sent, and its mail says to log in with the
email address (Moodle's "Allow log in via email"); the dry run and the preview name those rows."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import cli
from backend.core.settings import reset_settings_cache
from backend.jobs.preview import preview_csv
from backend.mail.templates import required_variables
from models.db import session_scope
from tests.support.engine import run_inline, submit, write_csv

runner = CliRunner()
LOGIN_BY_EMAIL = "Log in with your email address, {email}, as your username."


def _rows() -> list[dict]:
    # The seeds' own Job JSON recipients have no username; one row here has one.
    return [{"email": f"person{i}@example.com", "firstname": f"First{i}", "lastname": f"Last{i}",
             "username": "jdoe" if i == 2 else ""} for i in range(3)]


def test_username_is_not_required():
    assert "username" not in required_variables("welcome_std")


def test_a_csv_without_usernames_sends_welcome_std(any_db, smtp_sink, monkeypatch, tmp_path):
    monkeypatch.setenv("MANI_EMAIL_PROVIDER", "smtp")
    monkeypatch.setenv("MANI_SMTP_URL", smtp_sink.url)
    reset_settings_cache()
    plain = [{k: v for k, v in row.items() if k != "username"} for row in _rows()]
    job_id = submit(write_csv(tmp_path / "no-username.csv", plain))
    assert run_inline(job_id).status == "completed"
    assert smtp_sink.wait_for(3)
    by_address = {message.rcpt_tos[0]: message.parsed for message in smtp_sink.messages}
    assert sorted(by_address) == [f"person{i}@example.com" for i in range(3)]
    for address, message in by_address.items():
        text = message.get_body(("plain",)).get_content()
        html = message.get_body(("html",)).get_content()
        assert LOGIN_BY_EMAIL.format(email=address) in text
        assert "Username:" not in text and "Log in with your email address" in html
        assert f"<strong>{address}</strong>" in html and ">Username<" not in html


def test_a_row_with_a_username_still_shows_it(any_db, smtp_sink, monkeypatch, tmp_path):
    monkeypatch.setenv("MANI_EMAIL_PROVIDER", "smtp")
    monkeypatch.setenv("MANI_SMTP_URL", smtp_sink.url)
    reset_settings_cache()
    job_id = submit(write_csv(tmp_path / "mixed.csv", _rows()))
    assert run_inline(job_id).status == "completed" and smtp_sink.wait_for(3)
    texts = {m.rcpt_tos[0]: m.parsed.get_body(("plain",)).get_content() for m in smtp_sink.messages}
    assert "Username:           jdoe" in texts["person2@example.com"]
    assert "Log in with your email address" not in texts["person2@example.com"]
    assert LOGIN_BY_EMAIL.format(email="person0@example.com") in texts["person0@example.com"]


def test_preview_and_dry_run_name_the_rows_without_username(any_db, tmp_path):
    path = write_csv(tmp_path / "mixed.csv", _rows())
    with session_scope() as session:
        preview = preview_csv(session=session, path=path, job_type="welcome_std")
        reminder = preview_csv(session=session, path=path, job_type="reminder",
                               template_data={"course_name": "Safety", "due_date": "Friday",
                                                                     "completion_percent": "40"})
    assert preview.without_username_count == 2
    assert [(row.line, row.email) for row in preview.without_username] == [
        (2, "person0@example.com"), (3, "person1@example.com")]
    assert reminder.without_username_count == 0  # its templates use no username
    assert "Log in with your email address, person0@example.com" in preview.message.text

    human = runner.invoke(cli.app, ["submit", "--csv", str(path), "--type", "welcome_std", "--dry-run"])
    assert human.exit_code == 0, human.output
    assert "3 would be sent" in human.stdout
    assert "2 rows without a username" in human.stdout
    assert "line 2: person0@example.com" in human.stdout and "line 3: person1@example.com" in human.stdout
    document = json.loads(runner.invoke(cli.app, ["submit", "--csv", str(path), "--type", "welcome_std",
                                                  "--dry-run", "--json"]).stdout)
    assert document["without_username"] == [{"line": 2, "email": "person0@example.com"},
                                            {"line": 3, "email": "person1@example.com"}]
    assert document["accepted"] == 3 and document["without_username_count"] == 2
    with session_scope() as session:
        from models import Job

        assert session.query(Job).count() == 0


@pytest.mark.parametrize("job_type", ["welcome_lic", "reengagement", "reminder"])
def test_the_other_optional_variables_stay_optional(job_type):
    assert not {"username", "password", "course_url", "firstname", "lastname", "userid"} & required_variables(job_type)
