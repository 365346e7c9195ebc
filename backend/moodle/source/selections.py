"""The five Moodle selections, streamed: recipients for a job or a preview, without a CSV.

`select_recipients` checks the options against Moodle (company, course, activity, the student
role) with a handful of small queries and raises before anything is streamed; the returned
`Selection` then runs one query through a server-side cursor, a page at a time, and hands out
rows as they come: to the job writer (through `backend.jobs.moodle_source`), or as preview rows.

This room sits below `backend.jobs`, so it does not import the CSV intake: the caller hands in
the intake's address check and its row type (`backend.jobs.moodle_source` does), and a user with
an empty or malformed address is reported with the reason and never becomes a recipient.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from sqlalchemy import func, select

from backend.moodle.source import queries
from backend.moodle.source.connection import MoodleSource, require
from backend.moodle.source.errors import MoodleNotFound
from backend.moodle.source.options import (
    COURSE_REQUIRED,
    SelectionOptions,
    SelectionType,
    format_date,
)
from backend.moodle.source.queries import CourseScope
from backend.moodle.source.readahead import read_ahead
from backend.moodle.source.results import (
    MoodleCompany,
    MoodleCourse,
    MoodlePreview,
    PreviewInvalid,
    PreviewRecipient,
)
from backend.moodle.source.schema import CONTEXT_COURSE

# Rows fetched per round trip from the server-side cursor, and pages read ahead of the consumer.
PAGE_SIZE = 2000
READ_AHEAD_PAGES = 4
# What a recipient row carries itself (the job writer's RecipientRow fields), for every type.
ROW_FIELDS = ("userid", "firstname", "lastname", "username")
# The template variables each selection provides, beyond the row fields and the address.
SELECTION_VARIABLES: dict[SelectionType, tuple[str, ...]] = {
    SelectionType.WELCOME_STD: (),
    SelectionType.WELCOME_LIC: ("license_name", "course_name", "expiry_date"),
    SelectionType.REENGAGEMENT: ("course_name", "last_access"),
    SelectionType.REMINDER: ("course_name", "due_date", "completion_percent"),
    SelectionType.CERTIFICATE: ("course_name", "completion_date", "grade", "courseid"),
}
# The types whose mail links to one course (welcome_lic: when the person got exactly one).
_COURSE_URL_TYPES = frozenset(SelectionType) - {SelectionType.WELCOME_STD, SelectionType.CERTIFICATE}


@dataclass(slots=True)
class MoodleRecipient:
    """A selected recipient, field for field the job writer's RecipientRow (which callers that
    write jobs pass as `recipient_type`, so rows go into the job as they are)."""

    line: int
    email: str
    email_norm: str
    userid: str
    firstname: str | None = None
    lastname: str | None = None
    username: str | None = None
    password: str | None = None
    variables: dict[str, str] = field(default_factory=dict)


# Normalizes an address, or raises ValueError (email_validator's EmailNotValidError is one) saying why.
AddressCheck = Callable[[str], str]


@dataclass(slots=True)
class InvalidRow:
    """A user the selection matched whose address cannot be used."""

    userid: int
    email: str
    reason: str
    line: int = 0


def available_variables(selection_type: SelectionType | str, *, site_url: str | None = None) -> tuple[str, ...]:
    """Every variable the rows of this selection carry (for `create_job(available_variables=...)`)."""
    kind = SelectionType(selection_type)
    names = ROW_FIELDS + SELECTION_VARIABLES[kind]
    if site_url and kind in _COURSE_URL_TYPES:
        names += ("course_url",)
    return names


def course_url(site_url: str | None, course_id: int) -> str | None:
    """Moodle's course page, when the site's address is known."""
    if not site_url:
        return None
    return f"{site_url.rstrip('/')}/course/view.php?id={course_id}"


def _percent_text(value: float) -> str:
    text = f"{value:.1f}".rstrip("0").rstrip(".")
    return f"{text}%"


class Selection:
    """A checked selection: iterate it (once per call) for rows; counts fill in as rows pass."""

    def __init__(
        self, *, source: MoodleSource, options: SelectionOptions, company: MoodleCompany,
        course: MoodleCourse | None, scope: CourseScope | None, tracked_activities: int | None,
        due_date: str, site_url: str | None, licenses: dict[int, tuple[str, int]] | None = None,
        course_names: dict[int, str] | None = None, check_address: AddressCheck,
        recipient_type: Callable[..., Any] = MoodleRecipient,
    ) -> None:
        self.source = source
        self.options = options
        self.company = company
        self.course = course
        self.scope = scope
        self.tracked_activities = tracked_activities
        self.due_date = due_date
        self.site_url = site_url
        self.licenses = licenses or {}
        self.course_names = course_names or {}
        self.make_recipient = _recipient_maker(check_address, recipient_type)
        self.recipients = 0
        self.invalid = 0

    @property
    def type(self) -> SelectionType:
        return self.options.type

    @property
    def source_name(self) -> str:
        """The job's source line, e.g. `moodle: welcome_std, company 2, since 2026-11-14 12:00 UTC, as of ...`."""
        return self.options.describe()

    @property
    def available_variables(self) -> tuple[str, ...]:
        return available_variables(self.type, site_url=self.site_url)

    # The query ------------------------------------------------------------------------------

    def query(self):
        o, t = self.options, self.source.tables
        if o.type == SelectionType.WELCOME_STD:
            return queries.welcome_std(t, company_id=o.company_id, since=o.since, at=o.at)
        if o.type == SelectionType.WELCOME_LIC:
            return queries.welcome_lic(t, company_id=o.company_id, since=o.since, at=o.at)
        if o.type == SelectionType.REENGAGEMENT:
            return queries.reengagement(
                t, company_id=o.company_id, scope=self.scope, at=o.at, inactive_for=o.inactive_for,
                include_completed=o.include_completed, unless_activity_cmid=o.unless_activity_cmid,
            )
        if o.type == SelectionType.REMINDER:
            return queries.reminder(
                t, company_id=o.company_id, scope=self.scope, at=o.at, unless_activity_cmid=o.unless_activity_cmid
            )
        return queries.certificate(t, company_id=o.company_id, since=o.since, at=o.at, course_id=o.course_id)

    def rows(self, *, limit: int | None = None) -> Iterator[Any | InvalidRow]:
        """The selection's rows in user order, streamed, numbered from 1 (`line`); `limit` caps the
        query's rows (a sample). Recipients are of the `recipient_type` given (MoodleRecipient)."""
        self.recipients = self.invalid = 0
        statement = self.query()
        if limit is not None:
            statement = statement.limit(limit)
        shaper = _SHAPERS[self.type]
        with self.source.connect(stream=True, page_size=PAGE_SIZE) as connection:
            result = connection.execute(statement)
            rows = itertools.chain.from_iterable(read_ahead(result.partitions(), depth=READ_AHEAD_PAGES))
            for line, row in enumerate(shaper(self, rows), start=1):
                row.line = line
                if type(row) is InvalidRow:
                    self.invalid += 1
                else:
                    self.recipients += 1
                yield row

    def __iter__(self) -> Iterator[Any | InvalidRow]:
        return self.rows()

    # Outputs ----------------------------------------------------------------------------------

    def preview_rows(self, *, limit: int | None = None) -> Iterator[PreviewRecipient | PreviewInvalid]:
        for row in self.rows(limit=limit):
            if type(row) is InvalidRow:
                yield PreviewInvalid(userid=row.userid, email=row.email, reason=row.reason)
            else:
                yield self.preview_recipient(row)

    def preview_recipient(self, row: MoodleRecipient) -> PreviewRecipient:
        variables = {"username": row.username or "", "firstname": row.firstname or "", "lastname": row.lastname or ""}
        variables.update(row.variables)
        courseid = variables.pop("courseid", None)
        percent = variables.pop("completion_percent", None)
        return PreviewRecipient(
            userid=int(row.userid), email=row.email, variables=variables,
            courseid=int(courseid) if courseid else None,
            completion_percent=int(percent) if percent else None,
            has_completion_percent=self.type == SelectionType.REMINDER,
        )

    def preview(self, *, limit: int | None = None) -> MoodlePreview:
        """The whole preview in memory (the console's sample, tests); stream with `write_preview_json`."""
        recipients, invalid = [], []
        for row in self.preview_rows(limit=limit):
            (recipients if isinstance(row, PreviewRecipient) else invalid).append(row)
        return MoodlePreview(recipients=recipients, invalid=invalid)

    def write_preview_json(self, stream: IO[str]) -> None:
        """`{"recipients": [...], "invalid": [...]}` written as rows arrive; only the invalid rows
        (a few, normally) wait in memory for the end."""
        invalid: list[PreviewInvalid] = []
        stream.write('{"recipients": [')
        first = True
        for row in self.preview_rows():
            if isinstance(row, PreviewInvalid):
                invalid.append(row)
                continue
            stream.write(("" if first else ",\n  ") + json.dumps(row.model_dump(mode="json"), ensure_ascii=False))
            first = False
        stream.write('],\n "invalid": [')
        stream.write(",\n  ".join(json.dumps(row.model_dump(mode="json"), ensure_ascii=False) for row in invalid))
        stream.write("]}\n")


