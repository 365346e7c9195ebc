"""A small IOMAD site whose rows exercise every rule of the five selections, traps included.

Every trap is a row that a naive query gets wrong: a user in two departments, an IOMAD-suspended
user, `timeend = 0` against a past `timeend`, a disabled enrolment instance, a teacher, students
who never accessed the course, a failed activity (state 3), a legacy `timecompleted = 0`, a NULL
`issuedate`, a role assignment in a context whose id equals the course id, a course listed twice
in company_course, an activity grade item beside the course total, and a course name with an
emoji that needs utf8mb4.

`EXPECTED` says, per selection, exactly which user ids (and courses) must come back.
"""

from __future__ import annotations

from sqlalchemy import Engine, MetaData, insert

AT = 1_800_000_000  # 2027-01-15 08:00 UTC: every selection is evaluated as of this moment
DAY = 86400
SINCE_1D = AT - DAY
SINCE_7D = AT - 7 * DAY
OLD = AT - 400 * DAY

COMPANY, OTHER_COMPANY = 1, 2
DEPT_A, DEPT_B, OTHER_DEPT = 10, 11, 20
COURSE, OTHER_COURSE, SECOND_COURSE = 1, 2, 3
COURSE_NAME = "Safety 101 🦺 Sicherheit"
SECOND_COURSE_NAME = "Second course"
STUDENT_ROLE, TEACHER_ROLE = 5, 3
# Context ids are not course ids: course 1's context is 3, and context 1 (the system) has the
# same id as course 1, which a naive `contextid = courseid` would take for it.
SYSTEM_CONTEXT, CATEGORY_CONTEXT, COURSE_CONTEXT, SECOND_COURSE_CONTEXT, OTHER_COURSE_CONTEXT = 1, 2, 3, 4, 5
ENROL_MANUAL, ENROL_SELF_DISABLED, ENROL_SECOND, ENROL_OTHER, ENROL_COHORT = 1, 2, 3, 4, 5
CM_QUIZ, CM_HIDDEN_PAGE, CM_UNTRACKED, CM_DELETING, CM_ASSIGN, CM_SECOND_COURSE = 11, 12, 13, 14, 15, 31
LICENSE, PROGRAM_LICENSE, OTHER_LICENSE = 1, 2, 3
LICENSE_EXPIRY = AT + 365 * DAY
PROGRAM_EXPIRY = AT + 90 * DAY

EXPECTED = {
    # welcome_std, since AT - 1 day
    "welcome_std": {1, 2, 3, 6, 14},
    "welcome_std_invalid": {12: "invalid email address", 13: "missing email"},
    # reengagement of COURSE, inactive for 30 days
    "reengagement": {20, 23, 28, 30, 33, 34, 36, 38, 41, 43},
    "reengagement_invalid": {42: "invalid email address"},
    "reengagement_include_completed": {20, 23, 28, 30, 32, 33, 34, 36, 38, 41, 43},
    "reengagement_unless_quiz": {20, 23, 28, 30, 33, 34, 36, 38, 41, 43} - {20, 35},
    # reminder of COURSE: percent of 3 tracked activities (quiz, hidden page, assignment)
    "reminder": {20: 67, 21: 100, 23: 0, 28: 0, 29: 0, 30: 0, 31: 0, 33: 0, 34: 0, 35: 33, 36: 0, 38: 0,
                 41: 0, 43: 0, 44: 0},
    "reminder_invalid": {42: "invalid email address"},
    # welcome_lic, since AT - 1 day: userid -> (license names, course names)
    "welcome_lic": {
        50: ("Safety license", COURSE_NAME),
        51: ("Program license", f"{COURSE_NAME}, {SECOND_COURSE_NAME}"),
        57: ("Safety license", COURSE_NAME),
        58: ("Safety license, Program license", f"{COURSE_NAME}, {SECOND_COURSE_NAME}"),
    },
    # certificate, since AT - 7 days: (userid, courseid) -> grade
    "certificate": {
        (32, COURSE): "", (60, COURSE): "85%", (61, COURSE): "", (65, COURSE): "72.5%",
        (65, SECOND_COURSE): "", (68, COURSE): "",
    },
}


