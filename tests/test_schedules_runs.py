"""Schedules firing against the fixture Moodle site, with a fixed clock: windows without gaps or
overlaps across a late run, catch-up both ways, suppression by course and by activity, an
unreachable Moodle retried while grace lasts, the claim taken once, each run audited."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlmodel import select

from backend.core.errors import UnusableInput
from backend.core.settings import reset_settings_cache
from backend.schedules.definition import ScheduleInput
from backend.schedules.runs import RETRY_SECONDS, claim_due, execute_run, run_due
from backend.schedules.service import add_schedule, pause_schedule, resume_schedule
from models import AuditEntry, Company, Job, Recipient, Schedule, ScheduleRun
from models.db import session_scope
from tests.support.moodle_fixture import AT, CM_QUIZ, CM_SECOND_COURSE, COURSE, EXPECTED, OTHER_COURSE

pytestmark = [pytest.mark.mariadb, pytest.mark.postgres]

UTC = timezone.utc
AT_TIME = datetime.fromtimestamp(AT, tz=UTC)  # 2027-01-15 08:00 UTC
DAY = timedelta(days=1)


@pytest.fixture
def moodle_store(sqlite_db, moodle_site, monkeypatch):
    """The embedded store, company 1 in it, and the fixture site as the configured Moodle."""
    monkeypatch.setenv("MANI_MOODLE_DATABASE_URL", moodle_site.readonly_url)
    monkeypatch.setenv("MANI_MOODLE_TABLE_PREFIX", moodle_site.prefix)
    reset_settings_cache()
    with session_scope() as session:
        session.add(Company(id="1", name="Acme Training"))
    return moodle_site


def add(now: datetime, **changes) -> int:
    values = dict(name="Welcome", company_id="1", job_type="welcome_std", frequency="daily", time="08:00",
                  timezone="UTC", start="2027-01-13", since="24h")
    values.update(changes)
    with session_scope() as session:
        return add_schedule(session=session, spec=ScheduleInput(**values), actor="admin", source="cli", now=now).id


def runs_of(schedule_id: int) -> list[ScheduleRun]:
    with session_scope(read_only=True) as session:
        runs = session.exec(select(ScheduleRun).where(ScheduleRun.schedule_id == schedule_id)
                            .order_by(ScheduleRun.scheduled_for)).all()
        session.expunge_all()
    return runs


def userids(job_id: int | None) -> set[int]:
    if job_id is None:
        return set()
    with session_scope(read_only=True) as session:
        return {int(r.userid) for r in session.exec(select(Recipient).where(Recipient.job_id == job_id)).all()}


def test_late_runs_cover_their_windows_without_gap_or_overlap(moodle_store):
    schedule_id = add(AT_TIME - 2 * DAY - timedelta(hours=1))
    # Each day's run fires two hours late; each still covers previous occurrence -> its own.
    for day in (2, 1, 0):
        outcomes = run_due(now=AT_TIME - day * DAY + timedelta(hours=2))
        assert len(outcomes) == 1
    runs = runs_of(schedule_id)
    assert [r.scheduled_for for r in runs] == [AT_TIME - 2 * DAY, AT_TIME - DAY, AT_TIME]
    assert runs[0].window_since == AT - 3 * 86400 and runs[0].window_at == AT - 2 * 86400
    for earlier, later in zip(runs, runs[1:]):
        assert later.window_since == earlier.window_at + 1
    assert [r.status for r in runs] == ["empty", "created", "created"]
    # User 2 was created exactly at the second window's end, user 5 a second before: the second
    # run has them; the third has the rest of the day, and nobody twice.
    assert userids(runs[1].job_id) == {2, 5}
    assert userids(runs[2].job_id) == EXPECTED["welcome_std"] - {2}
    with session_scope(read_only=True) as session:
        schedule = session.get(Schedule, schedule_id)
        assert schedule.next_run_at == AT_TIME + DAY
        assert schedule.last_run_at == AT_TIME
        audited = session.exec(select(AuditEntry).where(AuditEntry.action == "schedule.run")).all()
        assert sorted(e.details["status"] for e in audited) == ["created", "created", "empty"]
        job = session.get(Job, runs[2].job_id)
        assert job.created_by == f"schedule:{schedule_id}" and job.company_id == "1"
        assert job.source_name.startswith("moodle: welcome_std, company 1")


@pytest.mark.parametrize("catch_up", ["latest", "all"])
def test_a_worker_down_for_two_days_catches_up(moodle_store, catch_up):
    schedule_id = add(AT_TIME - 2 * DAY - timedelta(hours=1), catch_up=catch_up)
    outcomes = run_due(now=AT_TIME + timedelta(hours=5))
    runs = runs_of(schedule_id)
    if catch_up == "latest":
        assert len(outcomes) == 1 and [r.scheduled_for for r in runs] == [AT_TIME]
        # One window from the first occurrence's --since to the latest occurrence.
        assert (runs[0].window_since, runs[0].window_at) == (AT - 3 * 86400, AT)
    else:
        assert [r.scheduled_for for r in runs] == [AT_TIME - 2 * DAY, AT_TIME - DAY, AT_TIME]
        for earlier, later in zip(runs, runs[1:]):
            assert later.window_since == earlier.window_at + 1
    everyone = set().union(*(userids(r.job_id) for r in runs))
    assert everyone == EXPECTED["welcome_std"] | {5}  # 5: created a second before the last day
    # Nothing more is due until tomorrow's occurrence.
    assert run_due(now=AT_TIME + timedelta(hours=6)) == []


def test_a_due_schedule_is_claimed_once(moodle_store):
    schedule_id = add(AT_TIME - timedelta(hours=1), start="2027-01-15")
    with session_scope() as session:
        first = claim_due(session=session, now=AT_TIME)
    with session_scope() as session:
        second = claim_due(session=session, now=AT_TIME)
    assert len(first) == 1 and second == []
    outcome = execute_run(run_id=first[0], now=AT_TIME)
    again = execute_run(run_id=first[0], now=AT_TIME)
    assert outcome.status == "created" and again.status is None
    assert len(runs_of(schedule_id)) == 1


@pytest.mark.parametrize(("changes", "expected"), [
    ({"unless_course_complete": True}, EXPECTED["reengagement"]),
    ({}, EXPECTED["reengagement_include_completed"]),
    ({"unless_course_complete": True, "unless_activity": CM_QUIZ}, EXPECTED["reengagement_unless_quiz"]),
])
def test_reengagement_every_two_days_suppressed_by_course_and_activity(moodle_store, changes, expected):
    schedule_id = add(AT_TIME - timedelta(hours=1), job_type="reengagement", frequency="custom", interval_days=2,
                      start="2027-01-15", since=None, course_id=COURSE, **changes)
    [outcome] = run_due(now=AT_TIME)
    assert outcome.status == "created"
    assert userids(outcome.job_id) == expected
    [run] = runs_of(schedule_id)
    assert run.window_since is None and run.window_at == AT
    with session_scope(read_only=True) as session:
        assert session.get(Schedule, schedule_id).next_run_at == AT_TIME + 2 * DAY


def test_reminder_suppressed_by_activity(moodle_store):
    schedule_id = add(AT_TIME - timedelta(hours=1), job_type="reminder", start="2027-01-15", since=None,
                      course_id=COURSE, unless_activity=CM_QUIZ)
    [outcome] = run_due(now=AT_TIME)
    # 20 and 35 completed the quiz, 21 completed everything; 36 failed it (state 3) and stays.
    assert userids(outcome.job_id) == set(EXPECTED["reminder"]) - {20, 21, 35}
    assert runs_of(schedule_id)[0].status == "created"


@pytest.mark.parametrize(("changes", "fragment"), [
    ({"job_type": "reengagement", "course_id": OTHER_COURSE, "since": None}, "does not belong to company 1"),
    ({"job_type": "reminder", "course_id": COURSE, "since": None, "unless_activity": CM_SECOND_COURSE},
     f"not a completion-tracked activity of course {COURSE}"),
    ({"company_id": "7"}, "Company 7 is not known to mani"),
])
def test_refusals_that_need_moodle_store_nothing(moodle_store, changes, fragment):
    with pytest.raises(UnusableInput) as refused:
        add(AT_TIME, **changes)
    assert fragment in str(refused.value)
    with session_scope(read_only=True) as session:
        assert session.exec(select(Schedule)).all() == []


def test_unreachable_moodle_is_retried_while_grace_lasts(moodle_store, monkeypatch):
    schedule_id = add(AT_TIME - timedelta(hours=1), start="2027-01-15", grace="3m")
    good_url = moodle_store.readonly_url
    monkeypatch.setenv("MANI_MOODLE_DATABASE_URL", "mysql+pymysql://moodle:pw@127.0.0.1:9/moodle")
    reset_settings_cache()
    [first] = run_due(now=AT_TIME)
    assert first.status == "retrying" and "127.0.0.1" in first.error
    assert run_due(now=AT_TIME + timedelta(seconds=RETRY_SECONDS - 1)) == []  # not yet
    [second] = run_due(now=AT_TIME + timedelta(seconds=RETRY_SECONDS))
    assert second.status == "retrying"
    # Moodle is back before grace ends: the same run makes the job.
    monkeypatch.setenv("MANI_MOODLE_DATABASE_URL", good_url)
    reset_settings_cache()
    [third] = run_due(now=AT_TIME + timedelta(seconds=2 * RETRY_SECONDS))
    assert third.status == "created" and userids(third.job_id) == EXPECTED["welcome_std"]
    [run] = runs_of(schedule_id)
    assert (run.attempts, run.status, run.error) == (3, "created", None)


def test_unreachable_moodle_past_grace_is_a_failed_run_with_the_reason(moodle_store, monkeypatch):
    schedule_id = add(AT_TIME - timedelta(hours=1), start="2027-01-15", grace="1m")
    monkeypatch.setenv("MANI_MOODLE_DATABASE_URL", "mysql+pymysql://moodle:pw@127.0.0.1:9/moodle")
    reset_settings_cache()
    [outcome] = run_due(now=AT_TIME + timedelta(seconds=30))
    assert outcome.status == "failed"
    [run] = runs_of(schedule_id)
    assert run.status == "failed" and "reach" in run.error.lower() or "connect" in run.error.lower()
    with session_scope(read_only=True) as session:
        entry = session.exec(select(AuditEntry).where(AuditEntry.action == "schedule.run")).one()
        assert entry.details["status"] == "failed" and entry.details["error"] == run.error


def test_pause_and_resume_skip_no_one(moodle_store):
    schedule_id = add(AT_TIME - 2 * DAY - timedelta(hours=1))
    run_due(now=AT_TIME - 2 * DAY)
    with session_scope() as session:
        pause_schedule(session=session, ref=schedule_id, actor="admin", source="cli")
    assert run_due(now=AT_TIME - DAY) == []
    with session_scope() as session:
        resumed = resume_schedule(session=session, ref=schedule_id, actor="admin", source="cli",
                                  now=AT_TIME - timedelta(hours=1))
    assert resumed.next_run_at == AT_TIME
    [outcome] = run_due(now=AT_TIME)
    # The window runs from the last run's end, across the paused day.
    assert userids(outcome.job_id) == EXPECTED["welcome_std"] | {5}