# Shaping: one function per type, rows as tuples in the query's column order -------------------------


def _recipient_maker(check_address: AddressCheck, recipient_type: Callable[..., Any]):
    def make(userid, email, username, firstname, lastname, variables: dict[str, str]):
        address = (email or "").strip()
        if not address:
            return InvalidRow(userid=int(userid), email="", reason="missing email")
        try:
            email_norm = check_address(address)
        except ValueError as error:
            return InvalidRow(userid=int(userid), email=address, reason=f"invalid email address: {error}")
        return recipient_type(
            line=0, email=address, email_norm=email_norm, userid=str(userid), firstname=firstname or None,
            lastname=lastname or None, username=username or None, variables=variables,
        )

    return make


def _course_variables(selection: Selection) -> dict[str, str]:
    variables = {"course_name": selection.course.fullname}
    if selection.site_url:
        variables["course_url"] = course_url(selection.site_url, selection.course.id)
    return variables


def _shape_welcome_std(selection: Selection, result) -> Iterator[Any]:
    make = selection.make_recipient
    for userid, email, username, firstname, lastname in result:
        yield make(userid, email, username, firstname, lastname, {})


def _shape_welcome_lic(selection: Selection, result) -> Iterator[Any]:
    """One person's allocations in the window (rows ordered by user): one mail listing their courses."""
    licenses, names, site_url = selection.licenses, selection.course_names, selection.site_url
    make = selection.make_recipient
    for _, group in itertools.groupby(result, key=lambda row: row[0]):
        group = list(group)
        license_ids = list(dict.fromkeys(row[5] for row in group))
        course_ids = list(dict.fromkeys(row[6] for row in group))
        expiries = [licenses[i][1] for i in license_ids if licenses[i][1]]
        variables = {
            "license_name": ", ".join(licenses[i][0] for i in license_ids),
            "course_name": ", ".join(names.get(i, "") for i in course_ids),
            # Several licenses: the one that runs out first is the date that matters.
            "expiry_date": format_date(min(expiries)) if expiries else "",
        }
        if site_url and len(course_ids) == 1:
            variables["course_url"] = course_url(site_url, course_ids[0])
        yield make(*group[0][:5], variables)


