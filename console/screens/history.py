"""Every job, newest first: filter by status, type, company and date; search by id or address."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.containers import Horizontal
from textual.widgets import DataTable, Input, Select, Static

from backend.core.settings import JOB_TYPES
from backend.jobs import queries
from backend.jobs.public import JobPublic
from console import calls
from console.messages import CompanyChoicesLoaded
from console.screens.base import ManiScreen
from console.widgets import cells
from console.widgets.fit_table import Choice, Col
from console.widgets.paged_table import PagedTable
from models import JobStatus

PAGE = 100
# What goes first when the terminal is narrow is the highest `drop`.
COLUMNS = (
    Col("job", "Job", justify="right"),
    Col("type", "Type"),
    Col("company", "Company", min=7, max=16, drop=3),
    Col("status", "Status"),
    Col("progress", "Progress", width=17, min=9, drop=6),
    Col("sent", "Sent/Total", short="Sent", justify="right"),
    Col("failed", "Failed", short="Fail", justify="right"),
    Col("created", "Created"),
    Col("by", "By", max=12, drop=4),
    Col("source", "Source", min=10, max=32, drop=5),
)


def parse_since(text: str, now: datetime) -> datetime | None:
    """`2025-03-01`, `7d`, `12h` or empty. Raises ValueError for anything else."""
    text = text.strip().lower()
    if not text:
        return None
    if text[-1] in "dh" and text[:-1].isdigit():
        amount = int(text[:-1])
        return now - (timedelta(days=amount) if text[-1] == "d" else timedelta(hours=amount))
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


class JobsLoaded(Message):
    """One page of jobs that match the filters, from `offset`, of `total`."""

    def __init__(self, rows: list[JobPublic], total: int, offset: int) -> None:
        super().__init__()
        self.rows, self.total, self.offset = rows, total, offset


class HistoryScreen(ManiScreen):
    NAV = "history"
    HELP = """\
