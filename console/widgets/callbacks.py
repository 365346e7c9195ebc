"""Callbacks to Moodle and delivery rates: the deliveries pane (Job detail's Callbacks tab, the
failed callbacks on the Dead letters screen) and the words the summaries use."""

from __future__ import annotations

from datetime import datetime

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from backend.jobs.public import CallbackDeliveryPublic
from console import calls
from console.messages import ActionDone
from console.widgets import cells
from console.widgets.fit_table import Choice, Col, FitTable
from console.widgets.full_text import FullTextModal
from console.workers import WorkerResults

# The seeds' targets: a bounce rate under 2 %, callbacks delivered above 99 %.
BOUNCE_LIMIT = 0.02
CALLBACK_TARGET = 0.99

DELIVERY_STYLES = {"delivered": "green", "pending": "yellow", "failed": "bold red"}

# What goes first when the terminal is narrow is the highest `drop`.
DELIVERY_COLUMNS = (
    Col("id", "Id", justify="right"),
    Col("job", "Job", justify="right"),
    Col("kind", "Kind"),
    Col("updates", "Updates", short="Upd", justify="right", drop=3),
    Col("status", "Status"),
    Col("attempts", "Att", justify="right"),
    Col("last", "Last answer", short="Last", min=10, grow=True),
    Col("next", "Next attempt", short="Next"),
    Col("delivered", "Delivered", drop=2),
    Col("when", "Gave up", drop=1),
    Col("created", "Created", drop=4),
)
# One job's deliveries (Job detail), and the failed ones of every job (Dead letters).
JOB_DELIVERY_KEYS = ("id", "kind", "updates", "status", "attempts", "last", "next", "delivered", "created")
FAILED_DELIVERY_KEYS = ("id", "job", "kind", "updates", "attempts", "last", "when")


def kind(row: CallbackDeliveryPublic) -> str:
    return f"batch {row.batch_number}" if row.kind == "batch" and row.batch_number else row.kind


def last_answer(row: CallbackDeliveryPublic) -> Text:
    """The last attempt's error (red), else its status code (green); – before the first attempt."""
    if row.last_error:
        return Text(" ".join(row.last_error.split()), style="red")
    if row.last_status_code is not None:
        return Text(str(row.last_status_code), style="green")
    return Text("–", style="dim")


def next_attempt(now: datetime, row: CallbackDeliveryPublic) -> Choice | str:
    if row.status != "pending" or row.next_attempt_at is None:
        return "–"
    if row.next_attempt_at <= now:
        return "due now"
    wait = f"in {cells.age(row.next_attempt_at, now)}"
    return Choice(f"{row.next_attempt_at:%m-%d %H:%M} ({wait})", wait)


class DeliveryTable(FitTable):
    """Callback deliveries, one per row, with the latest answer; `failed` lists the failed
    deliveries of every job (with the job, and when each gave up) rather than one job's."""

    def __init__(self, *, failed: bool = False, **options) -> None:
        keys = FAILED_DELIVERY_KEYS if failed else JOB_DELIVERY_KEYS
        super().__init__([col for col in DELIVERY_COLUMNS if col.key in keys], cursor_type="row", zebra_stripes=True,
                         **options)
        self.deliveries: list[CallbackDeliveryPublic] = []

    def show(self, deliveries: list[CallbackDeliveryPublic], now: datetime) -> None:
        """Replace the rows; the cursor stays on the same delivery when it is still listed."""
        kept = self.selected()
        self.deliveries = list(deliveries)
        self.set_rows((str(row.id), {
            "id": str(row.id), "job": str(row.job_id), "kind": kind(row), "updates": cells.number(row.updates),
            "status": Text(row.status, style=DELIVERY_STYLES.get(row.status, "")), "attempts": str(row.attempts),
            "last": last_answer(row), "next": next_attempt(now, row), "delivered": cells.when_choice(row.delivered_at),
            "when": cells.when_choice(row.updated_at), "created": cells.when_choice(row.created_at),
        }) for row in self.deliveries)
        ids = [row.id for row in self.deliveries]
        if kept is not None and kept.id in ids:
            self.move_cursor(row=ids.index(kept.id), animate=False)

    def selected(self) -> CallbackDeliveryPublic | None:
        if not self.deliveries or self.cursor_row < 0:
            return None
        return self.deliveries[min(self.cursor_row, len(self.deliveries) - 1)]


