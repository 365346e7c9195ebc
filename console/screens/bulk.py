"""Bulk email tools: pick a source, preview exactly what will be sent, then send."""

from __future__ import annotations

import html as html_module
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, DataTable, Input, Label, OptionList, Select, Static, TabbedContent, TabPane
from textual.widgets.option_list import Option

from backend.core.settings import JOB_TYPES
from backend.jobs import create as jobs
from backend.jobs import queries
from backend.jobs.moodle_source import NothingToSend, preview_moodle_selection, submit_moodle_selection
from backend.jobs.preview import Preview, preview_csv
from console import calls
from console.messages import ActionDone, ActionFailed, CompanyChoicesLoaded
from console.screens.base import ManiScreen
from console.widgets.fit_table import Col, FitTable
from console.widgets.moodle_form import MoodleForm, MoodleFormValues
from console.widgets.full_text import FullTextModal
from console.widgets.path_input import PathSuggester

ACCEPTED_COLUMNS = (
    Col("line", "Line", justify="right"),
    Col("email", "Email", min=20, max=40),
    Col("firstname", "First name", short="First", min=8, max=20),
    Col("lastname", "Last name", short="Last", min=8, max=20),
    Col("username", "Username", min=8, max=20, grow=True, drop=1),
)
REJECTED_COLUMNS = (Col("line", "Line", justify="right"), Col("email", "Email", min=16, max=40),
                    Col("reason", "Reason", min=16, grow=True))
DUPLICATE_COLUMNS = (Col("line", "Line", justify="right"), Col("email", "Email", min=16, max=40),
                     Col("reason", "Why skipped", min=16, grow=True))


@dataclass(frozen=True)
class Source:
    """A card in the source list."""

    id: str
    title: str
    description: str
    ready: bool = True


SOURCES = (
    Source("csv", "CSV file", "Recipients from a CSV file: email, firstname, lastname, username, password..."),
    Source("moodle", "From Moodle", "New users, license allocations, inactive students, reminders and "
           "certificates, read from the Moodle database"),
)


class MoodlePreviewed(Message):
    """A Moodle selection's preview, with the form and the moment (`at`) it was evaluated for."""

    def __init__(self, view: Preview, form: MoodleFormValues, at: int, source_name: str, invalid: int,
                 already_certified: int) -> None:
        super().__init__()
        self.view = view
        self.form = form
        self.at = at
        self.source_name = source_name
        self.invalid = invalid
        self.already_certified = already_certified


def _field(row: Any, name: str) -> str:
    value = row.get(name) if isinstance(row, dict) else getattr(row, name, None)
    return "" if value is None else str(value)


def html_as_text(html: str) -> str:
    """The HTML part as a person reads it in a terminal: tags dropped, blocks on their own lines."""
    text = re.sub(r"(?is)<(script|style).*?</\1>", "", html)
    text = re.sub(r"(?i)<br\s*/?>|</(p|div|h\d|li|tr)>", "\n", text)
    text = re.sub(r"(?i)<a\s[^>]*href=\"([^\"]+)\"[^>]*>(.*?)</a>", r"\2 <\1>", text)
    text = html_module.unescape(re.sub(r"<[^>]+>", "", text))
    return "\n".join(line.strip() for line in text.splitlines() if line.strip())


class PreviewReady(Message):
    """What the file would send; `form` is the (type, company, path) it was read with."""

    def __init__(self, view: Preview, form: tuple[str, str | None, str]) -> None:
        super().__init__()
        self.view, self.form = view, form