**History.** Every job, newest first. Filter by status, type and company; `since` takes a
date (2025-03-01) or an age (7d, 12h). `/` searches: a job id, a uuid prefix, a file name,
or an email address (or its beginning) to find the jobs that sent to it. Enter opens a job."""

    BINDINGS = [
        Binding("slash", "search", "Search", id="history.search", tooltip="Search by job id, uuid or email"),
        Binding("enter", "open_job", "Open job", id="history.open", tooltip="Open the selected job"),
        Binding("escape", "clear", "Clear", id="history.clear", tooltip="Clear the filters"),
        Binding("ctrl+r,f5", "reload", "Refresh", show=False, id="history.refresh", tooltip="Read the jobs again"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.row_offset = 0
        self.total = 0
        self.rows: list[JobPublic] = []

    def compose_body(self) -> ComposeResult:
        with Horizontal(classes="filter-bar", id="history-filters"):
            yield Select([(s.value, s.value) for s in JobStatus], prompt="any status", compact=True,
                         id="filter-status")
            yield Select([(t, t) for t in JOB_TYPES], prompt="any type", compact=True, id="filter-type")
            yield Select([], prompt="any company", compact=True, id="filter-company")
            yield Input(placeholder="since", compact=True, id="filter-since")
            yield Input(placeholder="/ id, uuid or email", compact=True, id="filter-search")
        table = PagedTable(COLUMNS, id="history", cursor_type="row", zebra_stripes=True)
        table.border_title = "Jobs"
        yield table
        yield Static("", id="history-status", classes="status-line")

    def on_mount(self) -> None:
        self.load_companies()
        self.load()
        self.query_one("#history").focus()

    def on_screen_resume(self) -> None:
        if self.is_mounted and self.rows:
            self.load()

    # Data ---------------------------------------------------------------------------------------

    def _filters(self) -> dict:
        def value(selector: str):
            selected = self.query_one(selector, Select).value
            return None if selected is Select.NULL else selected

        return {
            "status": value("#filter-status"), "job_type": value("#filter-type"),
            "company_id": value("#filter-company"),
            "search": self.query_one("#filter-search", Input).value.strip() or None,
        }

    def action_reload(self) -> None:
        self.load()

    def load(self, offset: int | None = None) -> None:
        if offset is not None:
            self.row_offset = max(offset, 0)
        try:
            since = parse_since(self.query_one("#filter-since", Input).value, self.app.config.clock())
        except ValueError:
            self.notify("`since` takes a date like 2025-03-01, or an age like 7d or 12h.", severity="warning")
            return
        self._load(self._filters(), since, self.row_offset)

    @work(thread=True, exclusive=True, exit_on_error=False, group="history")
    def _load(self, filters: dict, since: datetime | None, offset: int) -> JobsLoaded:
        rows, total = calls.read(self, queries.search_jobs, since=since, limit=PAGE, offset=offset, **filters)
        return JobsLoaded(rows, total, offset)

    @work(thread=True, exclusive=True, exit_on_error=False, group="history-companies")
    def load_companies(self) -> CompanyChoicesLoaded:
        return CompanyChoicesLoaded(calls.read(self, queries.company_choices))

    @on(CompanyChoicesLoaded)
    def _companies_loaded(self, message: CompanyChoicesLoaded) -> None:
        self.query_one("#filter-company", Select).set_options(
            [(f"{name} ({cid})", cid) for cid, name in message.choices])

    @on(JobsLoaded)
    def _loaded(self, message: JobsLoaded) -> None:
        rows, total, offset = message.rows, message.total, message.offset
        self.rows, self.total, self.row_offset = rows, total, offset
        table = self.query_one("#history", PagedTable)
        keep = table.cursor_row
        table.set_rows((str(job.id), {
            "job": str(job.id),
            "type": job.type,
            "company": job.company_id or "–",
            "status": cells.status_text(job.status),
            "progress": lambda width, job=job: cells.progress_bar(job.done, job.failed, job.total, width=width - 5),
            "sent": Choice(f"{cells.number(job.sent)}/{cells.number(job.total)}",
                           f"{cells.short_number(job.sent)}/{cells.short_number(job.total)}"),
            "failed": Choice(cells.number(job.failed), cells.short_number(job.failed)),
            "created": cells.when_choice(job.created_at),
            "by": job.created_by or "–",
            "source": Path(job.source_name).name if job.source_name else "–",
        }) for job in rows)
        table.has_previous, table.has_next = offset > 0, offset + len(rows) < total
        if rows:
            table.move_cursor(row=min(max(keep, 0), len(rows) - 1), animate=False)
        shown = f"jobs {offset + 1:,}–{offset + len(rows):,} of {total:,}" if rows else "no jobs match"
        self.query_one("#history-status", Static).update(f"{shown} · [ ] page · / search · Enter opens")

    # Interaction ----------------------------------------------------------------------------------

    @on(Select.Changed)
    def _filter_changed(self) -> None:
        self.load(0)

    @on(Input.Submitted)
    def _input_submitted(self) -> None:
        self.load(0)
        self.query_one("#history").focus()

    @on(PagedTable.PageRequest, "#history")
    def _page(self, message: PagedTable.PageRequest) -> None:
        direction = message.direction
        if direction == "next":
            self.load(self.row_offset + PAGE)
        elif direction.startswith("previous"):
            self.load(self.row_offset - PAGE)
        elif direction == "first":
            self.load(0)
        elif direction == "last":
            self.load(max((self.total - 1) // PAGE * PAGE, 0))

    def action_search(self) -> None:
        self.query_one("#filter-search", Input).focus()

    def action_clear(self) -> None:
        for selector in ("#filter-status", "#filter-type", "#filter-company"):
            self.query_one(selector, Select).clear()
        for selector in ("#filter-since", "#filter-search"):
            self.query_one(selector, Input).value = ""
        self.load(0)
        self.query_one("#history").focus()

    def palette_commands(self) -> list[tuple[str, str, object]]:
        """The palette's "open": the selected job first."""
        table = self.query_one("#history", PagedTable)
        if not self.rows or table.cursor_row < 0:
            return []
        job_id = self.rows[min(table.cursor_row, len(self.rows) - 1)].id
        return [(f"Open job {job_id}", "The selected job's detail page", lambda: self.app.open_job(job_id))]

    def action_open_job(self) -> None:
        table = self.query_one("#history", PagedTable)
        if self.rows and table.cursor_row >= 0:
            self.app.open_job(self.rows[min(table.cursor_row, len(self.rows) - 1)].id)

    @on(DataTable.RowSelected, "#history")
    def _selected(self, event: DataTable.RowSelected) -> None:
        self.app.open_job(int(event.row_key.value))
