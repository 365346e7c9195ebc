"""A company's suppression list: the addresses its jobs never mail again, and why.

Opened from Companies with `s` (on the selected company). Add, remove and import ask first and
are audited; export writes a spreadsheet-safe CSV into the export folder.
"""

from __future__ import annotations

import re
from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.message import Message
from textual.widgets import Input, Label, Select, Static

from backend.companies import suppressions
from backend.core.csv_out import csv_writer
from backend.jobs import queries
from backend.jobs.public import SuppressionPublic
from console import calls
from console.messages import ActionDone
from console.screens.base import ManiScreen
from console.widgets import cells
from console.widgets.confirm import PromptModal
from console.widgets.fit_table import Col
from console.widgets.paged_table import PagedTable
from console.widgets.path_input import PathSuggester

PAGE = 200
# The Select's value for the list of jobs that have no company (a Select value cannot be None).
NO_COMPANY_CHOICE = "\x00none"
# What goes first when the terminal is narrow is the highest `drop`.
COLUMNS = (
    Col("email", "Email", min=20, max=40),
    Col("source", "Source"),
    Col("reason", "Reason", min=12, grow=True),
    Col("job", "Job", justify="right", drop=2),
    Col("added", "Added (UTC)", short="Added", drop=1),
    Col("by", "By", max=16, drop=3),
)


class CompaniesLoaded(Message):
    def __init__(self, choices: list[tuple[str, str]]) -> None:
        super().__init__()
        self.choices = choices


class SuppressionsLoaded(Message):
    def __init__(self, company_id: str | None, rows: list[SuppressionPublic], total: int, offset: int) -> None:
        super().__init__()
        self.company_id = company_id
        self.rows = rows
        self.total = total
        self.offset = offset


def _addresses(text: str) -> list[str]:
    return [part for part in re.split(r"[\s,;]+", text) if part]