def describe(row: CallbackDeliveryPublic) -> Text:
    """The selected delivery in full, for the line under a table that may cut it."""
    text = Text.assemble((f"callback {row.id}", "bold"), f" · job {row.job_id} · {kind(row)} · ",
                         (row.status, DELIVERY_STYLES.get(row.status, "")), f" · to {row.url}")
    if row.last_error:
        text.append(" · last error: ")
        text.append(" ".join(row.last_error.split()), style="red")
    if row.status == "pending" and row.next_attempt_at is not None:
        text.append(f" · next attempt {row.next_attempt_at:%Y-%m-%d %H:%M:%S}")
    elif row.delivered_at is not None:
        text.append(f" · delivered {row.delivered_at:%Y-%m-%d %H:%M:%S}")
    return text


def share(fraction: float) -> str:
    """83%, cut down (never rounded up to a target not met): 98.9 % reads 98%, and near the 99 %
    target with one decimal, so that 99.96 % reads 99.9%, not 100%."""
    percent = fraction * 100
    if 99 <= percent < 100:
        return f"{int(percent * 10) / 10:.1f}%"
    return f"{int(percent)}%"


def callbacks_text(stats) -> Text:
    """`callbacks 5/6 delivered (83%) · 1 failed` from a `CallbackStatsPublic`."""
    if not stats.total:
        return Text("no callbacks", style="dim")
    good = stats.delivered_share >= CALLBACK_TARGET
    text = Text.assemble("callbacks ", (f"{stats.delivered:,}/{stats.total:,} delivered ({share(stats.delivered_share)})",
                                        "green" if good else "yellow"))
    if stats.pending:
        text.append(f" · {stats.pending:,} pending", style="yellow")
    if stats.failed:
        text.append(f" · {stats.failed:,} failed", style="bold red")
    return text


def percent(value: float | None) -> str:
    return "–" if value is None else f"{value:.2%}"


def rates_text(rates, *, counts: bool = True, target: bool = True) -> Text:
    """`bounces 2.50% (30) ▲ target < 2% · complaints 0.17% (2)` from a `DeliveryRatesPublic`;
    a bounce rate at or above the seeds' 2 % is marked. `counts`, `target`: the longer forms."""
    if not rates.delivered:
        return Text("bounces – · complaints –", style="dim")
    high = rates.bounce_rate >= BOUNCE_LIMIT
    bounces = f"bounces {percent(rates.bounce_rate)}" + (f" ({rates.bounced:,})" if counts else "")
    if high:
        bounces += " ▲ target < 2%" if target else " ▲"
    text = Text.assemble((bounces, "bold red" if high else ""), " · ")
    text.append(f"complaints {percent(rates.complaint_rate)}" + (f" ({rates.complained:,})" if counts else ""))
    return text


def bounce_cell(rates) -> Text:
    """A company's bounce rate for a table cell: red from 2 %."""
    if rates is None or not rates.delivered:
        return Text("–", style="dim")
    return Text(percent(rates.bounce_rate), style="bold red" if rates.bounce_rate >= BOUNCE_LIMIT else "")


