"""`check_moodle` and the connection's errors, against the real servers: tables found or missing
under the prefix, the Moodle version, whether the login can write, and sentences that never show
a password."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from backend.core.secrets import MASK
from backend.jobs.moodle_source import select_moodle_recipients
from backend.moodle.source import (
    MoodleSchemaError,
    MoodleSourceError,
    MoodleUnreachable,
    SelectionOptions,
    check_moodle,
    company_courses,
    course_activities,
    course_in_company,
    list_companies,
    open_moodle,
)
from backend.moodle.source.connection import parse_database_url
from tests.support.moodle_db import READONLY_PASSWORD, populate
from tests.support.moodle_fixture import (
    AT,
    CM_ASSIGN,
    CM_HIDDEN_PAGE,
    CM_QUIZ,
    COMPANY,
    COURSE,
    COURSE_NAME,
    OTHER_COURSE,
    SECOND_COURSE,
    SECOND_COURSE_NAME,
)

pytestmark = [pytest.mark.mariadb, pytest.mark.postgres]


def test_check_finds_everything_and_a_select_only_login_cannot_write(moodle_site):
    with open_moodle(moodle_site.readonly_url, prefix=moodle_site.prefix) as source:
        report = check_moodle(source=source)
    assert report.ok, report.problems
    assert report.reachable and all(table.found for table in report.tables)
    assert {table.name for table in report.tables} >= {"user", "company_users", "companylicense_users"}
    assert all(table.table.startswith("mt_") for table in report.tables)
    assert (report.moodle_version, report.moodle_release) == ("2024042205.00", "4.4.5 (Build: 20241209)")
    assert report.can_write is False and report.write_privileges == []
    assert READONLY_PASSWORD not in report.model_dump_json()
    assert MASK in report.database


def test_check_says_when_the_login_can_write(moodle_site):
    with open_moodle(moodle_site.admin_url, prefix=moodle_site.prefix) as source:
        report = check_moodle(source=source)
    assert report.ok
    assert report.can_write is True and report.write_privileges
    assert any("SELECT-only login is safer" in note for note in report.notes)


def test_wrong_prefix_reports_every_table_missing(moodle_site):
    with open_moodle(moodle_site.readonly_url, prefix="mdl_") as source:
        report = check_moodle(source=source)
        assert not report.ok and report.reachable
        assert not any(table.found for table in report.tables)
        assert "No Moodle table was found under the prefix 'mdl_'" in report.problems[0]
        assert "mt_" in report.problems[0]  # the prefix that is there
        with pytest.raises(MoodleSchemaError) as caught:
            select_moodle_recipients(source=source, options=SelectionOptions(type="welcome_std", company_id=1, since=0))
    assert "'mdl_'" in str(caught.value) and READONLY_PASSWORD not in str(caught.value)


def test_missing_table_and_absent_config(moodle_site, moodle_database_factory):
    db = moodle_database_factory(moodle_site.kind)
    populate(db, prefix="m2_", with_config=False)
    admin = create_engine(db.admin_url)
    with admin.begin() as connection:
        connection.execute(text("DROP TABLE m2_companylicense_users"))
    admin.dispose()
    with open_moodle(db.readonly_url, prefix="m2_") as source:
        report = check_moodle(source=source)
    assert not report.ok
    assert report.problems == ["Table m2_companylicense_users is missing."]
    assert report.moodle_version is None
    assert any("m2_config is not there" in note for note in report.notes)
    missing = [table for table in report.tables if not table.found]
    assert [table.name for table in missing] == ["companylicense_users"]


def test_the_session_is_read_only_even_for_a_login_that_may_write(moodle_site):
    with open_moodle(moodle_site.admin_url, prefix=moodle_site.prefix) as source:
        with pytest.raises(MoodleSourceError) as caught:
            with source.connect() as connection:
                connection.execute(text("UPDATE mt_user SET firstname = 'x' WHERE id = 1"))
    assert "read" in str(caught.value).lower()


def test_unreachable_and_wrong_password_are_one_sentence_without_the_password(moodle_site, caplog):
    url = make_url(moodle_site.readonly_url)
    # An unknown login (PostgreSQL here trusts local logins, so a wrong password alone would pass).
    wrong = url.set(username="mani_nobody", password="Not-the-password-42").render_as_string(hide_password=False)
    closed = url.set(port=1).render_as_string(hide_password=False)
    for target, expected in ((wrong, "Cannot reach the Moodle database"), (closed, "Cannot reach the Moodle database")):
        with caplog.at_level(logging.DEBUG):
            with open_moodle(target, prefix="mt_", connect_timeout=3) as source:
                report = check_moodle(source=source)
                with pytest.raises(MoodleUnreachable) as caught:
                    select_moodle_recipients(source=source, options=SelectionOptions(type="welcome_std", company_id=1, since=0))
        message = str(caught.value)
        assert message.startswith(expected) and message.count("\n") == 0
        assert not report.reachable and report.problems == [message]
        for secret in ("Not-the-password-42", READONLY_PASSWORD):
            assert secret not in message and secret not in caplog.text
        assert MASK in message


@pytest.mark.parametrize(
    "url, message",
    [
        ("", "No Moodle database is configured"),
        ("sqlite:///moodle.db", "uses 'sqlite'"),
        ("mysql+mysqldb://u:secret-pass@db/moodle", "uses 'mysql+mysqldb'"),
        ("postgresql://u:secret-pass@db", "names no database"),
        ("::not a url::", "is not a database URL"),
    ],
)
def test_unusable_urls(url, message):
    with pytest.raises(MoodleSourceError) as caught:
        parse_database_url(url)
    assert message in str(caught.value)
    assert "secret-pass" not in str(caught.value)


def test_mysql_urls_always_get_utf8mb4():
    parsed = parse_database_url("mariadb://moodle:pw-123456@db:3306/moodle?charset=latin1")
    assert parsed.url.drivername == "mysql+pymysql"
    assert parsed.url.query["charset"] == "utf8mb4"
    assert parse_database_url("postgres://moodle@db/moodle").url.drivername == "postgresql+psycopg"


def test_prefix_is_checked():
    with pytest.raises(MoodleSourceError, match="not a Moodle table prefix"):
        open_moodle("mysql://root@127.0.0.1/test", prefix="mdl; drop")


def test_catalogue_reads(moodle_site):
    with open_moodle(moodle_site.readonly_url, prefix=moodle_site.prefix) as source:
        assert [company.name for company in list_companies(source=source)] == ["Acme Training", "Other Co"]
        courses = company_courses(source=source, company_id=COMPANY)
        assert [(course.id, course.fullname) for course in courses] == [
            (COURSE, COURSE_NAME), (SECOND_COURSE, SECOND_COURSE_NAME)
        ]  # listed twice in company_course, once here
        activities = course_activities(source=source, course_id=COURSE)
        assert [(a.cmid, a.module, a.visible) for a in activities] == [
            (CM_QUIZ, "quiz", True), (CM_HIDDEN_PAGE, "page", False), (CM_ASSIGN, "assign", True)
        ]
        assert course_in_company(source=source, company_id=COMPANY, course_id=COURSE)
        assert not course_in_company(source=source, company_id=COMPANY, course_id=OTHER_COURSE)


def test_sample_limit_stops_early(moodle_site):
    with open_moodle(moodle_site.readonly_url, prefix=moodle_site.prefix) as source:
        selection = select_moodle_recipients(
            source=source, options=SelectionOptions(type="reminder", company_id=COMPANY, at=AT, course_id=COURSE)
        )
        assert len(selection.preview(limit=3).recipients) == 3
