"""The start screen: Sidekiq-style counters and the active jobs, refreshed every few seconds."""

from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.containers import Grid
from textual.worker import Worker
from textual.widgets import DataTable, Static

from backend.jobs.public import DashboardPublic
from backend.jobs.queries import dashboard, failed_deliveries
from backend.ops.deadletters import BrokerStats, broker_stats
from console import calls
from console.screens.base import ManiScreen
from console.widgets import cells
from console.widgets.banner import Banner
from console.widgets.counters import Counter
from console.widgets.fit_table import Choice, Col, FitTable

COUNTERS = (
    ("active", "Active jobs", "Jobs not finished: pending, queued, processing, retrying or paused"),
    ("queued", "Queued", "Jobs waiting to run, and the recipients still to send in active jobs"),
    ("processing", "Processing", "Jobs being sent right now"),
    ("sent", "Sent 1h", "Recipients sent in the last hour"),
    ("failed", "Failed", "Failed recipients in active jobs and jobs finished in the last hour"),
    ("dead", "Dead letters", "Broker messages that exhausted their retries (screen 5)"),
    ("depth", "Queue depth", "Messages waiting in the broker (ready + delayed)"),
    ("rate", "Send rate", "Recipients sent in the last minute; avg: since start, for running jobs"),
)

# The active jobs table: what goes first when the terminal is narrow is the highest `drop`.
JOB_COLUMNS = (
    Col("job", "Job"),
    Col("type", "Type", min=11),
    Col("company", "Company", min=7, max=16, drop=3),
    Col("status", "Status"),
    Col("progress", "Progress", width=21, min=9),
    Col("sent", "Sent/Total", short="Sent", justify="right"),
    Col("failed", "Failed", short="Fail", justify="right"),
    Col("rate", "Rate", justify="right", drop=4),
    Col("recent", "Last min", justify="right", drop=6),
    Col("age", "Age", justify="right", drop=5),
    Col("problem", "Problem", min=10, grow=True, drop=7),
)
# Eight counters in one row from this width; below, two rows of four.
ONE_ROW_WIDTH = 160


class DashboardLoaded(Message):
    """One refresh: `snapshot` None when the database did not answer, `stats` None when the broker did not."""

    def __init__(self, snapshot: DashboardPublic | None, stats: BrokerStats | None, failed_callbacks: int) -> None:
        super().__init__()
        self.snapshot, self.stats, self.failed_callbacks = snapshot, stats, failed_callbacks


