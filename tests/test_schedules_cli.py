"""`mani schedules` end to end on the embedded store and the fixture Moodle site (MariaDB)."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

import cli
from backend.core.settings import reset_settings_cache
from models import Company, Job, Schedule, ScheduleRun
from models.db import session_scope
from tests.support.moodle_fixture import CM_SECOND_COURSE, COURSE, OTHER_COURSE

pytestmark = [pytest.mark.mariadb, pytest.mark.parametrize("moodle_site", ["mariadb"], indirect=True)]
runner = CliRunner()


def mani(*args: str):
    result = runner.invoke(cli.app, list(args))
    assert "Traceback" not in result.output, result.output
    return result


def count(model) -> int:
    with session_scope(read_only=True) as session:
        return session.execute(select(func.count()).select_from(model)).scalar_one()


@pytest.fixture
def configured(sqlite_db, moodle_site, monkeypatch):
    import actors.broker

    monkeypatch.setenv("MANI_MOODLE_DATABASE_URL", moodle_site.readonly_url)
    monkeypatch.setenv("MANI_MOODLE_TABLE_PREFIX", moodle_site.prefix)
    reset_settings_cache()
    actors.broker.reset()
    with session_scope() as session:
        session.add(Company(id="1", name="Acme Training"))
    yield
    actors.broker.reset()


WELCOME = ("schedules", "add", "--name", "Daily welcome", "--type", "welcome_std", "--moodle", "--company", "1",
           "--frequency", "daily", "--time", "09:00", "--timezone", "Europe/Berlin", "--start", "2027-03-26",
           "--since", "24h")


def test_add_show_next_list_pause_resume_edit_remove(configured):
    added = mani(*WELCOME, "--json")
    assert added.exit_code == 0, added.output
    document = json.loads(added.output)
    assert document["next_run_at"] == "2027-03-26T08:00:00Z" or document["next_run_at"].startswith("2027-03-26T08:00")
    schedule_id = str(document["id"])
    upcoming = json.loads(mani("schedules", "next", schedule_id, "--count", "4", "--json").output)
    # 09:00 Berlin on both sides of the spring change (28 March 2027), with the offset shown.
    assert upcoming == ["2027-03-26T09:00:00+01:00", "2027-03-27T09:00:00+01:00", "2027-03-28T09:00:00+02:00",
                        "2027-03-29T09:00:00+02:00"]
    shown = json.loads(mani("schedules", "show", schedule_id, "--json").output)
    assert {"last_run_at", "next_run_at", "runs"} <= set(shown) and shown["runs"] == []
    assert mani("schedules", "list").exit_code == 0
    listed = json.loads(mani("schedules", "list", "--json").output)
    assert [(s["name"], s["next_run_at"]) for s in listed] == [("Daily welcome", shown["next_run_at"])]
    assert json.loads(mani("schedules", "pause", schedule_id, "--json").output)["next_run_at"] is None
    assert json.loads(mani("schedules", "resume", schedule_id, "--json").output)["enabled"] is True
    edited = json.loads(mani("schedules", "edit", schedule_id, "--frequency", "custom", "--interval-days", "2",
                             "--json").output)
    assert (edited["frequency"], edited["custom_interval"]) == ("custom", 2)
    every_two = json.loads(mani("schedules", "next", schedule_id, "--count", "2", "--json").output)
    assert every_two == ["2027-03-26T09:00:00+01:00", "2027-03-28T09:00:00+02:00"]
    assert mani("schedules", "remove", schedule_id).exit_code == 0
    assert count(Schedule) == 0


def test_run_now_creates_a_job_and_shows_it(configured):
    schedule_id = str(json.loads(mani(*WELCOME, "--json").output)["id"])
    ran = mani("schedules", "run", schedule_id, "--json")
    assert ran.exit_code == 0, ran.output
    result = json.loads(ran.output)
    # As of now the fixture's users (created in 2025-2027) are mostly in the future; the window
    # is the last 24 hours: nobody, which is a normal, empty run.
    assert result["status"] in ("created", "empty")
    shown = json.loads(mani("schedules", "show", schedule_id, "--json").output)
    assert shown["runs"][0]["id"] == result["run_id"] and shown["runs"][0]["manual"] is True
    assert shown["runs"][0]["job_id"] == result["job_id"]


@pytest.mark.parametrize(("extra", "fragment"), [
    (("--timezone", "Europe/Atlantis"), "not an IANA time zone"),
    (("--frequency", "custom", "--interval-days", "0"), "--interval-days must be 1 or more"),
    (("--type", "reengagement", "--course", str(OTHER_COURSE), "--since", ""), "does not belong to company 1"),
    (("--type", "reminder", "--course", str(COURSE), "--unless-activity", str(CM_SECOND_COURSE), "--since", ""),
     "not a completion-tracked activity"),
    (("--course", str(COURSE)), "--course applies to reengagement, reminder and certificate"),
    (("--type", "welcome_lic", "--unless-course-complete"), "applies to reengagement and reminder"),
])
def test_refusals_exit_2_with_one_sentence_and_store_nothing(configured, extra, fragment):
    result = mani(*WELCOME, *extra)
    assert result.exit_code == 2, result.output
    assert fragment in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert count(Schedule) == 0 and count(ScheduleRun) == 0 and count(Job) == 0
