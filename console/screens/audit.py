"""The audit log: who did what, from where, newest first."""

from __future__ import annotations

import json

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.widgets import Input, Static

from backend.jobs import queries
from backend.jobs.public import AuditEntryPublic
from console import calls
from console.screens.base import ManiScreen
from console.widgets import cells
from console.widgets.fit_table import Col
from console.widgets.full_text import FullTextModal
from console.widgets.paged_table import PagedTable

PAGE = 200
# What goes first when the terminal is narrow is the highest `drop`.
COLUMNS = (
    Col("at", "When (UTC)", short="When"),
    Col("actor", "Actor", max=16),
    Col("source", "Source", drop=2),
    Col("action", "Action", max=24),
    Col("target", "Target", min=8, max=36, drop=1),
    Col("details", "Details", min=12, grow=True, drop=3),
)


class AuditLoaded(Message):
    """One page of audit entries that match the search, from `offset`, of `total`."""

    def __init__(self, rows: list[AuditEntryPublic], total: int, offset: int) -> None:
        super().__init__()
        self.rows, self.total, self.offset = rows, total, offset


class AuditScreen(ManiScreen):
    NAV = "audit"
    HELP = """\
**Audit.** Every change made from the console, the CLI, the API and the workers, with the OS
user (`SUDO_USER` or the login name) for console and CLI actions. Secrets are never written
here, only masked. `/` searches actor, action or target."""

    BINDINGS = [
        Binding("slash", "search", "Search", id="audit.search", tooltip="Search by actor, action or target"),
        Binding("escape", "clear", "Clear", id="audit.clear", tooltip="Clear the search"),
        Binding("v", "view", "Full text", id="audit.view",
                tooltip="Every field of the selected entry, whole, selectable for copying (Enter too)"),
        Binding("ctrl+r,f5", "reload", "Refresh", id="audit.refresh", tooltip="Read the log again"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.row_offset = 0
        self.total = 0
        self.rows: list[AuditEntryPublic] = []

    def compose_body(self) -> ComposeResult:
        yield Input(placeholder="/ search actor, action or target", compact=True, id="audit-search")
        table = PagedTable(COLUMNS, id="audit", cursor_type="row", zebra_stripes=True)
        table.border_title = "Audit log"
        yield table
        yield Static("", id="audit-detail", classes="detail-line")
        yield Static("", id="audit-status", classes="status-line")

    def on_mount(self) -> None:
        self.query_one("#audit").focus()

    def on_screen_resume(self) -> None:
        self.load()

    def action_reload(self) -> None:
        self.load()

    def load(self, offset: int | None = None) -> None:
        if offset is not None:
            self.row_offset = max(offset, 0)
        self._load(self.query_one("#audit-search", Input).value.strip() or None, self.row_offset)

    @work(thread=True, exclusive=True, exit_on_error=False, group="audit")
    def _load(self, search: str | None, offset: int) -> AuditLoaded:
        rows, total = calls.read(self, queries.audit_entries, search=search, limit=PAGE, offset=offset)
        return AuditLoaded(rows, total, offset)

    @on(AuditLoaded)
    def _loaded(self, message: AuditLoaded) -> None:
        rows, total, offset = message.rows, message.total, message.offset
        self.rows, self.total, self.row_offset = rows, total, offset
        table = self.query_one("#audit", PagedTable)
        table.set_rows((str(row.id), {
            "at": cells.when_choice(row.at, seconds=True), "actor": row.actor, "source": row.source,
            "action": row.action, "target": row.target or "–",
            "details": json.dumps(row.details, separators=(", ", ": "), sort_keys=True) if row.details else "",
        }) for row in rows)
        table.has_previous, table.has_next = offset > 0, offset + len(rows) < total
        shown = f"entries {offset + 1:,}–{offset + len(rows):,} of {total:,}" if rows else "no entries"
        self.query_one("#audit-status", Static).update(f"{shown} · [ ] page · / search")
        self._show_detail()

    @on(PagedTable.RowHighlighted, "#audit")
    def _show_detail(self) -> None:
        """The highlighted entry in full: the table cuts long targets and details."""
        table = self.query_one("#audit", PagedTable)
        row = self.rows[table.cursor_row] if self.rows and 0 <= table.cursor_row < len(self.rows) else None
        text = Text()
        if row is not None:
            text.append(f"{row.action} ", style="bold")
            text.append(f"{row.target or '–'}")
            if row.address:
                text.append(f" · from {row.address}", style="dim")
            if row.details:
                text.append(" · ")
                text.append(json.dumps(row.details, separators=(", ", ": "), sort_keys=True))
        self.query_one("#audit-detail", Static).update(text)

    @on(PagedTable.RowSelected, "#audit")
    def action_view(self) -> None:
        table = self.query_one("#audit", PagedTable)
        if not self.rows or table.cursor_row < 0:
            return
        row = self.rows[min(table.cursor_row, len(self.rows) - 1)]
        details = json.dumps(row.details, indent=2, sort_keys=True, ensure_ascii=False) if row.details else None
        self.app.push_screen(FullTextModal(f"Audit entry {row.id}", [
            ("when", row.at), ("actor", row.actor), ("source", row.source), ("action", row.action),
            ("target", row.target), ("address", row.address), ("details", details)]))

    @on(PagedTable.PageRequest)
    def _page(self, message: PagedTable.PageRequest) -> None:
        step = {"next": PAGE, "first": -self.row_offset, "last": max(self.total - 1, 0) // PAGE * PAGE - self.row_offset}
        self.load(self.row_offset + step.get(message.direction, -PAGE))

    @on(Input.Submitted, "#audit-search")
    def _search(self) -> None:
        self.load(0)
        self.query_one("#audit").focus()

    def action_search(self) -> None:
        self.query_one("#audit-search", Input).focus()

    def action_clear(self) -> None:
        self.query_one("#audit-search", Input).value = ""
        self.load(0)
        self.query_one("#audit").focus()
