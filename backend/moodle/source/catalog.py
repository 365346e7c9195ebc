"""Read helpers for the console's pickers and the schedules: companies, their courses, a course's
tracked activities. Small lists, one query each."""

from __future__ import annotations

from sqlalchemy import exists, select

from backend.moodle.source import queries
from backend.moodle.source.connection import MoodleSource, require
from backend.moodle.source.results import MoodleActivity, MoodleCompany, MoodleCourse
from backend.moodle.source.selections import get_company_on


def list_companies(*, source: MoodleSource) -> list[MoodleCompany]:
    """Every IOMAD company, by name."""
    c = source.tables.company.c
    with source.connect() as connection:
        rows = connection.execute(select(c.id, c.name, c.shortname, c.suspended).order_by(c.name, c.id)).all()
    return [MoodleCompany(id=r.id, name=r.name, shortname=r.shortname, suspended=bool(r.suspended)) for r in rows]


def get_company(*, source: MoodleSource, company_id: int) -> MoodleCompany:
    """The company; MoodleNotFound naming it when it does not exist."""
    with source.connect() as connection:
        return get_company_on(connection, source, company_id)


def company_courses(*, source: MoodleSource, company_id: int) -> list[MoodleCourse]:
    """The company's own courses (company_course), each once, by full name."""
    t = source.tables
    c, cc = t.course.c, t.company_course.c
    with source.connect() as connection:
        get_company_on(connection, source, company_id)
        rows = connection.execute(
            select(c.id, c.fullname, c.shortname, c.visible)
            .where(exists().where(cc.companyid == company_id, cc.courseid == c.id))
            .order_by(c.fullname, c.id)
        ).all()
    return [MoodleCourse(id=r.id, fullname=r.fullname, shortname=r.shortname, visible=bool(r.visible)) for r in rows]


def course_in_company(*, source: MoodleSource, company_id: int, course_id: int) -> bool:
    cc = source.tables.company_course.c
    with source.connect() as connection:
        return connection.execute(
            select(exists().where(cc.companyid == company_id, cc.courseid == course_id))
        ).scalar_one()


def get_course(*, source: MoodleSource, course_id: int) -> MoodleCourse:
    c = source.tables.course.c
    with source.connect() as connection:
        row = connection.execute(select(c.id, c.fullname, c.shortname, c.visible).where(c.id == course_id)).first()
    require(row, f"Course {course_id}")
    return MoodleCourse(id=row.id, fullname=row.fullname, shortname=row.shortname, visible=bool(row.visible))


def course_activities(*, source: MoodleSource, course_id: int) -> list[MoodleActivity]:
    """The course's activities that track completion (those Moodle's progress counts), in id order."""
    t = source.tables
    cm, m = t.course_modules.c, t.modules.c
    with source.connect() as connection:
        exists_course = connection.execute(select(t.course.c.id).where(t.course.c.id == course_id)).first()
        require(exists_course, f"Course {course_id}")
        rows = connection.execute(
            select(cm.id, m.name, cm.idnumber, cm.visible, cm.completion)
            .select_from(t.course_modules.join(t.modules, m.id == cm.module))
            .where(*queries.tracked_activity_terms(t, course_id))
            .order_by(cm.id)
        ).all()
    return [
        MoodleActivity(cmid=r.id, module=r.name, idnumber=r.idnumber or None, visible=bool(r.visible),
                       completion=r.completion)
        for r in rows
    ]