def redeliver_question(rows: list[CallbackDeliveryPublic], *, scope: str = "", total: int | None = None) -> str:
    """What a redelivery touches: how many deliveries and recipient updates, and what Moodle gets.
    `total`: how many failed ones there are when `rows` shows only some of them."""
    if len(rows) == 1 and total is None:
        row = rows[0]
        what = f"callback {row.id} ({kind(row)} of job {row.job_id}, {row.status}, {row.updates:,} recipient updates)"
    elif total is not None and total > len(rows):
        what = f"all {total:,} failed callbacks {scope}".rstrip()
    else:
        what = f"all {len(rows):,} failed callbacks {scope} ({sum(row.updates for row in rows):,} recipient updates)"
    return (f"Send {what} to Moodle again now? Moodle gets the recipients' current state, and the retry "
            "schedule starts afresh.")


class CallbacksPane(WorkerResults, Vertical):
    """A `DeliveryTable` with the selected delivery in full under it. Enter (or `open_log`) opens
    the attempt log; `ask_redeliver*` confirm, then a worker redelivers and posts ActionDone or
    ActionFailed, which reach the screen (it notifies and reloads)."""

    def __init__(self, *, table_id: str, failed: bool = False, empty: str = "", **options) -> None:
        super().__init__(**options)
        self.table_id, self.failed, self.empty = table_id, failed, empty

    def compose(self) -> ComposeResult:
        yield DeliveryTable(failed=self.failed, id=self.table_id)
        yield Static("", classes="detail-line callback-detail")

    @property
    def table(self) -> DeliveryTable:
        return self.query_one(DeliveryTable)

    def show(self, deliveries: list[CallbackDeliveryPublic], now: datetime) -> None:
        self.table.show(deliveries, now)
        self._describe()

    @on(DataTable.RowHighlighted)
    def _describe(self) -> None:
        row = self.table.selected()
        self.query_one(".callback-detail", Static).update(describe(row) if row else self.empty)

    @on(DataTable.RowSelected)
    def open_log(self) -> None:
        row = self.table.selected()
        if row is None:
            return
        reload = getattr(self.screen, "action_reload", None)
        self.app.open_callback_log(row.id, lambda changed: reload() if changed and reload else None)

    def view(self) -> None:
        """Every field of the selected delivery, whole, selectable for copying."""
        row = self.table.selected()
        if row is None:
            return
        self.app.push_screen(FullTextModal(f"Callback {row.id}", [
            ("callback", row.id), ("job", row.job_id), ("kind", kind(row)), ("status", row.status),
            ("url", row.url), ("recipient updates", row.updates), ("attempts", row.attempts),
            ("last status code", row.last_status_code), ("last error", row.last_error),
            ("next attempt", row.next_attempt_at), ("delivered", row.delivered_at), ("created", row.created_at)]))

    def ask_redeliver(self) -> None:
        row = self.table.selected()
        if row is None:
            self.notify("Select a callback first.", severity="warning")
            return
        self.screen.confirm("Redeliver callback", redeliver_question([row]), lambda: self.redeliver([row.id]),
                            label="Redeliver")

    def ask_redeliver_failed(self, *, job_id: int | None = None, total: int | None = None) -> None:
        """Every failed delivery of `job_id`, or of every job; `total` when the table shows only some."""
        failed = [row for row in self.table.deliveries if row.status == "failed"]
        count = total if total is not None else len(failed)
        scope = f"of job {job_id}" if job_id is not None else "of every job"
        if not count:
            self.notify(f"There are no failed callbacks {scope}.", severity="warning")
            return
        self.screen.confirm("Redeliver failed callbacks", redeliver_question(failed, scope=scope, total=total),
                            lambda: self.redeliver(failed_of_job=job_id, every_failed=job_id is None),
                            label=f"Redeliver {count:,}")

    @work(thread=True, exclusive=True, exit_on_error=False, group="callback-redeliver")
    def redeliver(self, delivery_ids: list[int] = (), failed_of_job: int | None = None,
                  every_failed: bool = False) -> ActionDone:
        done, note = calls.redeliver_callbacks(self, delivery_ids=list(delivery_ids), failed_of_job=failed_of_job,
                                               every_failed=every_failed)
        return ActionDone("redeliver", f"{len(done):,} callback(s) due now" + (f"; {note}" if note else "") + ".")
