"""One job: summary (rates, callbacks, route and why), its recipients paged from the store,
batches, counts and callbacks to Moodle, with actions."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.containers import Horizontal
from textual.widgets import DataTable, Input, Select, Static, TabbedContent, TabPane

from backend.jobs import actions as job_actions
from backend.jobs import queries
from backend.jobs.export import write_job_log
from backend.jobs.public import CallbackDeliveryPublic, HandoffBatchPublic, JobDetailPublic, RecipientPagePublic
from console import calls
from console.messages import ActionDone
from console.screens.base import ManiScreen
from console.widgets import cells
from console.widgets.callbacks import CallbacksPane
from console.widgets.confirm import PromptModal
from console.widgets.fit_table import Col, FitTable
from console.widgets.full_text import FullTextModal
from console.widgets.job_summary import JobSummary
from console.widgets.paged_table import PagedTable
from models import RECIPIENT_PROBLEM, RECIPIENT_RETRYABLE

STATUS_FILTERS = [("All statuses", "all"), ("Problems", "problems"), ("Retryable (failed)", "retryable")] + [
    (status, status) for status in ("pending", "processing", "sent", "failed", "retry_pending", "permanently_failed",
                                    "bounced", "complained", "skipped", "suppressed", "cancelled")
]

# What goes first when the terminal is narrow is the highest `drop`.
RECIPIENT_COLUMNS = (
    Col("line", "Line", justify="right"),
    Col("email", "Email", min=24, max=40),
    Col("name", "Name", min=10, max=24, drop=5),
    Col("status", "Status"),
    Col("attempts", "Att", justify="right", drop=4),
    Col("error", "Last error", min=10, grow=True),
    Col("sent", "Sent", drop=3),
    Col("certificate", "Certificate", min=11, max=48, drop=6),
)
BATCH_COLUMNS = (
    Col("batch", "Batch", justify="right"),
    Col("status", "Status"),
    Col("size", "Size", justify="right"),
    Col("sent", "Sent", justify="right"),
    Col("failed", "Failed", justify="right"),
    Col("attempts", "Att", justify="right", drop=2),
    Col("finished", "Finished", drop=1),
    Col("error", "Last error", min=10, grow=True),
)
COUNT_COLUMNS = (Col("status", "Recipient status"), Col("count", "Count", justify="right"))


def _status_filter(value: str):
    if value == "problems":
        return RECIPIENT_PROBLEM
    if value == "retryable":
        return RECIPIENT_RETRYABLE
    return None if value in ("all", "", None) else value

# Footer groups: "rR Retry 1/all" takes less room than two entries.
RETRY = Binding.Group("Retry 1/all", compact=True)
REDELIVER = Binding.Group("Redeliver", compact=True)
PAUSE = Binding.Group("Pause/resume", compact=True)
# Keys that mean one thing on the Callbacks tab and another (or nothing) on the others.
CALLBACK_ACTIONS = {"redeliver", "redeliver_failed", "open_delivery"}
RECIPIENT_ACTIONS = {"retry_selected", "retry_all"}
NO_CALLBACKS = "No callbacks: the job has no callback URL, or none is due yet (one per batch, one at the end)."


def _error(text: str | None) -> Text | str:
    return Text(" ".join(text.split()), style="red") if text else ""


def _handoff_note(batch: HandoffBatchPublic, now) -> Text:
    """Where a handed-off batch is: at the worker since when, its last report, stuck or not."""
    note = Text(f"handed off {cells.age(now, batch.handed_off_at)} ago")
    if batch.reported_at:
        note.append(f", reported {cells.age(now, batch.reported_at)} ago")
    if batch.stuck:
        note.append(" · STUCK", style="bold red")
    return note


class DetailLoaded(Message):
    """The job's summary, batches and counts, and its callback deliveries."""

    def __init__(self, detail: JobDetailPublic, deliveries: list[CallbackDeliveryPublic]) -> None:
        super().__init__()
        self.detail, self.deliveries = detail, deliveries


