"""Adding or editing a schedule: one field per option of `mani schedules add`, checked as you
type, with the next five run times shown as you edit (the same checks and recurrence as the
command line: `backend.schedules`). Saving checks the course and activity against Moodle too."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Input, Label, Select, Static

from backend.core.errors import ManiError
from backend.moodle.source.options import DEFAULT_INACTIVE_FOR, SelectionType, format_duration
from backend.schedules.definition import ActionType, CatchUp, CloudPreference, ScheduleInput
from backend.schedules.queries import SchedulePublic
from backend.schedules.recurrence import Frequency
from backend.schedules.service import add_schedule, edit_schedule, preview_run_times
from console import calls
from console.messages import ActionDone
from console.screens.base import ManiScreen
from console.widgets.confirm import ConfirmModal

# (field id, label, kind, choices or placeholder)
FIELDS = (
    ("name", "Name", "text", "Daily welcome"),
    ("company_id", "Company", "text", "IOMAD company id, e.g. 2"),
    ("job_type", "Type", "choice", [t.value for t in SelectionType]),
    ("frequency", "Frequency", "choice", [f.value for f in Frequency]),
    ("interval_days", "Every N days", "text", "custom only, e.g. 2"),
    ("time", "Time", "text", "HH:MM (default: the start's)"),
    ("timezone", "Time zone", "text", "IANA name, e.g. Europe/Berlin"),
    ("start", "Start", "text", "2026-12-01 or 2026-12-01T09:00 (default: now)"),
    ("since", "Since", "text", "first window: 24h, 7d or ISO (welcome, license, certificate)"),
    ("course_id", "Course", "text", "course id (reengagement, reminder, certificate)"),
    ("inactive_for", "Inactive for", "text", "reengagement: 30d"),
    ("unless_course_complete", "Unless course complete", "choice", ["no", "yes"]),
    ("unless_activity", "Unless activity", "text", "course module id (reengagement, reminder)"),
    ("action", "Action", "choice", [a.value for a in ActionType]),
    ("cloud", "Cloud", "choice", [c.value for c in CloudPreference]),
    ("catch_up", "Catch-up", "choice", [c.value for c in CatchUp]),
    ("grace", "Grace", "text", "retry an unreachable Moodle this long: 1h"),
)
NUMBERS = {"interval_days", "course_id", "unless_activity"}


def initial_values(schedule: SchedulePublic | None) -> dict[str, str]:
    if schedule is None:
        return {"job_type": "welcome_std", "frequency": "daily", "timezone": "UTC", "unless_course_complete": "no",
                "action": "email", "cloud": "auto", "catch_up": "latest", "time": "09:00"}
    inactive = schedule.selection.get("inactive_for")
    zone = ZoneInfo(schedule.timezone)
    return {
        "name": schedule.name, "company_id": schedule.company_id, "job_type": schedule.job_type,
        "frequency": schedule.frequency, "interval_days": str(schedule.custom_interval or ""),
        "time": schedule.time_of_day, "timezone": schedule.timezone,
        "start": schedule.start_at.astimezone(zone).strftime("%Y-%m-%dT%H:%M"), "since": schedule.since or "",
        "course_id": str(schedule.selection.get("course_id") or ""),
        "inactive_for": format_duration(inactive) if inactive and inactive != DEFAULT_INACTIVE_FOR else "",
        "unless_course_complete": "yes" if schedule.suppress_course_completion else "no",
        "unless_activity": str(schedule.suppresstarget or ""), "action": schedule.action_type,
        "cloud": schedule.cloud_preference, "catch_up": schedule.catch_up,
        "grace": format_duration(schedule.grace_seconds),
    }


class ScheduleFormScreen(ManiScreen):
    NAV = "schedules"
    HELP = """\
