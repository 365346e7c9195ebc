"""Moodle/IOMAD as a recipient source: read-only access to the Moodle database, any table prefix.

    source = open_moodle(url, prefix="mdl_")            # connection.py
    report = check_moodle(source=source)                # check.py: `mani moodle check`
    options = SelectionOptions(type="welcome_std", company_id=2, since=..., at=...)

    # Writing a job (backend.jobs sits above this room and brings the intake's checks):
    from backend.jobs.moodle_source import moodle_job_rows, select_moodle_recipients
    selection = select_moodle_recipients(source=source, options=options, site_url=...)
    create_job(session=..., job_type=options.type, rows=moodle_job_rows(selection),
               available_variables=selection.available_variables,
               source="moodle", source_name=selection.source_name, ...)
    selection.preview()            # or .preview_rows() / .write_preview_json(stream)
"""

from backend.moodle.source.catalog import (
    company_courses,
    course_activities,
    course_in_company,
    get_company,
    get_course,
    list_companies,
)
from backend.moodle.source.check import MoodleCheck, TableStatus, check_moodle
from backend.moodle.source.connection import (
    DEFAULT_PREFIX,
    MoodleSource,
    open_moodle,
    parse_database_url,
)
from backend.moodle.source.errors import (
    MoodleNotFound,
    MoodleOptionsInvalid,
    MoodleSchemaError,
    MoodleSourceError,
    MoodleUnreachable,
)
from backend.moodle.source.options import (
    SelectionOptions,
    SelectionType,
    parse_duration,
    parse_moment,
    parse_since,
)
from backend.moodle.source.results import (
    MoodleActivity,
    MoodleCompany,
    MoodleCourse,
    MoodlePreview,
    PreviewInvalid,
    PreviewRecipient,
)
from backend.moodle.source.selections import (
    InvalidRow,
    MoodleRecipient,
    Selection,
    available_variables,
    select_recipients,
)

__all__ = [
    "DEFAULT_PREFIX", "InvalidRow", "MoodleActivity", "MoodleCheck", "MoodleCompany", "MoodleCourse",
    "MoodleNotFound", "MoodleOptionsInvalid", "MoodlePreview", "MoodleRecipient", "MoodleSchemaError",
    "MoodleSource", "MoodleSourceError", "MoodleUnreachable", "PreviewInvalid", "PreviewRecipient", "Selection",
    "SelectionOptions", "SelectionType", "TableStatus", "available_variables", "check_moodle", "company_courses",
    "course_activities", "course_in_company", "get_company", "get_course", "list_companies", "open_moodle",
    "parse_database_url", "parse_duration", "parse_moment", "parse_since", "select_recipients",
]
