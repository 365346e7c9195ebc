"""The five selections as SQLAlchemy Core queries: Moodle's and IOMAD's own rules, one query each.

Every value is a bound parameter; the prefix lives in the Table objects. Each query returns one
row per recipient (welcome_lic: per user and course, grouped per user by the caller), ordered by
user id so the caller can stream and group without holding the result.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Select, and_, case, exists, false, func, or_, select
from sqlalchemy.sql.elements import ColumnElement

from backend.moodle.source.schema import MoodleTables

# enrol/user_enrolments status 0 is ENROL_INSTANCE_ENABLED / ENROL_USER_ACTIVE.
ACTIVE = 0
# course_modules_completion states that count as complete: COMPLETION_COMPLETE, _COMPLETE_PASS.
# 3 (COMPLETION_COMPLETE_FAIL) is "completed, failed" and does not count.
COMPLETE_STATES = (1, 2)


@dataclass(frozen=True, slots=True)
class CourseScope:
    """What the course selections need, looked up once: the course, its context and the student role."""

    course_id: int
    context_id: int | None
    student_role_id: int


def user_columns(t: MoodleTables) -> list:
    u = t.user.c
    return [u.id.label("userid"), u.email, u.username, u.firstname, u.lastname]


def base_filter(t: MoodleTables, company_id: int) -> ColumnElement[bool]:
    """The rule every selection starts from.

    Moodle: not deleted, not suspended, not the nologin auth. IOMAD: a member of the company, and
    not suspended there (IOMAD suspends through company_users.suspended and often leaves
    user.suspended at 0). A user in two departments has two company_users rows: EXISTS, not a
    join, so each user comes once, and any suspended row of the company excludes them.
    """
    u = t.user.c
    member = t.company_users.alias("cu_member")
    suspended = t.company_users.alias("cu_suspended")
    return and_(
        u.deleted == 0,
        u.suspended == 0,
        u.auth != "nologin",
        exists().where(member.c.userid == u.id, member.c.companyid == company_id),
        ~exists().where(
            suspended.c.userid == u.id, suspended.c.companyid == company_id, suspended.c.suspended != 0
        ),
    )


def _active_enrolment_terms(t: MoodleTables, course_id: int, at: int) -> list[ColumnElement[bool]]:
    """Moodle's get_enrolled_sql(onlyactive): an active enrolment in an enabled instance, started
    before `at` and not ended by then (timeend 0 means never)."""
    ue, e = t.user_enrolments.c, t.enrol.c
    return [
        e.courseid == course_id,
        ue.status == ACTIVE,
        e.status == ACTIVE,
        ue.timestart < at,
        or_(ue.timeend == 0, ue.timeend > at),
    ]


def is_student(t: MoodleTables, scope: CourseScope) -> ColumnElement[bool]:
    """A student role assignment in the course's own context (context ids are not course ids)."""
    ra = t.role_assignments.c
    if scope.context_id is None:
        return false()  # a course without a context has no students
    return exists().where(
        ra.userid == t.user.c.id, ra.roleid == scope.student_role_id, ra.contextid == scope.context_id
    )


def active_enrolled_users(t: MoodleTables, course_id: int, at: int):
    """The users with an active enrolment in the course, each once, with the start of their
    earliest one (timestart, or the enrolment's timecreated when timestart is 0)."""
    ue, e = t.user_enrolments, t.enrol
    started = func.min(case((ue.c.timestart > 0, ue.c.timestart), else_=ue.c.timecreated))
    return (
        select(ue.c.userid, started.label("started"))
        .select_from(ue.join(e, e.c.id == ue.c.enrolid))
        .where(*_active_enrolment_terms(t, course_id, at))
        .group_by(ue.c.userid)
        .subquery("enrolled")
    )


def completed_course(t: MoodleTables, course_id: int) -> ColumnElement[bool]:
    """Complete means timecompleted > 0: a legacy row with 0 (or NULL) is not a completion."""
    cc = t.course_completions.c
    return exists().where(cc.userid == t.user.c.id, cc.course == course_id, cc.timecompleted > 0)


def completed_activity(t: MoodleTables, cmid: int) -> ColumnElement[bool]:
    cmc = t.course_modules_completion.c
    return exists().where(
        cmc.userid == t.user.c.id, cmc.coursemoduleid == cmid, cmc.completionstate.in_(COMPLETE_STATES)
    )


def tracked_activity_terms(t: MoodleTables, course_id: int) -> list[ColumnElement[bool]]:
    """Moodle's progress counts activities with completion enabled that are not being deleted;
    hidden ones count too."""
    cm = t.course_modules.c
    return [cm.course == course_id, cm.completion > 0, cm.deletioninprogress == 0]


# The selections -------------------------------------------------------------------------------


def welcome_std(t: MoodleTables, *, company_id: int, since: int, at: int) -> Select:
    u = t.user.c
    return (
        select(*user_columns(t))
        .where(base_filter(t, company_id), u.timecreated >= since, u.timecreated <= at)
        .order_by(u.id)
    )


def welcome_lic(t: MoodleTables, *, company_id: int, since: int, at: int) -> Select:
    """One row per allocation (user and course) of the company's licenses in the window; names
    come from `license_names` and `course_names` (a few rows, not one per recipient)."""
    u, clu, cl, c = t.user, t.companylicense_users, t.companylicense, t.course
    return (
        select(*user_columns(t), cl.c.id.label("licenseid"), c.c.id.label("courseid"))
        .select_from(
            clu.join(cl, cl.c.id == clu.c.licenseid)
            .join(u, u.c.id == clu.c.userid)
            .join(c, c.c.id == clu.c.licensecourseid)
        )
        .where(
            cl.c.companyid == company_id,
            # NULL and 0 are "never allocated": neither may fall in a window that starts at 0.
            clu.c.issuedate.is_not(None),
            clu.c.issuedate > 0,
            clu.c.issuedate >= since,
            clu.c.issuedate <= at,
            base_filter(t, company_id),
        )
        # The order of the (userid, licenseid, licensecourseid) index: no sort on MariaDB.
        .order_by(clu.c.userid, clu.c.licenseid, clu.c.licensecourseid)
    )