class PageLoaded(Message):
    """One page of recipients; `direction` says which way it was turned ("current": a refresh)."""

    def __init__(self, page: RecipientPagePublic, direction: str) -> None:
        super().__init__()
        self.page, self.direction = page, direction


class QuestionCounts(Message):
    """The job as it is when an action's key is pressed: what its question counts."""

    def __init__(self, kind: str, detail: JobDetailPublic) -> None:
        super().__init__()
        self.kind, self.detail = kind, detail


def plural(count: int, word: str) -> str:
    """`1 recipient`, `2,000 recipients`."""
    return f"{count:,} {word}{'' if count == 1 else 's'}"


class JobDetailScreen(ManiScreen):
    HELP = """\
**Job detail.** The job's summary: progress, bounce and complaint rates (▲ from 2%), the
share of callbacks Moodle has received, the route and why. `t` goes to the next tab: recipients
(one page at a time, `[` `]` to page, moving past the edge turns the page), batches, status
counts, callbacks.
It refreshes on its own at the dashboard's interval, keeping the cursor where it is.
`/` searches addresses; the status list filters; Esc clears them before it goes back.
Enter or `v` shows the selected row whole (the line under the table has its error).
`r` retries the selected recipient, `R` every failed one; `p`/`u` pause/resume; `c` cancels;
`e` exports the log as CSV. On the **Callbacks** tab, Enter opens a delivery's attempt log,
`v` shows it whole, `r` sends the selected callback again and `R` every failed one. Each change
asks first and says how many things it touches."""

    BINDINGS = [
        Binding("escape", "back", "Back", id="job.back",
                tooltip="Clear the search and the filter; when there is none, back to the previous screen"),
        Binding("slash", "search", "Search", id="job.search", tooltip="Search recipients by address"),
        Binding("r", "retry_selected", "Retry", id="job.retry_one", tooltip="Retry the selected failed recipient",
                group=RETRY),
        Binding("R", "retry_all", "Retry all", id="job.retry_all", tooltip="Retry every failed recipient",
                group=RETRY),
        Binding("r", "redeliver", "Redeliver", id="job.redeliver_one", group=REDELIVER,
                tooltip="Callbacks tab: send the selected callback to Moodle again"),
        Binding("R", "redeliver_failed", "Redeliver failed", id="job.redeliver_failed", group=REDELIVER,
                tooltip="Callbacks tab: send every failed callback of this job again"),
        Binding("enter", "open_delivery", "Attempts", id="job.callback_log",
                tooltip="Callbacks tab: open the selected callback's attempt log"),
        Binding("v", "view", "Full text", show=False, id="job.view",
                tooltip="Every field of the selected row, whole, selectable for copying (Enter too)"),
        Binding("p", "pause", "Pause", id="job.pause", tooltip="Pause the job: no more sends until resumed",
                group=PAUSE),
        Binding("u", "resume", "Resume", id="job.resume", tooltip="Resume a paused job", group=PAUSE),
        Binding("c", "cancel_job", "Cancel", id="job.cancel", tooltip="Cancel the job: unsent recipients end cancelled"),
        Binding("e", "export", "Export", id="job.export", tooltip="Export the job's recipient log as CSV"),
        Binding("t", "next_tab", "Tabs", show=False, id="job.next_tab",
                tooltip="Next tab: recipients, batches, counts, callbacks"),
        Binding("ctrl+r,f5", "reload", "Refresh", show=False, id="job.refresh", tooltip="Read the job again"),
    ]

    def __init__(self, job_id: int) -> None:
        super().__init__()
        self.job_id = job_id
        self.detail: JobDetailPublic | None = None
        self.page: RecipientPagePublic | None = None
        self.status_filter = "all"
        self.search = ""
        self.NAV = "dashboard"

    def compose_body(self) -> ComposeResult:
        self.NAV = self.app.current_mode
        yield JobSummary(id="job-summary")
        with TabbedContent(id="job-tabs"):
            with TabPane("Recipients", id="tab-recipients"):
                with Horizontal(id="recipient-filters", classes="filter-bar"):
                    yield Select(STATUS_FILTERS, value="all", allow_blank=False, compact=True, id="recipient-status")
                    yield Input(placeholder="/ search address", compact=True, id="recipient-search")
                yield PagedTable(RECIPIENT_COLUMNS, id="recipients", cursor_type="row", zebra_stripes=True)
                yield Static("", id="recipient-detail", classes="detail-line")
                yield Static("", id="page-status", classes="status-line")
            with TabPane("Batches", id="tab-batches"):
                yield FitTable(BATCH_COLUMNS, id="batches", cursor_type="row", zebra_stripes=True)
                yield Static("", id="batch-detail", classes="detail-line")
            with TabPane("Counts", id="tab-counts"):
                yield FitTable(COUNT_COLUMNS, id="counts", cursor_type="row", show_cursor=False)
            with TabPane("Callbacks", id="tab-callbacks"):
                yield CallbacksPane(table_id="callbacks", empty=NO_CALLBACKS)

    def on_mount(self) -> None:
        self.load_detail()
        self.load_page("first")
        self.query_one("#recipients").focus()

    # Loading ------------------------------------------------------------------------------------

    def on_screen_resume(self) -> None:
        """While the job is on screen it refreshes at the dashboard's interval (`--refresh`)."""
        self.resume_refreshing(self._tick)

    def on_screen_suspend(self) -> None:
        self.pause_refreshing()

    def _tick(self) -> None:
        """Read the job and the page on screen again, unless a read is still running: a refresh
        never cancels a page the admin asked for, and never moves the cursor or the scroll."""
        if not self.busy("job-detail", "job-page"):
            self.action_reload()

    def action_reload(self) -> None:
        self.load_detail()
        self.load_page("current")

    @work(thread=True, exclusive=True, exit_on_error=False, group="job-detail")
    def load_detail(self) -> DetailLoaded:
        def read_all(*, session) -> tuple:
            detail = queries.job_detail(session=session, job_ref=self.job_id)
            return detail, queries.list_deliveries(session=session, job_id=detail.id, newest_first=False, limit=500)

        return DetailLoaded(*calls.read(self, read_all))

    @work(thread=True, exclusive=True, exit_on_error=False, group="job-page")
    def load_page(self, direction: str) -> PageLoaded:
        page, size = self.page, self.app.config.page_size
        options: dict = {}
        if direction == "next" and page and page.rows:
            options["after_id"] = page.rows[-1].id
        elif direction.startswith("previous") and page and page.rows:
            options["before_id"] = page.rows[0].id
        elif direction == "last":
            options["last"] = True
        elif direction == "current" and page and page.rows:
            options["after_id"] = page.rows[0].id - 1
        page = calls.read(
            self, queries.recipients_page, job_id=self.job_id, status=_status_filter(self.status_filter),
            search=self.search or None, limit=size, **options,
        )
        return PageLoaded(page, direction)

    @on(DetailLoaded)
    def _detail_loaded(self, message: DetailLoaded) -> None:
        self._show_detail(message.detail, message.deliveries)

    @on(PageLoaded)
    def _page_loaded(self, message: PageLoaded) -> None:
        self._show_page(message.page, message.direction)

    def _show_detail(self, detail: JobDetailPublic, deliveries: list[CallbackDeliveryPublic]) -> None:
        self.detail = detail
        job, now = detail, self.app.config.clock()
        self.query_one(JobSummary).show(detail, now)
        self.sub_title = f"job {job.id}"
        handed = {b.number: b for b in detail.handoff.batches} if detail.handoff else {}
        self.query_one("#batches", FitTable).set_rows((str(batch.id), {
            "batch": str(batch.number), "status": cells.status_text(batch.status), "size": cells.number(batch.size),
            "sent": cells.number(batch.sent), "failed": cells.number(batch.failed), "attempts": str(batch.attempts),
            "finished": cells.when_choice(batch.finished_at),
            "error": _handoff_note(handed[batch.number], now) if batch.number in handed and not batch.error
            else _error(batch.error),
        }) for batch in detail.batches)
        self.query_one("#counts", FitTable).set_rows(
            (status, {"status": cells.status_text(status), "count": cells.number(count)})
            for status, count in sorted(detail.counts.items(), key=lambda item: -item[1])
        )
        self.query_one(CallbacksPane).show(deliveries, now)
        self._describe_batch()

    def _show_page(self, page: RecipientPagePublic, direction: str) -> None:
        self.page = page
        table = self.query_one("#recipients", PagedTable)
        keep = table.cursor_row if direction == "current" else 0
        table.set_rows((str(row.id), {
            "line": str(row.line or ""), "email": row.email, "name": row.name, "status": cells.status_text(row.status),
            "attempts": str(row.attempts), "error": _error(row.error), "sent": cells.when_choice(row.sent_at),
            "certificate": row.certificate_url or "–",
        }) for row in page.rows)
        table.has_next, table.has_previous = page.has_next, page.has_previous
        if page.rows:
            target = len(page.rows) - 1 if direction == "previous:end" or direction == "last" else keep
            table.move_cursor(row=min(target, len(page.rows) - 1), animate=False, scroll=direction != "current")
        self._describe_recipient()
        end = page.start + len(page.rows)
        shown = f"rows {page.start + 1:,}–{end:,} of {page.total:,}" if page.rows else "no recipients match"
        self.query_one("#page-status", Static).update(
            f"{shown} · [ ] page · ⏎ whole row · filter: {self.status_filter}"
            + (f" · “{self.search}”" if self.search else "")
        )

    @on(PagedTable.PageRequest)
    def _page_request(self, message: PagedTable.PageRequest) -> None:
        self.load_page(message.direction)

    @on(Select.Changed, "#recipient-status")
    def _status_changed(self, event: Select.Changed) -> None:
        self.status_filter = str(event.value)
        self.page = None
        self.load_page("first")

    @on(Input.Submitted, "#recipient-search")
    def _search_submitted(self, event: Input.Submitted) -> None:
        self.search = event.value.strip()
        self.page = None
        self.load_page("first")
        self.query_one("#recipients").focus()

    # The selected row, whole -----------------------------------------------------------------------

    @on(DataTable.RowHighlighted, "#recipients")
    def _describe_recipient(self) -> None:
        """The line under the table: the selected recipient with its last error whole, wrapped."""
        row = self._selected_recipient()
        text = Text()
        if row is not None:
            text.append(row.email, style="bold")
            text.append(f" · line {row.line or '–'} · ")
            text.append_text(cells.status_text(row.status))
            text.append(f" · {row.attempts:,} attempt{'s' if row.attempts != 1 else ''}")
            if row.error:
                text.append(" · last error: ")
                text.append(" ".join(row.error.split()), style="red")
        self.query_one("#recipient-detail", Static).update(text)

    def _selected_batch(self):
        table = self.query_one("#batches", FitTable)
        batches = self.detail.batches if self.detail else []
        if not batches or table.cursor_row < 0:
            return None
        return batches[min(table.cursor_row, len(batches) - 1)]

    @on(DataTable.RowHighlighted, "#batches")
    def _describe_batch(self) -> None:
        batch = self._selected_batch()
        text = Text()
        if batch is not None:
            text.append(f"batch {batch.number}", style="bold")
            text.append(f" · {batch.status} · {batch.sent:,} sent, {batch.failed:,} failed of {batch.size:,}")
            if batch.error:
                text.append(" · last error: ")
                text.append(" ".join(batch.error.split()), style="red")
        self.query_one("#batch-detail", Static).update(text)

    @on(DataTable.RowSelected, "#recipients")
    @on(DataTable.RowSelected, "#batches")
    def action_view(self) -> None:
        """Every field of the selected recipient, batch or callback, whole (Enter or `v`)."""
        active = self.query_one(TabbedContent).active
        if active == "tab-callbacks":
            self.query_one(CallbacksPane).view()
        elif active == "tab-batches":
            batch = self._selected_batch()
            if batch is not None:
                self.app.push_screen(FullTextModal(f"Job {self.job_id}, batch {batch.number}", [
                    ("batch", batch.number), ("status", batch.status), ("size", batch.size), ("sent", batch.sent),
                    ("failed", batch.failed), ("attempts", batch.attempts), ("started", batch.started_at), ("finished", batch.finished_at),
                    ("last error", batch.error)]))
        elif active == "tab-recipients":
            row = self._selected_recipient()
            if row is not None:
                self.app.push_screen(FullTextModal(f"Job {self.job_id}, recipient {row.email}", [
                    ("email", row.email), ("line", row.line), ("name", row.name), ("user id", row.userid),
                    ("status", row.status), ("attempts", row.attempts), ("last error", row.error),
                    ("sent", row.sent_at), ("message id", row.external_id), ("certificate", row.certificate_url),
                    ("certificate code", row.certificate_code), ("batch", row.batch_id), ("recipient id", row.id)]))

    # Callbacks tab -------------------------------------------------------------------------------

    def _on_callbacks_tab(self) -> bool:
        tabs = self.query(TabbedContent)  # empty until composed
        return bool(tabs) and tabs.first().active == "tab-callbacks"

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """`r`, `R` and Enter act on callbacks on the Callbacks tab, on recipients elsewhere."""
        if action in CALLBACK_ACTIONS:
            return self._on_callbacks_tab()
        if action in RECIPIENT_ACTIONS:
            return not self._on_callbacks_tab()
        return True

    def action_next_tab(self) -> None:
        tabs = self.query_one(TabbedContent)
        panes = [pane.id for pane in tabs.query(TabPane)]
        tabs.active = panes[(panes.index(tabs.active) + 1) % len(panes)]

    @on(TabbedContent.TabActivated)
    def _tab_activated(self, event: TabbedContent.TabActivated) -> None:
        self.refresh_bindings()
        pane = event.pane.query(DataTable)
        if pane:
            pane.first().focus()

    def action_open_delivery(self) -> None:
        self.query_one(CallbacksPane).open_log()

    def action_redeliver(self) -> None:
        self.query_one(CallbacksPane).ask_redeliver()

    def action_redeliver_failed(self) -> None:
        self.query_one(CallbacksPane).ask_redeliver_failed(job_id=self.job_id)

    def action_search(self) -> None:
        self.query_one(TabbedContent).active = "tab-recipients"
        self.query_one("#recipient-search", Input).focus()

    def action_back(self) -> None:
        """Esc clears an active search or filter first (the text being typed, too); only then
        does it go back. See docs/console.md, "Keys that mean the same everywhere"."""
        typed = self.query_one("#recipient-search", Input)
        if self.search or typed.value or self.status_filter != "all":
            typed.value = ""
            self.search = ""
            if self.status_filter != "all":
                self.status_filter = "all"
                with self.prevent(Select.Changed):
                    self.query_one("#recipient-status", Select).value = "all"
            self.page = None
            self.load_page("first")
            self.query_one("#recipients").focus()
            return
        self.app.pop_screen()

    # Actions ------------------------------------------------------------------------------------

    def _selected_recipient(self):
        table = self.query_one("#recipients", PagedTable)
        if not self.page or not self.page.rows or table.cursor_row < 0:
            return None
        return self.page.rows[min(table.cursor_row, len(self.page.rows) - 1)]

    def action_retry_selected(self) -> None:
        row = self._selected_recipient()
        if row is None:
            self.notify("Select a recipient first.", severity="warning")
            return
        if row.status not in RECIPIENT_RETRYABLE:
            self.notify(f"{row.email} is {row.status}: only failed recipients can be retried.", severity="warning")
            return
        self.confirm("Retry recipient", f"Retry 1 recipient ({row.email}) of job {self.job_id}?",
                     lambda: self.run_action("retry", recipient_ids=[row.id]), label="Retry")

    # The whole-job actions ask with counts read when the key is pressed, by the same backend
    # function (`queries.job_detail`) whose sets the action uses: the question's count is the
    # count the action reports, not the one of the last refresh.

    def action_retry_all(self) -> None:
        if not self.refuse_if_read_only():
            self.read_question("retry")

    def action_pause(self) -> None:
        if not self.refuse_if_read_only():
            self.read_question("pause")

    def action_resume(self) -> None:
        if not self.refuse_if_read_only():
            self.read_question("resume")

    def action_cancel_job(self) -> None:
        if not self.refuse_if_read_only():
            self.read_question("cancel")

    @work(thread=True, exclusive=True, exit_on_error=False, group="job-question")
    def read_question(self, kind: str) -> QuestionCounts:
        return QuestionCounts(kind, calls.read(self, queries.job_detail, job_ref=self.job_id))

    @on(QuestionCounts)
    def _ask(self, message: QuestionCounts) -> None:
        detail, job = message.detail, self.job_id
        if message.kind == "retry":
            count = detail.retryable
            if not count:
                self.notify(f"Job {job} has no failed recipients to retry.", severity="warning")
                return
            self.confirm("Retry all failed", f"Retry {'the' if count == 1 else 'all'} {plural(count, 'failed recipient')}"
                         f" of job {job}? Each is sent again.", lambda: self.run_action("retry"),
                         label=f"Retry {count:,}")
        elif message.kind == "pause":
            self.confirm("Pause job", f"Pause job {job}? {plural(detail.waiting, 'recipient')} not yet sent wait "
                         "until you resume it.", lambda: self.run_action("pause"), label="Pause")
        elif message.kind == "resume":
            self.confirm("Resume job", f"Resume job {job}? {plural(detail.waiting, 'recipient')} not yet sent "
                         "will be sent.", lambda: self.run_action("resume"), label="Resume")
        elif message.kind == "cancel":
            # `cancellable` is `queries.count_cancellable`, the count the cancel itself reports.
            self.confirm("Cancel job", f"Cancel job {job} for good? {plural(detail.cancellable, 'recipient')} not "
                         "yet sent will never be sent.", lambda: self.run_action("cancel"), label="Cancel job",
                         danger=True)

    @work(thread=True, exclusive=True, exit_on_error=False, group="job-action")
    def run_action(self, kind: str, recipient_ids: list[int] | None = None) -> ActionDone:
        actor = self.app.config.actor
        fn = {"retry": job_actions.retry_job, "pause": job_actions.pause_job, "resume": job_actions.resume_job,
              "cancel": job_actions.cancel_job}[kind]
        options = {"recipient_ids": recipient_ids} if recipient_ids else {}
        result = calls.write(self, fn, job_ref=self.job_id, actor=actor, source="console", **options)
        note = calls.hand_over(self, result.followups)
        count = result.public.recipients
        words = {"retry": f"{plural(count, 'recipient')} set to retry", "pause": "paused",
                 "resume": "resumed", "cancel": f"cancelled ({plural(count, 'recipient')} not sent)"}[kind]
        return ActionDone(kind, f"Job {self.job_id}: {words}" + (f"; {note}" if note else "") + ".")

    def after_action(self, message: ActionDone) -> None:
        self.action_reload()

    # Export ---------------------------------------------------------------------------------------

    def action_export(self) -> None:
        uuid = self.detail.job_id[:8] if self.detail else "job"
        default = self.app.config.export_dir / f"mani-job-{self.job_id}-{uuid}-log.csv"

        def chosen(path: str | None) -> None:
            if path:
                self.export_log(Path(path).expanduser())

        self.app.push_screen(PromptModal("Export the job's log", "Write every recipient of this job to:",
                                         str(default)), chosen)

    @work(thread=True, exclusive=True, exit_on_error=False, group="job-export")
    def export_log(self, path: Path) -> ActionDone:
        def write_csv(*, session) -> int:
            with path.open("w", newline="", encoding="utf-8") as handle:
                return write_job_log(session=session, job_id=self.job_id, handle=handle)

        def audit(*, session, rows: int) -> None:
            calls.audit(self, session=session, action="job.export", target=self.detail.job_id if self.detail else
                        str(self.job_id), details={"path": str(path), "rows": rows})

        path.parent.mkdir(parents=True, exist_ok=True)
        rows = calls.read(self, write_csv)
        # An export is not a change, so read-only mode allows it; it is still audited.
        calls._with_session(self, audit, read_only=False, rows=rows)
        return ActionDone("export", f"Exported {rows:,} recipients to {path}.")