class SiteBuilder:
    """Collects rows per table, then inserts them in one executemany per table."""

    def __init__(self) -> None:
        self.rows: dict[str, list[dict]] = {}

    def add(self, table: str, **values) -> None:
        self.rows.setdefault(table, []).append(values)

    def user(self, uid: int, *, email: str | None = None, created: int = OLD, companies=((COMPANY, DEPT_A, 0),),
             **fields) -> None:
        self.add("user", id=uid, username=f"user{uid}", firstname=f"First{uid}", lastname=f"Last{uid}",
                 email=f"user{uid}@example.com" if email is None else email, timecreated=created,
                 mnethostid=1, confirmed=1, **fields)
        for company, department, suspended in companies:
            self.add("company_users", companyid=company, userid=uid, departmentid=department, suspended=suspended)

    def enrol(self, uid: int, enrolid: int = ENROL_MANUAL, *, start: int = AT - 100 * DAY, end: int = 0,
              status: int = 0, created: int = AT - 100 * DAY) -> None:
        self.add("user_enrolments", enrolid=enrolid, userid=uid, status=status, timestart=start, timeend=end,
                 timecreated=created)

    def role(self, uid: int, context: int = COURSE_CONTEXT, role: int = STUDENT_ROLE) -> None:
        self.add("role_assignments", userid=uid, contextid=context, roleid=role)

    def student(self, uid: int, *, last_access: int | None = AT - 40 * DAY, **enrolment) -> None:
        self.user(uid)
        self.enrol(uid, **enrolment)
        self.role(uid)
        if last_access is not None:
            self.add("user_lastaccess", userid=uid, courseid=COURSE, timeaccess=last_access)

    def completion(self, uid: int, cmid: int, state: int) -> None:
        self.add("course_modules_completion", userid=uid, coursemoduleid=cmid, completionstate=state,
                 timemodified=AT - 3 * DAY)

    def completed(self, uid: int, course: int, when: int | None) -> None:
        self.add("course_completions", userid=uid, course=course, timecompleted=when, timeenrolled=OLD)

    def allocation(self, uid: int, license_id: int, course: int, issued: int | None) -> None:
        self.add("companylicense_users", userid=uid, licenseid=license_id, licensecourseid=course, issuedate=issued)

    def insert(self, engine: Engine, metadata: MetaData, prefix: str) -> None:
        with engine.begin() as connection:
            for table, rows in self.rows.items():
                # Rows that leave a column out get the column's default, so group them by their columns.
                groups: dict[tuple[str, ...], list[dict]] = {}
                for row in rows:
                    groups.setdefault(tuple(sorted(row)), []).append(row)
                for group in groups.values():
                    connection.execute(insert(metadata.tables[prefix + table]), group)


def build_site() -> SiteBuilder:
    site = SiteBuilder()
    add = site.add
    add("config", name="version", value="2024042205.00")
    add("config", name="release", value="4.4.5 (Build: 20241209)")
    add("company", id=COMPANY, name="Acme Training", shortname="acme", city="Berlin", country="DE")
    add("company", id=OTHER_COMPANY, name="Other Co", shortname="other", city="Paris", country="FR")
    for dept, company in ((DEPT_A, COMPANY), (DEPT_B, COMPANY), (OTHER_DEPT, OTHER_COMPANY)):
        add("department", id=dept, name=f"Dept {dept}", shortname=f"d{dept}", company=company)
    add("course", id=COURSE, fullname=COURSE_NAME, shortname="safety", enddate=AT + 30 * DAY, enablecompletion=1)
    add("course", id=OTHER_COURSE, fullname="Other company course", shortname="other", enablecompletion=1)
    add("course", id=SECOND_COURSE, fullname=SECOND_COURSE_NAME, shortname="second", enablecompletion=1)
    # The course is listed once per department: a join would double its completions.
    add("company_course", companyid=COMPANY, courseid=COURSE, departmentid=DEPT_A)
    add("company_course", companyid=COMPANY, courseid=COURSE, departmentid=DEPT_B)
    add("company_course", companyid=COMPANY, courseid=SECOND_COURSE, departmentid=DEPT_A)
    add("company_course", companyid=OTHER_COMPANY, courseid=OTHER_COURSE, departmentid=OTHER_DEPT)
    add("role", id=TEACHER_ROLE, shortname="editingteacher", name="", description="", sortorder=3,
        archetype="editingteacher")
    add("role", id=STUDENT_ROLE, shortname="student", name="", description="", sortorder=5, archetype="student")
    for context, level, instance in (
        (SYSTEM_CONTEXT, 10, 0), (CATEGORY_CONTEXT, 40, COURSE), (COURSE_CONTEXT, 50, COURSE),
        (SECOND_COURSE_CONTEXT, 50, SECOND_COURSE), (OTHER_COURSE_CONTEXT, 50, OTHER_COURSE),
    ):
        add("context", id=context, contextlevel=level, instanceid=instance, depth=1)
    for enrol_id, method, course, status in (
        (ENROL_MANUAL, "manual", COURSE, 0), (ENROL_SELF_DISABLED, "self", COURSE, 1),
        (ENROL_SECOND, "manual", SECOND_COURSE, 0), (ENROL_OTHER, "manual", OTHER_COURSE, 0),
        (ENROL_COHORT, "cohort", COURSE, 0),
    ):
        add("enrol", id=enrol_id, enrol=method, courseid=course, status=status)
    for module_id, name in ((1, "quiz"), (2, "page"), (3, "assign")):
        add("modules", id=module_id, name=name)
    for cmid, course, module, visible, completion, deleting in (
        (CM_QUIZ, COURSE, 1, 1, 2, 0), (CM_HIDDEN_PAGE, COURSE, 2, 0, 1, 0), (CM_UNTRACKED, COURSE, 2, 1, 0, 0),
        (CM_DELETING, COURSE, 3, 1, 1, 1), (CM_ASSIGN, COURSE, 3, 1, 2, 0), (CM_SECOND_COURSE, SECOND_COURSE, 1, 1, 1, 0),
    ):
        add("course_modules", id=cmid, course=course, module=module, instance=cmid, visible=visible,
            completion=completion, deletioninprogress=deleting)
    for license_id, name, company, expiry, program in (
        (LICENSE, "Safety license", COMPANY, LICENSE_EXPIRY, 0),
        (PROGRAM_LICENSE, "Program license", COMPANY, PROGRAM_EXPIRY, 1),
        (OTHER_LICENSE, "Other license", OTHER_COMPANY, LICENSE_EXPIRY, 0),
    ):
        add("companylicense", id=license_id, name=name, companyid=company, expirydate=expiry, program=program,
            validlength=365)
    _welcome_users(site)
    _course_students(site)
    _license_users(site)
    _completions(site)
    return site