def reengagement(
    t: MoodleTables, *, company_id: int, scope: CourseScope, at: int, inactive_for: int,
    include_completed: bool, unless_activity_cmid: int | None,
) -> Select:
    """Active students whose last access to the course (or, never having accessed it, the start of
    their earliest active enrolment) is at least `inactive_for` before `at`."""
    u, la = t.user, t.user_lastaccess
    course_id = scope.course_id
    starts = active_enrolled_users(t, course_id, at)
    last_seen = case((la.c.timeaccess > 0, la.c.timeaccess), else_=starts.c.started)
    terms = [base_filter(t, company_id), is_student(t, scope), last_seen <= at - inactive_for]
    if not include_completed:
        terms.append(~completed_course(t, course_id))
    if unless_activity_cmid is not None:
        terms.append(~completed_activity(t, unless_activity_cmid))
    return (
        select(*user_columns(t), la.c.timeaccess.label("last_access"))
        .select_from(
            starts.join(u, u.c.id == starts.c.userid)
            .outerjoin(la, and_(la.c.userid == u.c.id, la.c.courseid == course_id))
        )
        .where(*terms)
        .order_by(u.c.id)
    )


def reminder(
    t: MoodleTables, *, company_id: int, scope: CourseScope, at: int, unless_activity_cmid: int | None
) -> Select:
    """Active students who have not completed the course, with how many tracked activities they completed."""
    u, cm, cmc = t.user, t.course_modules, t.course_modules_completion
    course_id = scope.course_id
    done = (
        select(cmc.c.userid, func.count().label("done"))
        .select_from(cmc.join(cm, cm.c.id == cmc.c.coursemoduleid))
        .where(*tracked_activity_terms(t, course_id), cmc.c.completionstate.in_(COMPLETE_STATES))
        .group_by(cmc.c.userid)
        .subquery("activities_done")
    )
    enrolled = active_enrolled_users(t, course_id, at)
    terms = [base_filter(t, company_id), is_student(t, scope), ~completed_course(t, course_id)]
    if unless_activity_cmid is not None:
        terms.append(~completed_activity(t, unless_activity_cmid))
    return (
        select(*user_columns(t), func.coalesce(done.c.done, 0).label("done"))
        .select_from(
            enrolled.join(u, u.c.id == enrolled.c.userid).outerjoin(done, done.c.userid == u.c.id)
        )
        .where(*terms)
        .order_by(u.c.id)
    )


def certificate(t: MoodleTables, *, company_id: int, since: int, at: int, course_id: int | None) -> Select:
    """Completions in the window, one per user and course, with the course total grade when there is one."""
    u, cc, c, gi, gg, ccourse = t.user, t.course_completions, t.course, t.grade_items, t.grade_grades, t.company_course
    if course_id is not None:
        in_scope = cc.c.course == course_id
    else:
        # company_course may hold a course once per department: EXISTS, not a join.
        in_scope = exists().where(ccourse.c.companyid == company_id, ccourse.c.courseid == cc.c.course)
    # The course total as a percent of its maximum; NULL when there is no grade (yet).
    grade_percent = case(
        (and_(gi.c.grademax > 0, gg.c.finalgrade.is_not(None)), gg.c.finalgrade * 100 / gi.c.grademax)
    )
    return (
        select(*user_columns(t), c.c.id.label("courseid"), cc.c.timecompleted, grade_percent.label("grade_percent"))
        .select_from(
            cc.join(u, u.c.id == cc.c.userid)
            .join(c, c.c.id == cc.c.course)
            .outerjoin(gi, and_(gi.c.courseid == cc.c.course, gi.c.itemtype == "course"))
            .outerjoin(gg, and_(gg.c.itemid == gi.c.id, gg.c.userid == cc.c.userid))
        )
        .where(
            cc.c.timecompleted > 0,
            cc.c.timecompleted >= since,
            cc.c.timecompleted <= at,
            in_scope,
            base_filter(t, company_id),
        )
        .order_by(u.c.id, c.c.id)
    )


def license_details(t: MoodleTables, *, company_id: int) -> Select:
    """The company's licenses: id, name, expiry."""
    cl = t.companylicense.c
    return select(cl.id, cl.name, cl.expirydate).where(cl.companyid == company_id)


def license_course_names(t: MoodleTables, *, company_id: int, since: int, at: int) -> Select:
    """Names of the courses allocated through the company's licenses in the window."""
    clu, cl, c = t.companylicense_users.c, t.companylicense.c, t.course.c
    allocated = (
        select(clu.licensecourseid)
        .where(clu.licenseid == cl.id, cl.companyid == company_id, clu.issuedate >= since, clu.issuedate <= at)
    )
    return select(c.id, c.fullname).where(c.id.in_(allocated))


def certificate_course_names(t: MoodleTables, *, company_id: int, course_id: int | None) -> Select:
    c, ccourse = t.course.c, t.company_course.c
    if course_id is not None:
        return select(c.id, c.fullname).where(c.id == course_id)
    return select(c.id, c.fullname).where(exists().where(ccourse.companyid == company_id, ccourse.courseid == c.id))