class BulkScreen(ManiScreen):
    NAV = "bulk"
    HELP = """\
**Bulk email.** Choose the job type, the CSV file (→ completes the path) and the company,
then **Preview** (ctrl+o): accepted rows, rejected rows with their line and reason, duplicates
that would be skipped, and the first message exactly as it will be sent. **Send** (ctrl+s)
asks first and says how many recipients get mail.

**From Moodle** (ctrl+t switches the source): pick a card (welcome, license allocation,
re-engagement, reminder, certificates), the company, the window or the course; the preview
reads the Moodle database as of that moment, and Send makes exactly that job."""

    BINDINGS = [
        Binding("ctrl+o", "preview", "Preview", id="bulk.preview", tooltip="Check the file and render the first message"),
        Binding("ctrl+s", "send", "Send", id="bulk.send", tooltip="Create the job and send it (asks first)"),
        Binding("ctrl+t", "switch_source", "Source", id="bulk.source",
                tooltip="Switch the source: a CSV file, or a selection from the Moodle database"),
        Binding("v", "view", "Full text", id="bulk.view",
                tooltip="The selected row's every field, whole (a rejection's reason, say); Enter too"),
        Binding("escape", "focus_form", "Form", show=False, id="bulk.form", tooltip="Back to the form"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.preview: Preview | None = None
        self.previewed: tuple | None = None
        self.source = "csv"

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="bulk-main"):
            sources = OptionList(*[Option(Text.assemble((s.title, "bold"), "\n", (s.description, "dim")), id=s.id,
                                          disabled=not s.ready) for s in SOURCES], id="bulk-sources")
            sources.border_title = "Source"
            yield sources
            with Vertical(id="bulk-work"):
                with Vertical(id="bulk-form"):
                    with Horizontal(classes="form-row"):
                        yield Label("Type", classes="form-label")
                        yield Select([(t, t) for t in JOB_TYPES], value="welcome_std", allow_blank=False, compact=True,
                                     id="bulk-type")
                        yield Label("Company", classes="form-label")
                        yield Select([], prompt="no company", compact=True, id="bulk-company")
                    with Horizontal(classes="form-row"):
                        yield Label("CSV file", classes="form-label")
                        yield Input(placeholder="path (→ completes)", compact=True, id="bulk-path",
                                    suggester=PathSuggester(base=self.app.config.csv_dir))
                        yield Button("Preview", id="bulk-preview-button", compact=True)
                        yield Button("Send", id="bulk-send-button", compact=True, variant="primary", disabled=True)
                yield MoodleForm(id="bulk-moodle")
                yield Static("Pick a CSV file and press ctrl+o to preview.", id="bulk-summary")
                with TabbedContent(id="bulk-tabs"):
                    with TabPane("Accepted", id="tab-accepted"):
                        yield FitTable(ACCEPTED_COLUMNS, id="bulk-accepted", cursor_type="row", zebra_stripes=True)
                    with TabPane("Rejected", id="tab-rejected"):
                        yield FitTable(REJECTED_COLUMNS, id="bulk-rejected", cursor_type="row", zebra_stripes=True)
                    with TabPane("Duplicates", id="tab-duplicates"):
                        yield FitTable(DUPLICATE_COLUMNS, id="bulk-duplicates", cursor_type="row",
                                       zebra_stripes=True)
                    with TabPane("Message", id="tab-message"):
                        with VerticalScroll(id="bulk-message"):
                            yield Static("", id="bulk-message-text")

    def on_mount(self) -> None:
        self.load_companies()
        self.query_one("#bulk-moodle").display = False
        self.query_one("#bulk-path", Input).focus()

    # The source -----------------------------------------------------------------------------------

    def action_switch_source(self) -> None:
        self.use_source("moodle" if self.source == "csv" else "csv")

    @on(OptionList.OptionSelected, "#bulk-sources")
    def _source_picked(self, event: OptionList.OptionSelected) -> None:
        self.use_source(event.option.id or "csv")

    def use_source(self, source: str) -> None:
        if source == self.source:
            return
        self.source = source
        self.preview = self.previewed = None
        moodle = source == "moodle"
        self.query_one("#bulk-form").display = not moodle
        self.query_one("#bulk-moodle").display = moodle
        if moodle:
            self.query_one(MoodleForm).activate()
        self.query_one("#bulk-send-button", Button).disabled = True
        self.query_one("#moodle-send-button", Button).disabled = True
        self.query_one("#bulk-sources", OptionList).highlighted = 1 if moodle else 0
        self.query_one("#bulk-summary", Static).update(
            "Pick a card and a company, then press ctrl+o to preview." if moodle
            else "Pick a CSV file and press ctrl+o to preview.")
        self.query_one("#moodle-card" if moodle else "#bulk-path").focus()

    @work(thread=True, exclusive=True, exit_on_error=False, group="bulk-companies")
    def load_companies(self) -> CompanyChoicesLoaded:
        return CompanyChoicesLoaded(calls.read(self, queries.company_choices))

    @on(CompanyChoicesLoaded)
    def _companies_loaded(self, message: CompanyChoicesLoaded) -> None:
        self.query_one("#bulk-company", Select).set_options([(f"{n} ({c})", c) for c, n in message.choices])

    def _form(self) -> tuple[str, str | None, str]:
        company = self.query_one("#bulk-company", Select).value
        return (str(self.query_one("#bulk-type", Select).value), None if company is Select.NULL else str(company),
                self.query_one("#bulk-path", Input).value.strip())

    # Preview --------------------------------------------------------------------------------------

    @on(Button.Pressed, "#bulk-preview-button")
    @on(Button.Pressed, "#moodle-preview-button")
    @on(Input.Submitted, "#bulk-path")
    def action_preview(self) -> None:
        if self.source == "moodle":
            self.preview_moodle()
            return
        job_type, company, path = self._form()
        if not path:
            self.notify("Give the CSV file's path first.", severity="warning")
            self.query_one("#bulk-path", Input).focus()
            return
        self.query_one("#bulk-summary", Static).update("Reading the file…")
        self.run_preview(job_type, company, str(Path(path).expanduser()))

    @work(thread=True, exclusive=True, exit_on_error=False, group="bulk-preview")
    def run_preview(self, job_type: str, company: str | None, path: str) -> PreviewReady:
        preview = calls.read(self, preview_csv, path=path, job_type=job_type, company_id=company)
        return PreviewReady(preview, (job_type, company, path))

    @on(PreviewReady)
    def _preview_ready(self, message: PreviewReady) -> None:
        self._show_preview(message.view, message.form)

    def on_action_failed(self, message: ActionFailed) -> None:
        super().on_action_failed(message)
        if message.action in ("run_preview", "run_moodle_preview"):
            self.preview = self.previewed = None
            self.query_one("#bulk-send-button", Button).disabled = True
            self.query_one("#moodle-send-button", Button).disabled = True
            self.query_one("#bulk-summary", Static).update(Text(f"✖ {message.message}", style="bold red"))

    def _show_preview(self, view: Preview, form: tuple) -> None:
        self.preview, self.previewed = view, form
        summary = Text.assemble(
            (f"{view.accepted:,} to send", "bold green"), " · ", (f"{view.rejected_count:,} rejected", "bold red"),
            " · ", (f"{view.skipped_duplicates:,} duplicates skipped", "bold yellow"),
            f" · {form[0]} · {form[1] or 'no company'} · {Path(form[2]).name}",
        )
        if view.without_username_count:
            summary.append(f" · {view.without_username_count:,} without username (log in with email)", style="yellow")
        self.query_one("#bulk-summary", Static).update(summary)
        self._fill(view)

    def _fill(self, view: Preview) -> None:
        """The tabs: accepted sample, rejected rows, duplicates, and the first message."""
        fields = ("line", "email", "firstname", "lastname", "username")
        no_username = Text("(email login)", style="yellow") if view.without_username_count else ""
        self.query_one("#bulk-accepted", FitTable).set_rows(
            (None, {**{name: _field(row, name) for name in fields},
                    "username": _field(row, "username") or no_username}) for row in view.sample)
        self.query_one("#bulk-rejected", FitTable).set_rows(
            (None, {"line": _field(row, "line"), "email": _field(row, "email"),
                    "reason": Text(_field(row, "reason"), style="red")}) for row in view.rejected)
        self.query_one("#bulk-duplicates", FitTable).set_rows(
            (None, {"line": "", "email": row, "reason": "sent recently"} if isinstance(row, str) else
             {"line": _field(row, "line"), "email": _field(row, "email"),
              "reason": _field(row, "reason") or "sent the same type recently"}) for row in view.duplicates)
        tabs = self.query_one("#bulk-tabs", TabbedContent)
        tabs.get_tab("tab-accepted").label = f"Accepted {view.accepted:,}"
        tabs.get_tab("tab-rejected").label = f"Rejected {view.rejected_count:,}"
        tabs.get_tab("tab-duplicates").label = f"Duplicates {view.skipped_duplicates:,}"
        message = Text()
        message.append("Subject: ", style="bold")
        first = view.message
        message.append((first.subject if first else "") + "\n\n")
        message.append("── text ──\n", style="dim")
        message.append((first.text.strip() if first else "") + "\n\n")
        message.append("── HTML, as text ──\n", style="dim")
        message.append(html_as_text(first.html) if first and first.html else "(no HTML part)")
        self.query_one("#bulk-message-text", Static).update(message)
        self.query_one("#bulk-send-button", Button).disabled = view.accepted == 0

    # From Moodle ----------------------------------------------------------------------------------

    def preview_moodle(self) -> None:
        form = self.query_one(MoodleForm).values()
        if form.company is None:
            self.notify("Pick the company first.", severity="warning")
            self.query_one("#moodle-company").focus()
            return
        self.query_one("#bulk-summary", Static).update("Reading the Moodle database…")
        # The moment the preview is evaluated for; Send uses the same one, so it sends what was seen.
        self.run_moodle_preview(form, int(self.app.config.clock().timestamp()))

    @work(thread=True, exclusive=True, exit_on_error=False, group="bulk-preview")
    def run_moodle_preview(self, form: MoodleFormValues, at: int) -> MoodlePreviewed:
        made = calls.read(self, preview_moodle_selection, company=form.company, at=at, **form.options())
        return MoodlePreviewed(made.preview, form, at, made.selection.source_name,
                               made.selection.invalid, made.already_certified)

    @on(MoodlePreviewed)
    def _moodle_previewed(self, message: MoodlePreviewed) -> None:
        view = message.view
        self.preview, self.previewed = view, ("moodle", message.form, message.at)
        summary = Text.assemble(
            (f"{view.accepted:,} to send", "bold green"), " · ",
            (f"{message.invalid:,} invalid addresses", "bold red"), " · ",
            (f"{view.skipped_duplicates:,} duplicates skipped", "bold yellow"),
        )
        if message.already_certified:
            summary.append(f" · {message.already_certified:,} already certified", style="yellow")
        summary.append(f"\n{message.source_name}", style="dim")
        self.query_one("#bulk-summary", Static).update(summary)
        self._fill(view)
        self.query_one("#moodle-send-button", Button).disabled = view.accepted == 0

    def send_moodle(self) -> None:
        form = self.query_one(MoodleForm).values()
        if self.preview is None or self.previewed is None or self.previewed[:2] != ("moodle", form):
            self.notify("Preview first (ctrl+o): you send what you have seen.", severity="warning")
            return
        view, at = self.preview, self.previewed[2]
        if view.accepted == 0:
            self.notify("Nothing to send: the selection has nobody left to mail.", severity="warning")
            return
        question = f"Send {form.selection_type} to {view.accepted:,} recipients of {form.company}, selected from Moodle?"
        if view.rejected_count:
            question += f" ({view.rejected_count:,} with an unusable address are not sent.)"
        self.confirm("Send from Moodle", question, lambda: self.run_moodle_send(form, at),
                     label=f"Send {view.accepted:,}")

    @work(thread=True, exclusive=True, exit_on_error=False, group="bulk-send")
    def run_moodle_send(self, form: MoodleFormValues, at: int) -> ActionDone:
        def submit(*, session):
            made = submit_moodle_selection(session=session, company=form.company, at=at,
                                           created_by=self.app.config.actor, **form.options())
            created = made.created
            calls.audit(self, session=session, action="job.submit", target=created.job.uuid,
                        details={"source": created.job.source_name, "type": form.selection_type,
                                 "company": form.company, "recipients": created.accepted,
                                 "invalid": made.selection.invalid})
            return created.job.id, created.accepted, created.followups

        try:
            job_id, accepted, followups = calls.write(self, submit)
        except NothingToSend as nothing:  # not a failure: the selection emptied since the preview
            return ActionDone("send", str(nothing))
        note = calls.hand_over(self, followups) or "nothing to send"
        return ActionDone("send", f"Job {job_id} created for {accepted:,} recipients; {note}.", job_id)

    @on(DataTable.RowSelected)
    def action_view(self) -> None:
        """The selected accepted, rejected or duplicate row, whole."""
        if self.preview is None:
            return
        active = self.query_one("#bulk-tabs", TabbedContent).active
        rows, title = {"tab-accepted": (self.preview.sample, "Accepted row"),
                       "tab-rejected": (self.preview.rejected, "Rejected row"),
                       "tab-duplicates": (self.preview.duplicates, "Duplicate")}.get(active, ([], ""))
        table = self.query_one(f"#bulk-{active.removeprefix('tab-')}", FitTable) if rows else None
        if table is None or table.cursor_row < 0:
            return
        row = rows[min(table.cursor_row, len(rows) - 1)]
        names = ("line", "email", "reason") if active == "tab-rejected" else (
            "line", "email", "firstname", "lastname", "username")
        self.app.push_screen(FullTextModal(f"{title}, line {_field(row, 'line') or '–'}",
                                           [(name, _field(row, name)) for name in names]))

    # Send -----------------------------------------------------------------------------------------

    @on(Button.Pressed, "#bulk-send-button")
    @on(Button.Pressed, "#moodle-send-button")
    def action_send(self) -> None:
        if self.source == "moodle":
            self.send_moodle()
            return
        if self.preview is None or self.previewed is None:
            self.notify("Preview first (ctrl+o): you send what you have seen.", severity="warning")
            return
        if self.previewed != self._form()[:2] + (str(Path(self._form()[2]).expanduser()),):
            self.notify("The form changed since the preview: preview again.", severity="warning")
            return
        view, (job_type, company, path) = self.preview, self.previewed
        if view.accepted == 0:
            self.notify("Nothing to send: every row was rejected or is a duplicate.", severity="warning")
            return
        question = (f"Send {job_type} to {view.accepted:,} recipients"
                    f"{' of ' + company if company else ''} from {Path(path).name}?")
        skipped = [f"{view.rejected_count:,} rejected rows"] if view.rejected_count else []
        skipped += [f"{view.skipped_duplicates:,} duplicates"] if view.skipped_duplicates else []
        if skipped:
            question += f" ({' and '.join(skipped)} are not sent.)"
        self.confirm("Send bulk email", question, lambda: self.send(job_type, company, path),
                     label=f"Send {view.accepted:,}")

    @work(thread=True, exclusive=True, exit_on_error=False, group="bulk-send")
    def send(self, job_type: str, company: str | None, path: str) -> ActionDone:
        def submit(*, session):
            created = jobs.submit_csv(session=session, path=path, job_type=job_type, company_id=company,
                                      created_by=self.app.config.actor)
            calls.audit(self, session=session, action="job.submit", target=created.job.uuid,
                        details={"file": Path(path).name, "type": job_type, "company": company,
                                 "recipients": created.accepted, "rejected": len(created.rejected),
                                 "duplicates": created.skipped_duplicates})
            return created.job.id, created.accepted, created.followups

        job_id, accepted, followups = calls.write(self, submit)
        note = calls.hand_over(self, followups) or "nothing to send"
        return ActionDone("send", f"Job {job_id} created for {accepted:,} recipients; {note}.", job_id)

    def after_action(self, message: ActionDone) -> None:
        if message.action == "send" and message.data:
            self.preview = self.previewed = None
            self.query_one("#bulk-send-button", Button).disabled = True
            self.query_one("#moodle-send-button", Button).disabled = True
            self.app.open_job(int(message.data))

    def action_focus_form(self) -> None:
        self.query_one("#moodle-card" if self.source == "moodle" else "#bulk-path").focus()
