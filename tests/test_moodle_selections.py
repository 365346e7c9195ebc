"""The five Moodle selections return exactly the right users, on MariaDB and PostgreSQL, through a
SELECT-only login. Each rule has a row in tests/support/moodle_fixture.py that a naive query
gets wrong; EXPECTED there says who must come back."""

from __future__ import annotations

import io
import json

import pytest

from backend.jobs.moodle_source import moodle_job_rows, select_moodle_recipients
from backend.moodle.source import (
    MoodleNotFound,
    PreviewInvalid,
    PreviewRecipient,
    SelectionOptions,
    open_moodle,
)
from tests.support.moodle_fixture import (
    AT,
    CM_QUIZ,
    CM_SECOND_COURSE,
    COMPANY,
    COURSE,
    COURSE_NAME,
    DAY,
    EXPECTED,
    LICENSE_EXPIRY,
    OTHER_COURSE,
    PROGRAM_EXPIRY,
    SINCE_1D,
    SINCE_7D,
)

pytestmark = [pytest.mark.mariadb, pytest.mark.postgres]
SITE = "https://moodle.example.org/"


@pytest.fixture
def source(moodle_site):
    with open_moodle(moodle_site.readonly_url, prefix=moodle_site.prefix) as opened:
        yield opened


def run(source, **options):
    selection = select_moodle_recipients(source=source, options=SelectionOptions(company_id=COMPANY, at=AT, **options),
                                  site_url=SITE)
    rows = list(selection.preview_rows())
    selected = [row for row in rows if isinstance(row, PreviewRecipient)]
    invalid = {row.userid: row for row in rows if isinstance(row, PreviewInvalid)}
    return selection, selected, invalid


def assert_invalid(invalid, expected):
    assert set(invalid) == set(expected)
    for userid, reason in expected.items():
        assert invalid[userid].reason.startswith(reason)


def test_welcome_std(source):
    selection, selected, invalid = run(source, type="welcome_std", since=SINCE_1D)
    ids = [row.userid for row in selected]
    assert ids == sorted(EXPECTED["welcome_std"])  # each user once, in user order
    assert_invalid(invalid, EXPECTED["welcome_std_invalid"])
    first = selected[0]
    assert first.variables == {"username": "user1", "firstname": "First1", "lastname": "Last1"}
    assert first.email == "user1@example.com"
    assert (selection.recipients, selection.invalid) == (5, 2)
    assert selection.source_name == (
        "moodle: welcome_std, company 1, since 2027-01-14 08:00 UTC, as of 2027-01-15 08:00 UTC"
    )


def test_reengagement(source):
    _, selected, invalid = run(source, type="reengagement", course_id=COURSE)
    assert {row.userid for row in selected} == EXPECTED["reengagement"]
    assert len(selected) == len(EXPECTED["reengagement"])  # two departments, two enrolments: once
    assert_invalid(invalid, EXPECTED["reengagement_invalid"])
    by_id = {row.userid: row for row in selected}
    assert by_id[20].variables == {
        "username": "user20", "firstname": "First20", "lastname": "Last20",
        "course_name": COURSE_NAME, "last_access": "2026-12-06",
        "course_url": "https://moodle.example.org/course/view.php?id=1",
    }
    assert by_id[28].variables["last_access"] == "never"


def test_reengagement_include_completed_and_unless_activity(source):
    _, selected, _ = run(source, type="reengagement", course_id=COURSE, include_completed=True)
    assert {row.userid for row in selected} == EXPECTED["reengagement_include_completed"]
    _, selected, _ = run(source, type="reengagement", course_id=COURSE, unless_activity_cmid=CM_QUIZ)
    # 36 failed the quiz (state 3): that is not a completion, so 36 stays.
    assert {row.userid for row in selected} == EXPECTED["reengagement_unless_quiz"]


def test_reengagement_inactive_for_is_a_closed_bound(source):
    # 43 last visited 31 days ago: inactive for 31 days exactly is still "at least".
    _, selected, _ = run(source, type="reengagement", course_id=COURSE, inactive_for=31 * DAY)
    assert 43 in {row.userid for row in selected}
    _, selected, _ = run(source, type="reengagement", course_id=COURSE, inactive_for=31 * DAY + 1)
    assert 43 not in {row.userid for row in selected}


def test_reminder(source):
    selection, selected, invalid = run(source, type="reminder", course_id=COURSE)
    assert {row.userid: row.completion_percent for row in selected} == EXPECTED["reminder"]
    assert_invalid(invalid, EXPECTED["reminder_invalid"])
    assert selection.tracked_activities == 3
    row = next(row for row in selected if row.userid == 20)
    assert row.variables["due_date"] == "2027-02-14"
    assert row.variables["course_name"] == COURSE_NAME
    _, selected, _ = run(source, type="reminder", course_id=COURSE, unless_activity_cmid=CM_QUIZ)
    assert {row.userid for row in selected} == set(EXPECTED["reminder"]) - {20, 21, 35}


def test_welcome_lic(source):
    _, selected, invalid = run(source, type="welcome_lic", since=SINCE_1D)
    assert not invalid
    got = {row.userid: (row.variables["license_name"], row.variables["course_name"]) for row in selected}
    assert got == EXPECTED["welcome_lic"]
    assert len(selected) == len(got)  # one mail per person
    by_id = {row.userid: row for row in selected}
    assert by_id[50].variables["expiry_date"] == "2028-01-15"  # LICENSE_EXPIRY
    assert by_id[58].variables["expiry_date"] == "2027-04-15"  # the earlier of two licenses
    assert LICENSE_EXPIRY > PROGRAM_EXPIRY
    assert by_id[50].variables["course_url"].endswith("id=1")
    assert "course_url" not in by_id[51].variables  # two courses: the mail links to the login page