class DashboardScreen(ManiScreen):
    NAV = "dashboard"
    HELP = """\
**Dashboard.** What mani is doing now. Counters on top, active jobs below with their
progress; it refreshes on its own (`--refresh SECONDS`). Problems are flagged in the banner:
a job stuck with no progress, a failure rate above the threshold, dead letters waiting,
callbacks to Moodle that failed for good.
Select a job and press **Enter** for its detail."""

    BINDINGS = [
        Binding("enter", "open_job", "Open job", id="dashboard.open", tooltip="Open the selected job's detail"),
        Binding("ctrl+r,f5", "reload", "Refresh", id="dashboard.refresh", tooltip="Refresh now"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._snapshot: DashboardPublic | None = None
        self._stats: BrokerStats | None = None
        self._loading: Worker | None = None

    def compose_body(self) -> ComposeResult:
        with Grid(id="counters"):
            for key, label, tooltip in COUNTERS:
                yield Counter(label, id=f"counter-{key}", tooltip=tooltip)
        table = FitTable(JOB_COLUMNS, id="active-jobs", cursor_type="row", zebra_stripes=True)
        table.border_title = "Active jobs"
        yield table
        yield Static("Loading…", id="dashboard-status", classes="status-line")

    def on_mount(self) -> None:
        self._arrange_counters()

    def on_screen_resume(self) -> None:
        self._loading = self.load()
        self.resume_refreshing(self._tick)

    def on_screen_suspend(self) -> None:
        self.pause_refreshing()

    def on_resize(self) -> None:
        self._arrange_counters()

    def _arrange_counters(self) -> None:
        self.query_one("#counters").set_class(self.app.size.width >= ONE_ROW_WIDTH, "-one-row")

    # Data -------------------------------------------------------------------------------------

    def action_reload(self) -> None:
        self._loading = self.load()

    def _tick(self) -> None:
        """The timer's refresh waits for a read still running rather than cancelling it: with an
        interval shorter than a read, cancelling would mean no read ever lands."""
        if self._loading is None or self._loading.is_finished:
            self._loading = self.load()

    @work(thread=True, exclusive=True, exit_on_error=False, group="dashboard")
    def load(self) -> DashboardLoaded:
        config = self.app.config
        snapshot = stats = None
        failed_callbacks = 0

        def read_all(*, session) -> tuple[DashboardPublic, int]:
            return dashboard(
                session=session, now=config.clock(), stuck_after=config.stuck_after,
                failure_threshold=config.failure_threshold, failure_min_sample=config.failure_min_sample,
            ), failed_deliveries(session=session, limit=0)[1]

        try:
            snapshot, failed_callbacks = calls.read(self, read_all)
        except calls.Unavailable:
            pass
        try:
            stats = calls.broker(self, broker_stats)
        except calls.Unavailable:
            pass
        return DashboardLoaded(snapshot, stats, failed_callbacks)

    @on(DashboardLoaded)
    def _loaded(self, message: DashboardLoaded) -> None:
        snapshot, stats, failed_callbacks = message.snapshot, message.stats, message.failed_callbacks
        self._stats = stats
        if snapshot is not None:
            self._snapshot = snapshot
            self._show_counters(snapshot, stats)
            self._show_jobs(snapshot)
        elif stats is not None and self._snapshot is not None:
            self._show_counters(self._snapshot, stats)
        problems = list(snapshot.problems if snapshot else [])
        if failed_callbacks:
            problems.insert(0, f"{failed_callbacks:,} callback(s) to Moodle failed: press 5 to redeliver")
        if stats is not None and stats.dead_letters:
            problems.insert(0, f"{stats.dead_letters:,} dead-lettered message(s): press 5 to requeue or delete")
        self.query_one(Banner).problems = tuple(problems)
        status = self.query_one("#dashboard-status", Static)
        if snapshot is not None:
            every = f"every {self.app.config.refresh:g}s" if self.app.config.refresh else "manual (ctrl+r)"
            shown = len(snapshot.jobs)
            status.update(
                f"Updated {snapshot.now:%H:%M:%S} UTC · refresh {every} · "
                + (f"{shown:,} of {snapshot.active_jobs:,} active jobs shown" if shown else "no active jobs")
            )

    def _show_counters(self, snap: DashboardPublic, stats: BrokerStats | None) -> None:
        def put(key: str, value: str, note: str = "", alert: bool = False) -> None:
            counter = self.query_one(f"#counter-{key}", Counter)
            counter.value, counter.note, counter.alert = value, note, alert

        put("active", cells.number(snap.active_jobs))
        put("queued", cells.number(snap.queued_jobs),
            f"{cells.short_number(snap.queued_recipients)} rcpt" if snap.queued_recipients else "")
        put("processing", cells.number(snap.processing_jobs))
        put("sent", cells.number(snap.sent_last_hour))
        put("failed", cells.number(snap.failed_recent),
            alert=any("failure rate" in p for p in snap.problems))
        if stats is None:
            put("dead", "?", "no broker", alert=True)
            put("depth", "?", "no broker", alert=True)
        elif stats.kind == "none":
            put("dead", "–", "in-process")
            put("depth", "–", "in-process")
        else:
            put("dead", cells.number(stats.dead_letters), alert=stats.dead_letters > 0)
            put("depth", cells.number(stats.depth), f"+{cells.short_number(stats.delayed)} later" if stats.delayed else "")
        avg = f"avg {cells.rate(snap.rate_since_start)}" if snap.rate_since_start is not None else ""
        put("rate", cells.rate(snap.rate_last_minute), avg)

    # The active jobs table ----------------------------------------------------------------------

    def _show_jobs(self, snap: DashboardPublic) -> None:
        table = self.query_one("#active-jobs", FitTable)
        selected = None
        if table.row_count and table.cursor_row >= 0:
            selected = table.coordinate_to_cell_key((table.cursor_row, 0)).row_key.value
        rows = []
        for job in snap.jobs:
            marker = Text("▲", style="bold red") if job.problems else Text(" ")
            status = cells.status_text(job.status)
            if job.problems:
                status.stylize("reverse")
            rows.append((str(job.id), {
                "job": Text.assemble(marker, f"{job.id}"),
                "type": job.type,
                "company": job.company_id or "–",
                "status": status,
                "progress": lambda width, job=job: cells.progress_bar(job.done, job.failed, job.total, width=width - 5),
                "sent": Choice(f"{cells.number(job.sent)}/{cells.number(job.total)}",
                               f"{cells.short_number(job.sent)}/{cells.short_number(job.total)}"),
                "failed": Choice(cells.number(job.failed), cells.short_number(job.failed)),
                "rate": cells.rate(job.rate_per_minute),
                "recent": cells.rate(job.recent_per_minute),
                "age": cells.age(snap.now, job.created_at),
                "problem": Text("; ".join(job.flags), style="bold red"),
            }))
        table.set_rows(rows)
        if selected is not None and str(selected) in {str(job.id) for job in snap.jobs}:
            table.move_cursor(row=table.get_row_index(str(selected)), animate=False)

    def palette_commands(self) -> list[tuple[str, str, object]]:
        """The palette's "open": the selected job first."""
        table = self.query_one("#active-jobs", DataTable)
        if not table.row_count or table.cursor_row < 0:
            return []
        job_id = int(table.coordinate_to_cell_key((table.cursor_row, 0)).row_key.value)
        return [(f"Open job {job_id}", "The selected job's detail page", lambda: self.app.open_job(job_id))]

    def action_open_job(self) -> None:
        table = self.query_one("#active-jobs", DataTable)
        if table.row_count:
            self._open(table.coordinate_to_cell_key((table.cursor_row, 0)).row_key.value)

    @on(DataTable.RowSelected, "#active-jobs")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        self._open(event.row_key.value)

    def _open(self, job_id: str | None) -> None:
        if job_id is not None:
            self.app.open_job(int(job_id))
