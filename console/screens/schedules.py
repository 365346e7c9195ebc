"""Schedules: recurring jobs from Moodle. The list with each one's next run, last run and that
run's job; add or edit in a form that shows the next five run times; pause, resume and run now
(each asks first); open a run's job."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable, Static

from backend.schedules.queries import SchedulePublic, list_schedules
from backend.schedules.runs import add_manual_run, execute_run
from backend.schedules.service import pause_schedule, resume_schedule
from console import calls
from console.messages import ActionDone, ActionFailed
from console.screens.base import ManiScreen
from console.screens.schedule_form import ScheduleFormScreen
from console.widgets.fit_table import Col, FitTable

COLUMNS = (
    Col("id", "Id", justify="right"),
    Col("name", "Name", min=14, grow=True),
    Col("type", "Type", min=12, drop=2),
    Col("when", "When", min=24, drop=3),
    Col("next", "Next run", min=16),
    Col("last", "Last run", min=20, drop=1),
    Col("job", "Job", min=12, max=18),
)
RUN_STYLE = {"created": "green", "empty": "dim", "retrying": "bold yellow", "failed": "bold red", "pending": ""}


class SchedulesLoaded(Message):
    """The schedules as the read side returns them, read by a worker."""

    def __init__(self, schedules: list[SchedulePublic]) -> None:
        super().__init__()
        self.schedules = schedules


def local_time(moment: datetime | None, zone: str, *, short: bool = False) -> str:
    """A moment in the schedule's own zone: `2026-11-27 09:00`, or `11-27 09:00` when short."""
    if moment is None:
        return "–"
    return moment.astimezone(ZoneInfo(zone)).strftime("%m-%d %H:%M" if short else "%Y-%m-%d %H:%M")


def when_text(schedule: SchedulePublic) -> str:
    every = f"every {schedule.custom_interval}d" if schedule.frequency == "custom" else schedule.frequency
    return f"{every} {schedule.time_of_day} {schedule.timezone}"