def _shape_reengagement(selection: Selection, result) -> Iterator[Any]:
    common, make = _course_variables(selection), selection.make_recipient
    for userid, email, username, firstname, lastname, last_access in result:
        yield make(userid, email, username, firstname, lastname,
                         {**common, "last_access": format_date(last_access) or "never"})


def _shape_reminder(selection: Selection, result) -> Iterator[Any]:
    common = {**_course_variables(selection), "due_date": selection.due_date}
    total = selection.tracked_activities or 0
    make = selection.make_recipient
    for userid, email, username, firstname, lastname, done in result:
        percent = str(round(100 * int(done) / total)) if total else ""
        yield make(userid, email, username, firstname, lastname, {**common, "completion_percent": percent})


def _shape_certificate(selection: Selection, result) -> Iterator[Any]:
    names, make = selection.course_names, selection.make_recipient
    previous = None
    for userid, email, username, firstname, lastname, courseid, timecompleted, percent in result:
        if (userid, courseid) == previous:
            continue  # one per completion, even if a course ever had two course grade items
        previous = (userid, courseid)
        yield make(userid, email, username, firstname, lastname, {
            "course_name": names.get(courseid, ""),
            "completion_date": format_date(timecompleted),
            "grade": _percent_text(float(percent)) if percent is not None else "",
            "courseid": str(courseid),
        })


