"""The Moodle and IOMAD tables mani reads, as SQLAlchemy Core tables under a given prefix.

Columns are those of IOMAD 4.4.5's XMLDB definitions (`lib/db/install.xml` and
`local/iomad/db/install.xml`); only the columns mani reads are declared, which is all a SELECT
needs. `tests/test_moodle_schema.py` checks each one against the XML, name and type.

`config` is not in that subset: it is optional here (the Moodle version is reported when it
can be read, and nothing else depends on it).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from functools import lru_cache

from sqlalchemy import (
    BigInteger,
    Column,
    MetaData,
    Numeric,
    SmallInteger,
    String,
    Table,
    Text,
)

# Moodle's context levels (lib/accesslib.php): CONTEXT_COURSE.
CONTEXT_COURSE = 50
# The XMLDB "int" of LENGTH 10 is a BIGINT on both databases; small flags are SMALLINT/TINYINT.
_ID = BigInteger


def _int(name: str, **kwargs) -> Column:
    return Column(name, BigInteger, **kwargs)


def _flag(name: str) -> Column:
    return Column(name, SmallInteger, nullable=False)


def _text(name: str, length: int | None = None, *, nullable: bool = False) -> Column:
    return Column(name, String(length) if length else Text, nullable=nullable)


def _number(name: str, *, nullable: bool) -> Column:
    return Column(name, Numeric(10, 5), nullable=nullable)


@dataclass(frozen=True)
class MoodleTables:
    """The tables under one prefix; `required` is everything the selections read."""

    prefix: str
    metadata: MetaData
    user: Table
    role: Table
    context: Table
    course: Table
    enrol: Table
    user_enrolments: Table
    role_assignments: Table
    user_lastaccess: Table
    modules: Table
    course_modules: Table
    course_modules_completion: Table
    course_completions: Table
    grade_items: Table
    grade_grades: Table
    company: Table
    company_users: Table
    company_course: Table
    companylicense: Table
    companylicense_users: Table
    config: Table

    @property
    def required(self) -> tuple[Table, ...]:
        return tuple(getattr(self, f.name) for f in fields(self) if f.name in REQUIRED_TABLES)

    def unprefixed(self, table: Table) -> str:
        return table.name[len(self.prefix):]


REQUIRED_TABLES = (
    "user", "role", "context", "course", "enrol", "user_enrolments", "role_assignments", "user_lastaccess",
    "modules", "course_modules", "course_modules_completion", "course_completions", "grade_items",
    "grade_grades", "company", "company_users", "company_course", "companylicense", "companylicense_users",
)
OPTIONAL_TABLES = ("config",)


@lru_cache(maxsize=16)
def moodle_tables(prefix: str) -> MoodleTables:
    """The tables under `prefix`, one MetaData per prefix (cached: they are immutable once built)."""
    metadata = MetaData()

    def table(name: str, *columns: Column) -> Table:
        return Table(prefix + name, metadata, Column("id", _ID, primary_key=True), *columns)

    return MoodleTables(
        prefix=prefix,
        metadata=metadata,
        user=table(
            "user",
            _text("auth", 20), _flag("deleted"), _flag("suspended"), _int("mnethostid", nullable=False),
            _text("username", 100), _text("firstname", 100), _text("lastname", 100), _text("email", 100),
            _int("timecreated", nullable=False),
        ),
        role=table("role", _text("shortname", 100)),
        context=table("context", _int("contextlevel", nullable=False), _int("instanceid", nullable=False)),
        course=table(
            "course",
            _text("fullname", 254), _text("shortname", 255), _int("startdate", nullable=False),
            _int("enddate", nullable=False), _flag("visible"), _flag("enablecompletion"),
        ),
        enrol=table("enrol", _text("enrol", 20), _int("status", nullable=False), _int("courseid", nullable=False)),
        user_enrolments=table(
            "user_enrolments",
            _int("status", nullable=False), _int("enrolid", nullable=False), _int("userid", nullable=False),
            _int("timestart", nullable=False), _int("timeend", nullable=False), _int("timecreated", nullable=False),
        ),
        role_assignments=table(
            "role_assignments",
            _int("roleid", nullable=False), _int("contextid", nullable=False), _int("userid", nullable=False),
        ),
        user_lastaccess=table(
            "user_lastaccess",
            _int("userid", nullable=False), _int("courseid", nullable=False), _int("timeaccess", nullable=False),
        ),
        modules=table("modules", _text("name", 20), _flag("visible")),
        course_modules=table(
            "course_modules",
            _int("course", nullable=False), _int("module", nullable=False), _int("instance", nullable=False),
            _text("idnumber", 100, nullable=True), _flag("visible"), _flag("completion"),
            _flag("deletioninprogress"),
        ),
        course_modules_completion=table(
            "course_modules_completion",
            _int("coursemoduleid", nullable=False), _int("userid", nullable=False), _flag("completionstate"),
            _int("timemodified", nullable=False),
        ),
        course_completions=table(
            "course_completions",
            _int("userid", nullable=False), _int("course", nullable=False), _int("timecompleted", nullable=True),
        ),
        grade_items=table(
            "grade_items",
            _int("courseid", nullable=True), _text("itemtype", 30), _number("grademax", nullable=False),
        ),
        grade_grades=table(
            "grade_grades",
            _int("itemid", nullable=False), _int("userid", nullable=False), _number("finalgrade", nullable=True),
        ),
        company=table("company", _text("name", 50), _text("shortname", 25), _flag("suspended")),
        company_users=table(
            "company_users",
            _int("companyid", nullable=False), _int("userid", nullable=False), _int("departmentid", nullable=False),
            _flag("suspended"),
        ),
        company_course=table(
            "company_course",
            _int("companyid", nullable=False), _int("courseid", nullable=False), _int("departmentid", nullable=False),
        ),
        companylicense=table(
            "companylicense",
            _text("name", 255), _int("expirydate", nullable=False), _int("validlength", nullable=False),
            _int("companyid", nullable=True), _flag("program"),
        ),
        companylicense_users=table(
            "companylicense_users",
            _int("licenseid", nullable=False), _int("userid", nullable=False),
            _int("licensecourseid", nullable=True), _int("issuedate", nullable=True),
        ),
        config=table("config", _text("name", 255), _text("value")),
    )