class SchedulesScreen(ManiScreen):
    NAV = "schedules"
    HELP = """\
**Schedules.** Recurring jobs from Moodle: each row is a schedule with its next run, its last
run's outcome and that run's job. A run whose Moodle was unreachable shows `retrying` (tried
again each minute while its grace lasts) or `failed`, with the reason below the table. `a` adds
and `e` edits a schedule in a form that checks each field and shows the next five run times as
you type; `p` pauses, `r` resumes, `n` runs the selected schedule now (each asks first); Enter or
`o` opens the last run's job."""

    BINDINGS = [
        Binding("a", "add", "Add", id="schedules.add", tooltip="Add a schedule"),
        Binding("e", "edit", "Edit", id="schedules.edit", tooltip="Edit the selected schedule"),
        Binding("p", "pause", "Pause", id="schedules.pause", tooltip="Pause the selected schedule"),
        Binding("r", "resume", "Resume", id="schedules.resume", tooltip="Resume the selected schedule"),
        Binding("n", "run_now", "Run now", id="schedules.run", tooltip="Run the selected schedule now"),
        Binding("o", "open_job", "Open job", id="schedules.open", tooltip="Open the last run's job"),
        Binding("ctrl+r,f5", "reload", "Refresh", show=False, id="schedules.refresh", tooltip="Read again"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.schedules: list[SchedulePublic] = []

    def compose_body(self) -> ComposeResult:
        table = FitTable(COLUMNS, id="schedules", cursor_type="row", zebra_stripes=True)
        table.border_title = "Schedules"
        yield table
        yield Static("", id="schedule-detail", classes="detail-line")

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#schedules").focus()

    def on_screen_resume(self) -> None:
        self.load()

    def action_reload(self) -> None:
        self.load()

    @work(thread=True, exclusive=True, exit_on_error=False, group="schedules")
    def load(self) -> SchedulesLoaded:
        return SchedulesLoaded(calls.read(self, list_schedules))

    @on(SchedulesLoaded)
    def _loaded(self, message: SchedulesLoaded) -> None:
        self.schedules = message.schedules
        table = self.query_one("#schedules", FitTable)
        keep = table.cursor_row
        table.set_rows((str(s.id), self._row(s)) for s in self.schedules)
        if self.schedules:
            table.move_cursor(row=min(max(keep, 0), len(self.schedules) - 1), animate=False)
        self._describe()

    def _row(self, s: SchedulePublic) -> dict:
        run = s.last_run
        last = Text("–", style="dim")
        if run is not None:
            last = Text.assemble(local_time(run.scheduled_for, s.timezone, short=True), " ",
                                 (run.status, RUN_STYLE.get(run.status, "")))
        job = Text(f"#{run.job_id} {run.job_status}") if run is not None and run.job_id else Text("–", style="dim")
        next_run = local_time(s.next_run_at, s.timezone) if s.enabled else Text("paused", style="yellow")
        return {"id": str(s.id), "name": s.name, "type": s.job_type, "when": when_text(s), "next": next_run,
                "last": last, "job": job}

    @on(DataTable.RowHighlighted, "#schedules")
    def _describe(self) -> None:
        detail = self.query_one("#schedule-detail", Static)
        schedule = self.selected()
        if schedule is None:
            detail.update("No schedules yet: press a to add one (or `mani schedules add`).")
            return
        line = Text.assemble((f"{schedule.name}: ", "bold"), f"{schedule.job_type} for company {schedule.company_id}",
                             f", {schedule.action_type}, cloud {schedule.cloud_preference}")
        if schedule.selection.get("course_id"):
            line.append(f", course {schedule.selection['course_id']}")
        if schedule.suppress_course_completion:
            line.append(", unless course complete")
        if schedule.suppresstarget:
            line.append(f", unless activity {schedule.suppresstarget} complete")
        run = schedule.last_run
        if run is not None and run.error:
            line.append(f" · last run {run.status}: {run.error}", style=RUN_STYLE.get(run.status, ""))
        detail.update(line)

    def selected(self) -> SchedulePublic | None:
        table = self.query_one("#schedules", DataTable)
        if not self.schedules or table.cursor_row < 0:
            return None
        return self.schedules[min(table.cursor_row, len(self.schedules) - 1)]

    def palette_commands(self) -> list[tuple[str, str, object]]:
        """The command palette's entries for this screen (ctrl+p)."""
        return [
            ("Schedules: add a schedule", "Open the schedule form (a)", self.action_add),
            ("Schedules: run the selected schedule now", "Asks first (n)", self.action_run_now),
            ("Schedules: pause the selected schedule", "Asks first (p)", self.action_pause),
            ("Schedules: resume the selected schedule", "Asks first (r)", self.action_resume),
        ]

    # Actions --------------------------------------------------------------------------------------

    def action_add(self) -> None:
        if not self.refuse_if_read_only():
            self.app.push_screen(ScheduleFormScreen(None), lambda saved: self.load() if saved else None)

    def action_edit(self) -> None:
        schedule = self.selected()
        if schedule is not None and not self.refuse_if_read_only():
            self.app.push_screen(ScheduleFormScreen(schedule), lambda saved: self.load() if saved else None)

    def action_pause(self) -> None:
        schedule = self.selected()
        if schedule is not None:
            self.confirm("Pause schedule", f"Pause “{schedule.name}”? It runs again only after resume.",
                         lambda: self.change("pause", schedule.id), label="Pause")

    def action_resume(self) -> None:
        schedule = self.selected()
        if schedule is not None:
            self.confirm("Resume schedule", f"Resume “{schedule.name}” from its next occurrence?",
                         lambda: self.change("resume", schedule.id), label="Resume")

    def action_run_now(self) -> None:
        schedule = self.selected()
        if schedule is not None:
            self.confirm("Run now", f"Run “{schedule.name}” now, outside its schedule? Its window runs to now.",
                         lambda: self.run_now(schedule.id), label="Run now")

    def action_open_job(self) -> None:
        schedule = self.selected()
        if schedule is not None and schedule.last_run is not None and schedule.last_run.job_id:
            self.app.open_job(schedule.last_run.job_id)
        elif schedule is not None:
            self.notify("This schedule's last run made no job.", severity="warning")

    @on(DataTable.RowSelected, "#schedules")
    def _selected(self) -> None:
        self.action_open_job()

    @work(thread=True, exclusive=True, exit_on_error=False, group="schedule-action")
    def change(self, what: str, schedule_id: int) -> ActionDone:
        act = pause_schedule if what == "pause" else resume_schedule
        schedule = calls.write(self, act, ref=schedule_id, actor=self.app.config.actor, source="console")
        after = "paused" if what == "pause" else f"resumed: next run {local_time(schedule.next_run_at, schedule.timezone)}"
        return ActionDone(what, f"Schedule {schedule_id} {after}.")

    @work(thread=True, exclusive=True, exit_on_error=False, group="schedule-action")
    def run_now(self, schedule_id: int) -> ActionDone | ActionFailed:
        run_id = calls.write(self, add_manual_run, ref=schedule_id, actor=self.app.config.actor, source="console")
        outcome = execute_run(run_id=run_id, actor=self.app.config.actor, source="console")
        queued = calls.hand_over(self, outcome.followups, what="the job")
        if outcome.job_id:
            return ActionDone("run", f"Run {run_id}: job {outcome.job_id} created; {queued}.")
        if outcome.status in ("failed", "retrying"):
            return ActionFailed("run", f"Run {run_id} {outcome.status}: {outcome.error}")
        return ActionDone("run", f"Run {run_id}: nobody to send to ({outcome.status}).")

    def on_action_failed(self, message: ActionFailed) -> None:
        super().on_action_failed(message)
        if message.action in ("run", "run_now"):
            self.load()  # the failed run is recorded: show it

    def after_action(self, message: ActionDone) -> None:
        self.load()