_SHAPERS = {
    SelectionType.WELCOME_STD: _shape_welcome_std,
    SelectionType.WELCOME_LIC: _shape_welcome_lic,
    SelectionType.REENGAGEMENT: _shape_reengagement,
    SelectionType.REMINDER: _shape_reminder,
    SelectionType.CERTIFICATE: _shape_certificate,
}


def select_recipients(
    *, source: MoodleSource, options: SelectionOptions, check_address: AddressCheck, site_url: str | None = None,
    recipient_type: Callable[..., Any] = MoodleRecipient,
) -> Selection:
    """Check `options` against Moodle and return the selection, ready to stream.

    `check_address` is the CSV intake's (`backend.jobs.intake.checked_address`); with
    `recipient_type=RecipientRow` the rows go into `create_job` as they are. Callers that write
    jobs use `backend.jobs.moodle_source`, which passes both.

    Raises MoodleNotFound for an unknown company, course or activity (or a site without the
    'student' role), MoodleUnreachable / MoodleSchemaError when the database cannot be read.
    """
    t = source.tables
    scope = course = None
    tracked = None
    due_date = ""
    with source.connect() as connection:
        company = get_company_on(connection, source, options.company_id)
        if options.course_id is not None:
            course_row = connection.execute(
                select(t.course.c.id, t.course.c.fullname, t.course.c.shortname, t.course.c.visible,
                       t.course.c.enddate).where(t.course.c.id == options.course_id)
            ).first()
            require(course_row, f"Course {options.course_id}")
            course = MoodleCourse(id=course_row.id, fullname=course_row.fullname, shortname=course_row.shortname,
                                  visible=bool(course_row.visible))
            due_date = format_date(course_row.enddate)
        if options.type in COURSE_REQUIRED:
            scope = _course_scope(connection, source, options.course_id)
            if options.unless_activity_cmid is not None:
                _check_activity(connection, source, options.unless_activity_cmid, options.course_id)
            if options.type == SelectionType.REMINDER:
                tracked = connection.execute(
                    select(func.count()).select_from(t.course_modules)
                    .where(*queries.tracked_activity_terms(t, options.course_id))
                ).scalar_one()
        licenses, course_names = {}, {}
        if options.type == SelectionType.WELCOME_LIC:
            licenses = {row.id: (row.name, row.expirydate) for row in connection.execute(
                queries.license_details(t, company_id=options.company_id))}
            course_names = dict(connection.execute(queries.license_course_names(
                t, company_id=options.company_id, since=options.since, at=options.at)).tuples().all())
        elif options.type == SelectionType.CERTIFICATE:
            course_names = dict(connection.execute(queries.certificate_course_names(
                t, company_id=options.company_id, course_id=options.course_id)).tuples().all())
    return Selection(
        source=source, options=options, company=company, course=course, scope=scope,
        tracked_activities=tracked, due_date=due_date, site_url=site_url, licenses=licenses,
        course_names=course_names, check_address=check_address, recipient_type=recipient_type,
    )


def get_company_on(connection, source: MoodleSource, company_id: int) -> MoodleCompany:
    c = source.tables.company.c
    row = connection.execute(select(c.id, c.name, c.shortname, c.suspended).where(c.id == company_id)).first()
    require(row, f"Company {company_id}")
    return MoodleCompany(id=row.id, name=row.name, shortname=row.shortname, suspended=bool(row.suspended))


def _course_scope(connection, source: MoodleSource, course_id: int) -> CourseScope:
    t = source.tables
    role_id = connection.execute(select(t.role.c.id).where(t.role.c.shortname == "student")).scalar()
    if role_id is None:
        raise MoodleNotFound("Moodle has no role with the shortname 'student', so no course has students to select.")
    context_id = connection.execute(
        select(t.context.c.id).where(
            t.context.c.contextlevel == CONTEXT_COURSE, t.context.c.instanceid == course_id
        )
    ).scalar()
    return CourseScope(course_id=course_id, context_id=context_id, student_role_id=role_id)


def _check_activity(connection, source: MoodleSource, cmid: int, course_id: int) -> None:
    cm = source.tables.course_modules.c
    found = connection.execute(select(cm.course).where(cm.id == cmid)).first()
    require(found, f"Activity (course module) {cmid}")
    if found.course != course_id:
        raise MoodleNotFound(f"Activity (course module) {cmid} belongs to course {found.course}, not to course {course_id}.")