class SuppressionsScreen(ManiScreen):
    NAV = "companies"
    HELP = """\
**Suppression list.** The addresses a company's jobs never mail again. A hard bounce or a
complaint adds the address by itself; you can **add** (a), **remove** (d) and **import** (i)
addresses, and **export** (e) the list as CSV. A later job's recipient on the list ends
`suppressed` with the reason. Every change asks first and is in the audit log. `/` searches
addresses and reasons; Esc clears the search, then goes back."""

    DEFAULT_CSS = """
    SuppressionsScreen #supp-top { height: 1; }
    SuppressionsScreen #supp-company { width: 36; }
    SuppressionsScreen #supp-search { width: 1fr; }
    """

    BINDINGS = [
        Binding("a", "add", "Add", id="supp.add", tooltip="Put addresses on this list (asks first)"),
        Binding("d", "remove", "Remove", id="supp.remove", tooltip="Take the selected address off the list (asks first)"),
        Binding("i", "import_file", "Import", id="supp.import", tooltip="Add every address of a CSV file (asks first)"),
        Binding("e", "export", "Export", id="supp.export", tooltip="Write the list as CSV into the export folder"),
        Binding("slash", "search", "Search", id="supp.search", tooltip="Search addresses and reasons"),
        Binding("escape", "clear_or_back", "Back", id="supp.back", tooltip="Clear the search, else go back"),
        Binding("ctrl+r,f5", "reload", "Refresh", show=False, id="supp.refresh", tooltip="Read the list again"),
    ]

    def __init__(self, company_id: str | None = None) -> None:
        super().__init__()
        self.company_id = company_id
        self.rows: list[SuppressionPublic] = []
        self.total = 0
        self.row_offset = 0

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="supp-top"):
            yield Label("List of ", classes="form-label")
            # One option until the worker has read the companies.
            yield Select([(self._label(self.company_id), self._choice(self.company_id))], allow_blank=False,
                         compact=True, id="supp-company")
            yield Input(placeholder="/ search address or reason", compact=True, id="supp-search")
        table = PagedTable(COLUMNS, id="suppressions", cursor_type="row", zebra_stripes=True)
        table.border_title = "Suppressed addresses"
        yield table
        yield Static("", id="supp-detail", classes="detail-line")
        yield Static("", id="supp-status", classes="status-line")

    @staticmethod
    def _choice(company_id: str | None) -> str:
        return NO_COMPANY_CHOICE if company_id is None else company_id

    @staticmethod
    def _label(company_id: str | None, name: str | None = None) -> str:
        if company_id is None:
            return "jobs without a company"
        return f"{name} ({company_id})" if name else company_id

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#suppressions").focus()
        self.load_companies()

    def on_screen_resume(self) -> None:
        self.load()

    def action_reload(self) -> None:
        self.load()

    # Reading ----------------------------------------------------------------------------------

    @work(thread=True, exclusive=True, exit_on_error=False, group="supp-companies")
    def load_companies(self) -> CompaniesLoaded:
        return CompaniesLoaded(calls.read(self, queries.company_choices))

    def load(self, offset: int | None = None) -> None:
        if offset is not None:
            self.row_offset = max(offset, 0)
        self._load(self.company_id, self.query_one("#supp-search", Input).value.strip() or None, self.row_offset)

    @work(thread=True, exclusive=True, exit_on_error=False, group="supp-load")
    def _load(self, company_id: str | None, search: str | None, offset: int) -> SuppressionsLoaded:
        rows, total = calls.read(self, queries.suppressions, company_id=company_id, search=search,
                                 limit=PAGE, offset=offset)
        return SuppressionsLoaded(company_id, rows, total, offset)

    @on(CompaniesLoaded)
    def _companies(self, message: CompaniesLoaded) -> None:
        options = [(self._label(None), NO_COMPANY_CHOICE)] + [
            (self._label(company_id, name), company_id) for company_id, name in message.choices]
        select = self.query_one("#supp-company", Select)
        with self.prevent(Select.Changed):
            select.set_options(options)
            select.value = self._choice(self.company_id)

    @on(Select.Changed, "#supp-company")
    def _company_changed(self, event: Select.Changed) -> None:
        chosen = None if event.value in (NO_COMPANY_CHOICE, Select.BLANK) else str(event.value)
        if chosen != self.company_id:
            self.company_id = chosen
            self.load(0)

    @on(SuppressionsLoaded)
    def _loaded(self, message: SuppressionsLoaded) -> None:
        if message.company_id != self.company_id:
            return  # an answer for the list shown before
        self.rows, self.total, self.row_offset = message.rows, message.total, message.offset
        table = self.query_one("#suppressions", PagedTable)
        table.set_rows((str(row.id), {
            "email": row.email, "source": row.source, "reason": row.reason,
            "job": "" if row.job_id is None else str(row.job_id),
            "added": cells.when_choice(row.created_at), "by": row.created_by or "",
        }) for row in message.rows)
        table.has_previous = message.offset > 0
        table.has_next = message.offset + len(message.rows) < message.total
        where = self._label(self.company_id)
        shown = (f"{message.offset + 1:,}–{message.offset + len(message.rows):,} of {message.total:,} suppressed"
                 if message.rows else "nobody suppressed")
        self.query_one("#supp-status", Static).update(f"{shown} · list of {where} · [ ] page · / search")
        self._show_detail()

    @on(PagedTable.RowHighlighted, "#suppressions")
    def _show_detail(self) -> None:
        """The highlighted entry whole: the table cuts long reasons."""
        row = self._selected()
        text = Text()
        if row is not None:
            text.append(row.email, style="bold")
            text.append(f" · {row.source}: {row.reason}")
            if row.job_id is not None:
                text.append(f" · job {row.job_id}", style="dim")
        self.query_one("#supp-detail", Static).update(text)

    def _selected(self) -> SuppressionPublic | None:
        table = self.query_one("#suppressions", PagedTable)
        return self.rows[table.cursor_row] if self.rows and 0 <= table.cursor_row < len(self.rows) else None

    @on(PagedTable.PageRequest)
    def _page(self, message: PagedTable.PageRequest) -> None:
        step = {"next": PAGE, "first": -self.row_offset,
                "last": max(self.total - 1, 0) // PAGE * PAGE - self.row_offset}
        self.load(self.row_offset + step.get(message.direction, -PAGE))

    @on(Input.Submitted, "#supp-search")
    def _search(self) -> None:
        self.load(0)
        self.query_one("#suppressions").focus()

    def action_search(self) -> None:
        self.query_one("#supp-search", Input).focus()

    def action_clear_or_back(self) -> None:
        search = self.query_one("#supp-search", Input)
        if search.value:
            search.value = ""
            self.load(0)
            self.query_one("#suppressions").focus()
        else:
            self.app.pop_screen()

    # Changing ---------------------------------------------------------------------------------

    def action_add(self) -> None:
        if self.refuse_if_read_only():
            return
        company = self.company_id

        def given(text: str | None) -> None:
            emails = _addresses(text or "")
            if not emails:
                return
            self.confirm("Suppress addresses",
                         f"Put {len(emails):,} address(es) on the suppression list of {self._label(company)}? "
                         "Later jobs will not mail them.",
                         lambda: self.change("add", company, emails=emails), label=f"Suppress {len(emails):,}")

        self.app.push_screen(PromptModal("Suppress addresses", "Addresses (separated by spaces or commas)"), given)

    def action_remove(self) -> None:
        row = self._selected()
        if row is None:
            self.notify("Nothing selected.", severity="warning")
            return
        company = self.company_id
        self.confirm("Remove from the suppression list",
                     f"Take {row.email} off the list of {self._label(company)}? Later jobs will mail it again.",
                     lambda: self.change("remove", company, emails=[row.email]), label="Remove", danger=True)

    def action_import_file(self) -> None:
        if self.refuse_if_read_only():
            return
        company = self.company_id

        def given(path: str | None) -> None:
            if not path:
                return
            self.confirm("Import suppressions",
                         f"Add every address of {Path(path).name} to the list of {self._label(company)}?",
                         lambda: self.change("import", company, path=str(Path(path).expanduser())), label="Import")

        self.app.push_screen(PromptModal("Import suppressions", "CSV file (an email column, and reason)",
                                         suggester=PathSuggester(base=self.app.config.csv_dir)), given)

    @work(thread=True, exclusive=True, exit_on_error=False, group="supp-change")
    def change(self, kind: str, company_id: str | None, *, emails: list[str] = (), path: str | None = None
               ) -> ActionDone:
        actor = self.app.config.actor

        def run(*, session) -> int:
            if kind == "remove":
                return suppressions.remove(session=session, company_id=company_id, emails=emails, actor=actor,
                                           audit_source="console")
            entries = (suppressions.read_import_file(path, default_reason="imported") if kind == "import" else
                       [suppressions.Entry(email=email, reason="added by an admin") for email in emails])
            return suppressions.add(session=session, company_id=company_id, entries=entries,
                                    source="import" if kind == "import" else "admin", actor=actor,
                                    audit_source="console")

        count = calls.write(self, run)
        verb = "removed from" if kind == "remove" else "added to"
        return ActionDone(kind, f"{count:,} address(es) {verb} the list of {self._label(company_id)}.")

    def after_action(self, message: ActionDone) -> None:
        self.load()

    @work(thread=True, exclusive=True, exit_on_error=False, group="supp-export")
    def action_export(self) -> ActionDone:
        company = self.company_id
        name = f"suppressions-{company or 'no-company'}.csv"
        target = Path(self.app.config.export_dir) / re.sub(r"[^A-Za-z0-9._-]", "_", name)

        def write_file(*, session) -> int:
            written = -1
            with open(target, "w", encoding="utf-8", newline="") as handle:
                writer = csv_writer(handle)
                for row in suppressions.export_rows(session=session, company_id=company):
                    writer.writerow(row)
                    written += 1
            return written

        count = calls.read(self, write_file)
        return ActionDone("export", f"Wrote {count:,} address(es) to {target}.")