def _welcome_users(site: SiteBuilder) -> None:
    site.user(1, created=AT - 3600)
    site.user(2, created=SINCE_1D)  # the window is closed at both ends
    site.user(3, created=AT)
    site.user(4, created=AT + 1)
    site.user(5, created=SINCE_1D - 1)
    site.user(6, created=AT - 60, companies=((COMPANY, DEPT_A, 0), (COMPANY, DEPT_B, 0)))  # two departments
    site.user(7, created=AT - 60, companies=((COMPANY, DEPT_A, 0), (COMPANY, DEPT_B, 1)))  # IOMAD-suspended
    site.user(8, created=AT - 60, suspended=1)
    site.user(9, created=AT - 60, deleted=1)
    site.user(10, created=AT - 60, auth="nologin")
    site.user(11, created=AT - 60, companies=((OTHER_COMPANY, OTHER_DEPT, 0),))
    site.user(12, created=AT - 60, email="not-an-address")
    site.user(13, created=AT - 60, email="")
    # Suspended in another company only: still a member in good standing of this one.
    site.user(14, created=AT - 60, companies=((COMPANY, DEPT_A, 0), (OTHER_COMPANY, OTHER_DEPT, 1)))


def _course_students(site: SiteBuilder) -> None:
    s = site.student
    s(20)  # inactive 40 days
    site.completion(20, CM_QUIZ, 1)
    site.completion(20, CM_HIDDEN_PAGE, 2)  # a hidden activity counts, as in Moodle's progress
    s(21, last_access=AT - 5 * DAY)
    for cmid in (CM_QUIZ, CM_HIDDEN_PAGE, CM_ASSIGN):
        site.completion(21, cmid, 1)
    s(22, end=AT - DAY)  # enrolment ended
    s(23, end=AT + 10 * DAY, last_access=AT - 60 * DAY)
    s(24, status=1)  # enrolment suspended
    site.user(25)  # only through the disabled self-enrolment instance
    site.enrol(25, ENROL_SELF_DISABLED)
    site.role(25)
    site.add("user_lastaccess", userid=25, courseid=COURSE, timeaccess=AT - 90 * DAY)
    s(26, start=AT)  # starts at `at`: timestart < at is strict
    site.user(27)  # a teacher
    site.enrol(27)
    site.role(27, role=TEACHER_ROLE)
    site.add("user_lastaccess", userid=27, courseid=COURSE, timeaccess=AT - 90 * DAY)
    s(28, last_access=None, start=AT - 45 * DAY)  # never accessed, enrolled 45 days ago
    s(29, last_access=None, start=AT - 10 * DAY)  # never accessed, enrolled 10 days ago
    s(30, last_access=None, start=0, created=AT - 50 * DAY)  # timestart 0: counts from timecreated
    s(31, last_access=None, start=0, created=AT - 5 * DAY)
    s(32)
    site.completed(32, COURSE, AT - 2 * DAY)
    s(33)
    site.completed(33, COURSE, 0)  # legacy row: not a completion
    s(34)
    site.completed(34, COURSE, None)
    s(35, last_access=AT - 2 * DAY)  # active, but completed the quiz
    site.completion(35, CM_QUIZ, 2)
    s(36)
    site.completion(36, CM_QUIZ, 3)  # failed: does not count as complete
    site.completion(36, CM_UNTRACKED, 1)  # not a tracked activity
    site.completion(36, CM_DELETING, 1)  # being deleted: not counted
    site.user(37)  # student only in the system context (id 1 = the course id)
    site.enrol(37)
    site.role(37, context=SYSTEM_CONTEXT)
    site.role(37, context=CATEGORY_CONTEXT)
    site.add("user_lastaccess", userid=37, courseid=COURSE, timeaccess=AT - 90 * DAY)
    s(38, last_access=None, start=AT - 20 * DAY)  # two enrolments: the earliest counts
    site.enrol(38, ENROL_COHORT, start=AT - 60 * DAY)
    site.user(39, companies=((COMPANY, DEPT_A, 1),))  # IOMAD-suspended student
    site.enrol(39)
    site.role(39)
    site.user(40, companies=((OTHER_COMPANY, OTHER_DEPT, 0),))  # student of the other company
    site.enrol(40)
    site.role(40)
    s(41)  # recent access to another course only
    site.add("user_lastaccess", userid=41, courseid=SECOND_COURSE, timeaccess=AT - DAY)
    s(42)
    site.rows["user"][-1]["email"] = "bad@"  # a student with a broken address
    site.user(43, companies=((COMPANY, DEPT_A, 0), (COMPANY, DEPT_B, 0)))  # two departments
    site.enrol(43)
    site.role(43)
    site.add("user_lastaccess", userid=43, courseid=COURSE, timeaccess=AT - 31 * DAY)
    s(44, last_access=AT - 29 * DAY)  # 29 days: not yet inactive
    site.completion(44, CM_SECOND_COURSE, 1)  # another course's activity