def test_welcome_lic_zero_and_null_issuedate_never_match(source):
    _, selected, _ = run(source, type="welcome_lic", since=0)
    ids = {row.userid for row in selected}
    assert {52, 53}.isdisjoint(ids)
    assert {50, 51, 54, 57, 58} <= ids


def test_certificate(source):
    _, selected, invalid = run(source, type="certificate", since=SINCE_7D)
    assert not invalid
    got = {(row.userid, row.courseid): row.variables["grade"] for row in selected}
    assert got == EXPECTED["certificate"]
    assert len(selected) == len(got)  # a course listed twice in company_course: still one each
    row = next(row for row in selected if row.userid == 60)
    assert row.variables["completion_date"] == "2027-01-14"
    assert row.variables["course_name"] == COURSE_NAME  # the emoji survives utf8mb4


def test_certificate_legacy_zero_never_matches_and_course_narrows(source):
    _, selected, _ = run(source, type="certificate", since=0)
    assert {62, 63}.isdisjoint({row.userid for row in selected})
    _, selected, _ = run(source, type="certificate", since=SINCE_7D, course_id=OTHER_COURSE)
    # --course names the course outright: a member's completion of it counts even though the
    # course is not one of the company's own (without --course, 66 is left out).
    assert {row.userid for row in selected} == {66}
    _, selected, _ = run(source, type="certificate", since=SINCE_7D, course_id=COURSE)
    assert {(row.userid, row.courseid) for row in selected} == {k for k in EXPECTED["certificate"] if k[1] == COURSE}


def test_job_rows_carry_the_variables_and_the_rejections(source):
    selection = select_moodle_recipients(
        source=source, options=SelectionOptions(type="reminder", company_id=COMPANY, at=AT, course_id=COURSE)
    )
    rows = list(moodle_job_rows(selection))
    rejected = [row for row in rows if not hasattr(row, "email_norm")]
    accepted = [row for row in rows if hasattr(row, "email_norm")]
    assert [row.reason for row in rejected] == ["user 42: invalid email address: The email address is not valid. "
                                                "There must be something after the @-sign."] or \
        rejected[0].reason.startswith("user 42: invalid email address")
    assert [row.line for row in rows] == list(range(1, len(rows) + 1))
    twenty = next(row for row in accepted if row.userid == "20")
    assert twenty.variables == {"course_name": COURSE_NAME, "due_date": "2027-02-14", "completion_percent": "67"}
    assert (twenty.firstname, twenty.lastname, twenty.username) == ("First20", "Last20", "user20")
    assert "course_url" not in selection.available_variables  # no site URL given
    assert set(selection.available_variables) >= set(twenty.variables)


def test_preview_json_shape(source):
    selection = select_moodle_recipients(
        source=source, options=SelectionOptions(type="certificate", company_id=COMPANY, at=AT, since=SINCE_7D)
    )
    stream = io.StringIO()
    selection.write_preview_json(stream)
    data = json.loads(stream.getvalue())
    assert set(data) == {"recipients", "invalid"}
    first = data["recipients"][0]
    assert set(first) == {"userid", "email", "username", "firstname", "lastname", "course_name", "completion_date",
                          "grade", "courseid"}
    assert data == json.loads(selection.preview().model_dump_json())
    reminder = select_moodle_recipients(
        source=source, options=SelectionOptions(type="reminder", company_id=COMPANY, at=AT, course_id=COURSE)
    ).preview()
    row = reminder.model_dump(mode="json")["recipients"][0]
    assert row["completion_percent"] == EXPECTED["reminder"][row["userid"]]
    assert reminder.model_dump()["invalid"][0]["reason"].startswith("invalid email address")


@pytest.mark.parametrize(
    "options, message",
    [
        ({"type": "welcome_std", "company_id": 99, "since": 0}, "Company 99 does not exist"),
        ({"type": "reminder", "company_id": COMPANY, "course_id": 999}, "Course 999 does not exist"),
        ({"type": "reminder", "company_id": COMPANY, "course_id": COURSE, "unless_activity_cmid": 999},
         "Activity (course module) 999 does not exist"),
        ({"type": "reminder", "company_id": COMPANY, "course_id": COURSE, "unless_activity_cmid": CM_SECOND_COURSE},
         "belongs to course 3, not to course 1"),
    ],
)
def test_unknown_company_course_activity_are_named(source, options, message):
    with pytest.raises(MoodleNotFound) as caught:
        select_moodle_recipients(source=source, options=SelectionOptions(at=AT, **options))
    assert message in str(caught.value)
    assert caught.value.exit_code == 1


def test_the_reader_stands_alone_with_its_own_row_type_and_any_address_check(source):
    """backend.moodle.source imports nothing from backend.jobs: the check and row type come in."""
    from backend.moodle.source import InvalidRow, MoodleRecipient, select_recipients

    def only_example_org(address: str) -> str:
        if not address.endswith("@example.org"):
            raise ValueError("not at example.org")
        return address.lower()

    selection = select_recipients(
        source=source, options=SelectionOptions(type="welcome_std", company_id=COMPANY, at=AT, since=SINCE_1D),
        check_address=only_example_org,
    )
    rows = list(selection)
    assert rows and all(type(row) is InvalidRow for row in rows)
    assert rows[0].reason == "invalid email address: not at example.org"
    selection = select_recipients(
        source=source, options=SelectionOptions(type="welcome_std", company_id=COMPANY, at=AT, since=SINCE_1D),
        check_address=str.lower,
    )
    first = next(iter(selection))
    assert type(first) is MoodleRecipient and first.userid == "1" and first.line == 1
