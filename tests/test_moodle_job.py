"""A Moodle selection becomes a stored job through the same writer as a CSV (embedded SQLite store)."""

from __future__ import annotations

import pytest
from sqlmodel import select

from backend.jobs.create import create_job
from backend.jobs.moodle_source import moodle_job_rows, select_moodle_recipients
from backend.moodle.source import SelectionOptions, open_moodle
from models import Job, Recipient, Rejection
from models.db import session_scope
from tests.support.moodle_fixture import (
    AT,
    COMPANY,
    COURSE_NAME,
    EXPECTED,
    SINCE_1D,
    SINCE_7D,
)

pytestmark = [pytest.mark.mariadb, pytest.mark.postgres]


def make_job(moodle_site, **options):
    with open_moodle(moodle_site.readonly_url, prefix=moodle_site.prefix) as source:
        selection = select_moodle_recipients(
            source=source, options=SelectionOptions(company_id=COMPANY, at=AT, **options),
            site_url="https://moodle.example.org",
        )
        with session_scope() as session:
            created = create_job(
                session=session, job_type=selection.type.value, rows=moodle_job_rows(selection),
                available_variables=selection.available_variables, source="moodle",
                source_name=selection.source_name,
            )
            job_id = created.job.id
    with session_scope() as session:
        job = session.get(Job, job_id)
        recipients = session.exec(select(Recipient).where(Recipient.job_id == job_id).order_by(Recipient.id)).all()
        rejections = session.exec(select(Rejection).where(Rejection.job_id == job_id)).all()
        session.expunge_all()
    return job, recipients, rejections


def test_welcome_std_job(sqlite_db, moodle_site):
    job, recipients, rejections = make_job(moodle_site, type="welcome_std", since=SINCE_1D)
    assert job.source == "moodle"
    assert job.source_name.startswith("moodle: welcome_std, company 1, since 2027-01-14 08:00 UTC")
    assert job.total == len(EXPECTED["welcome_std"]) and job.rejected_count == 2
    assert [int(r.userid) for r in recipients] == sorted(EXPECTED["welcome_std"])
    assert (recipients[0].username, recipients[0].firstname) == ("user1", "First1")
    assert sorted(r.reason.split(":")[0] for r in rejections) == ["user 12", "user 13"]


def test_welcome_lic_job_lists_courses_per_person(sqlite_db, moodle_site):
    _, recipients, _ = make_job(moodle_site, type="welcome_lic", since=SINCE_1D)
    by_user = {int(r.userid): r.variables for r in recipients}
    assert set(by_user) == set(EXPECTED["welcome_lic"])
    assert by_user[51]["course_name"] == EXPECTED["welcome_lic"][51][1]
    assert by_user[50]["course_url"] == "https://moodle.example.org/course/view.php?id=1"


def test_certificate_job_keeps_one_recipient_per_completion(sqlite_db, moodle_site):
    job, recipients, _ = make_job(moodle_site, type="certificate", since=SINCE_7D)
    assert job.action == "both"
    got = {(int(r.userid), int(r.variables["courseid"])): r.variables["grade"] for r in recipients}
    assert got == EXPECTED["certificate"]
    sixty = next(r for r in recipients if r.userid == "60")
    assert sixty.variables["course_name"] == COURSE_NAME