def _license_users(site: SiteBuilder) -> None:
    site.user(50)
    site.allocation(50, LICENSE, COURSE, AT - 2 * 3600)
    site.user(51)  # a program license: one row per course, one mail
    site.allocation(51, PROGRAM_LICENSE, COURSE, AT - 3600)
    site.allocation(51, PROGRAM_LICENSE, SECOND_COURSE, AT - 3600)
    site.user(52)
    site.allocation(52, LICENSE, COURSE, None)  # NULL issuedate never matches
    site.user(53)
    site.allocation(53, LICENSE, COURSE, 0)  # 0 never matches, even from 1970
    site.user(54)
    site.allocation(54, LICENSE, COURSE, SINCE_1D - 1)
    site.user(55)
    site.allocation(55, OTHER_LICENSE, OTHER_COURSE, AT - 3600)  # another company's license
    site.user(56, companies=((COMPANY, DEPT_A, 0), (COMPANY, DEPT_B, 1)))
    site.allocation(56, LICENSE, COURSE, AT - 3600)
    site.user(57, companies=((COMPANY, DEPT_A, 0), (COMPANY, DEPT_B, 0)))
    site.allocation(57, LICENSE, COURSE, SINCE_1D)
    site.user(58)
    site.allocation(58, LICENSE, COURSE, AT)
    site.allocation(58, PROGRAM_LICENSE, SECOND_COURSE, AT - 60)


def _completions(site: SiteBuilder) -> None:
    add = site.add
    add("grade_items", id=1, courseid=COURSE, itemtype="course", grademax=200)
    add("grade_items", id=2, courseid=COURSE, itemtype="mod", itemmodule="quiz", iteminstance=CM_QUIZ, grademax=10)
    add("grade_items", id=3, courseid=SECOND_COURSE, itemtype="course", grademax=100)
    site.user(60)
    site.completed(60, COURSE, AT - DAY)
    add("grade_grades", itemid=1, userid=60, finalgrade=170)
    add("grade_grades", itemid=2, userid=60, finalgrade=10)  # an activity grade is not the course grade
    site.user(61)
    site.completed(61, COURSE, AT - 2 * DAY)
    add("grade_grades", itemid=1, userid=61, finalgrade=None)  # a course item but no final grade yet
    site.user(62)
    site.completed(62, COURSE, 0)
    site.user(63)
    site.completed(63, COURSE, None)
    site.user(64)
    site.completed(64, COURSE, SINCE_7D - 1)
    site.user(65)
    site.completed(65, COURSE, AT - 3 * DAY)
    site.completed(65, SECOND_COURSE, SINCE_7D)
    add("grade_grades", itemid=1, userid=65, finalgrade=145)
    site.user(66)
    site.completed(66, OTHER_COURSE, AT - DAY)  # not one of the company's courses
    site.user(67, companies=((COMPANY, DEPT_A, 1),))
    site.completed(67, COURSE, AT - DAY)
    site.user(68)
    site.completed(68, COURSE, AT)