**Add or edit a schedule.** The fields are the options of `mani schedules add`. Each change is
checked at once and the next five run times appear below (local to the schedule's time zone):
09:00 stays 09:00 across daylight saving, every N days counts from the start date, and monthly
on the 31st runs on the last day of shorter months. `ctrl+s` saves (the course and the activity
are checked against the company in Moodle then); Escape leaves."""

    BINDINGS = [
        Binding("ctrl+s", "save", "Save", id="schedule_form.save", tooltip="Check and store the schedule"),
        Binding("escape", "leave", "Back", id="schedule_form.back", tooltip="Leave without saving"),
    ]

    def __init__(self, schedule: SchedulePublic | None) -> None:
        super().__init__()
        self.schedule = schedule
        self.original = initial_values(schedule)
        self.valid = False
        self.initial: dict[str, str] = {}

    def compose_body(self) -> ComposeResult:
        with VerticalScroll(id="schedule-form") as form:
            form.border_title = f"Edit schedule {self.schedule.id}" if self.schedule else "Add a schedule"
            for key, label, kind, extra in FIELDS:
                with Horizontal(classes="schedule-row", id=f"field-{key}"):
                    yield Label(label, classes="schedule-label")
                    value = self.original.get(key, "")
                    if kind == "choice":
                        yield Select([(c, c) for c in extra], value=value or extra[0], allow_blank=False,
                                     compact=True, id=f"schedule-{key}")
                    else:
                        yield Input(value, placeholder=extra, compact=True, id=f"schedule-{key}")
        yield Static("", id="schedule-next", classes="detail-line")

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#schedule-name").focus()
        self.initial = self.values()
        self._preview()

    def values(self) -> dict[str, str]:
        found = {}
        for key, *_ in FIELDS:
            widget = self.query_one(f"#schedule-{key}")
            value = widget.value
            found[key] = "" if value is Select.NULL else str(value).strip()
        return found

    def spec(self) -> ScheduleInput:
        """The form as a ScheduleInput; ManiError naming the field that is not usable."""
        values = self.values()
        options: dict = {}
        for key, value in values.items():
            if key in NUMBERS:
                if value and not value.lstrip("-").isdigit():
                    raise ManiError(f"{dict((k, l) for k, l, _, _ in FIELDS)[key]} must be a whole number, not {value!r}.")
                options[key] = int(value) if value else None
            elif key == "unless_course_complete":
                options[key] = value == "yes"
            else:
                options[key] = value or None
        options["name"] = options["name"] or ""
        options["timezone"] = options["timezone"] or "UTC"
        options["action"] = options["action"] or "email"
        options["cloud"] = options["cloud"] or "auto"
        options["catch_up"] = options["catch_up"] or "latest"
        return ScheduleInput(**options)

    @on(Input.Changed)
    @on(Select.Changed)
    def _preview(self) -> None:
        """Pure computation (no database, no Moodle): the checks and rrule of backend.schedules."""
        shown = self.query_one("#schedule-next", Static)
        try:
            spec = self.spec()
            times = preview_run_times(spec, count=5, now=self.app.config.clock())
        except ManiError as error:
            self.valid = False
            shown.update(Text.assemble(("✖ ", "bold red"), (str(error), "red")))
            return
        self.valid = True
        zone = ZoneInfo(spec.timezone)
        shown.update(Text.assemble(("Next runs: ", "bold"), ", ".join(
            t.astimezone(zone).strftime("%a %Y-%m-%d %H:%M %Z") for t in times)))

    def action_save(self) -> None:
        if self.refuse_if_read_only():
            return
        self._preview()
        if not self.valid:
            self.notify("Fix the form first: the line under it says what is wrong.", severity="error")
            return
        self.save(self.spec())

    @work(thread=True, exclusive=True, exit_on_error=False, group="schedule-save")
    def save(self, spec: ScheduleInput) -> ActionDone:
        actor, now = self.app.config.actor, self.app.config.clock()
        if self.schedule is None:
            saved = calls.write(self, add_schedule, spec=spec, actor=actor, source="console", now=now)
        else:
            changes = {key: getattr(spec, key) for key in ScheduleInput.__dataclass_fields__
                       if key not in ("enabled", "extra")}
            saved = calls.write(self, edit_schedule, ref=self.schedule.id, changes=changes, actor=actor,
                                source="console", now=now)
        return ActionDone("save", f"Schedule {saved.id} saved: next run {saved.next_run_at:%Y-%m-%d %H:%M} UTC."
                          if saved.next_run_at else f"Schedule {saved.id} saved (paused).")

    def after_action(self, message: ActionDone) -> None:
        self.dismiss(True)

    def action_leave(self) -> None:
        if self.values() != self.initial:
            self.app.push_screen(ConfirmModal("Unsaved changes", "Leave without saving?", confirm_label="Leave"),
                                 lambda leave: self.dismiss(False) if leave else None)
        else:
            self.dismiss(False)
