"""The bulk tool's "From Moodle" form: the seeds' five cards (seed 001 section 6C), the company,
the window, the course picked by name, and the re-engagement options.

It loads its own choices (companies; a company's courses) in thread workers that post typed
messages back; the screen previews and sends what `values()` says.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.markup import escape
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Button, Checkbox, Input, Label, Select

from backend.jobs.moodle_source import moodle_company_choices, moodle_course_choices
from console import calls
from console.workers import WorkerResults

# (selection type, the card's title): the seeds' wording, [X] being the form's fields.
CARDS = (
    ("welcome_std", "Welcome: users created in the last [window]"),
    ("welcome_lic", "License allocation: licenses allocated in the last [window]"),
    ("reengagement", "Re-engagement: inactive in [course] for [inactive]"),
    ("reminder", "Reminder: not yet complete in [course]"),
    ("certificate", "Certificates: completions in the last [window]"),
)
WINDOWED = {"welcome_std", "welcome_lic", "certificate"}
WITH_COURSE = {"reengagement", "reminder", "certificate"}
DEFAULT_WINDOWS = {"welcome_std": "24h", "welcome_lic": "24h", "certificate": "7d"}


@dataclass(frozen=True, slots=True)
class MoodleFormValues:
    """What the form asks for, as `preview_moodle_selection` / `submit_moodle_selection` take it."""

    selection_type: str
    company: str | None
    since: str | None
    course: int | None
    inactive_for: str | None
    include_completed: bool

    def options(self) -> dict:
        return {"selection_type": self.selection_type, "since": self.since, "course": self.course,
                "inactive_for": self.inactive_for, "include_completed": self.include_completed}


class MoodleCompaniesLoaded(Message):
    def __init__(self, choices: list[tuple[str, str]], problem: str | None) -> None:
        super().__init__()
        self.choices = choices
        self.problem = problem


class MoodleCoursesLoaded(Message):
    def __init__(self, company: str, courses: list[tuple[str, int]], problem: str | None) -> None:
        super().__init__()
        self.company = company
        self.courses = courses
        self.problem = problem


class MoodleForm(WorkerResults, Vertical):
    """The Moodle source's fields; the Preview and Send buttons are the screen's to handle."""

    DEFAULT_CSS = """
    MoodleForm { height: auto; padding: 1 1 0 1; }
    MoodleForm #moodle-include { width: auto; height: 1; border: none; padding: 0; margin-right: 2; }
    MoodleForm #moodle-problem { height: auto; color: $warning; }
    """

    def compose(self) -> ComposeResult:
        with Horizontal(classes="form-row"):
            yield Label("Send", classes="form-label")
            # Brackets are markup in a label: escaped, so that "[course]" shows as written.
            yield Select([(escape(title), kind) for kind, title in CARDS], value="welcome_std", allow_blank=False,
                         compact=True, id="moodle-card")
        with Horizontal(classes="form-row"):
            yield Label("Company", classes="form-label")
            yield Select([], prompt="pick a company", compact=True, id="moodle-company")
            yield Label("Window", classes="form-label")
            yield Input("24h", placeholder="24h, 7d or a date", compact=True, id="moodle-window")
        with Horizontal(classes="form-row"):
            yield Label("Course", classes="form-label")
            yield Select([], prompt="pick a company first", compact=True, id="moodle-course", disabled=True)
            yield Label("Inactive", classes="form-label")
            yield Input("30d", placeholder="30d", compact=True, id="moodle-inactive", disabled=True)
        with Horizontal(classes="form-row"):
            yield Checkbox("Include completed", compact=True, id="moodle-include", disabled=True)
            yield Button("Preview", id="moodle-preview-button", compact=True)
            yield Button("Send", id="moodle-send-button", compact=True, variant="primary", disabled=True)

    loaded = False

    def activate(self) -> None:
        """The source was chosen: read the companies the first time (not before: a console that
        never uses Moodle should not hear about its settings)."""
        if not self.loaded:
            self.loaded = True
            self.load_companies()

    # Choices, read in workers ---------------------------------------------------------------------

    # A failure is one `ActionFailed` (the `WorkerResults` handler), which the screen notifies.

    @work(thread=True, exclusive=True, exit_on_error=False, group="moodle-companies")
    def load_companies(self) -> MoodleCompaniesLoaded:
        choices, problem = calls.read(self, moodle_company_choices)
        return MoodleCompaniesLoaded(choices, problem)

    @work(thread=True, exclusive=True, exit_on_error=False, group="moodle-courses")
    def load_courses(self, company: str) -> MoodleCoursesLoaded:
        courses = calls.read(self, moodle_course_choices, company=company)
        return MoodleCoursesLoaded(company, [(f"{c.fullname} ({c.id})", c.id) for c in courses], None)

    @on(MoodleCompaniesLoaded)
    def _companies(self, message: MoodleCompaniesLoaded) -> None:
        self.query_one("#moodle-company", Select).set_options(message.choices)
        if message.problem:
            self.app.notify(message.problem, title="Moodle", severity="warning", timeout=8)

    @on(MoodleCoursesLoaded)
    def _courses(self, message: MoodleCoursesLoaded) -> None:
        if message.company != self.values().company:
            return  # an older answer for another company
        course = self.query_one("#moodle-course", Select)
        course.set_options(message.courses)
        course.prompt = "no course" if message.courses else "the company has no courses"
        if message.problem:
            self.app.notify(message.problem, title="Moodle", severity="error", timeout=8)
        self._fit_fields()

    @on(Select.Changed, "#moodle-company")
    def _company_changed(self, event: Select.Changed) -> None:
        self.query_one("#moodle-course", Select).set_options([])
        if event.value is not Select.NULL:
            self.load_courses(str(event.value))

    @on(Select.Changed, "#moodle-card")
    def _card_changed(self, event: Select.Changed) -> None:
        window = self.query_one("#moodle-window", Input)
        window.value = DEFAULT_WINDOWS.get(str(event.value), "")
        self._fit_fields()

    def _fit_fields(self) -> None:
        """Only the fields the card reads can be edited."""
        kind = str(self.query_one("#moodle-card", Select).value)
        self.query_one("#moodle-window", Input).disabled = kind not in WINDOWED
        self.query_one("#moodle-course", Select).disabled = kind not in WITH_COURSE
        self.query_one("#moodle-inactive", Input).disabled = kind != "reengagement"
        self.query_one("#moodle-include", Checkbox).disabled = kind != "reengagement"

    # What the form says ---------------------------------------------------------------------------

    def values(self) -> MoodleFormValues:
        kind = str(self.query_one("#moodle-card", Select).value)
        company = self.query_one("#moodle-company", Select).value
        course = self.query_one("#moodle-course", Select).value
        reengagement = kind == "reengagement"
        return MoodleFormValues(
            selection_type=kind,
            company=None if company is Select.NULL else str(company),
            since=(self.query_one("#moodle-window", Input).value.strip() or None) if kind in WINDOWED else None,
            course=None if course is Select.NULL or kind not in WITH_COURSE else int(course),
            inactive_for=(self.query_one("#moodle-inactive", Input).value.strip() or None) if reengagement else None,
            include_completed=reengagement and self.query_one("#moodle-include", Checkbox).value,
        )
