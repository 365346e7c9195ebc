"""One callback delivery to Moodle and every attempt made: when, the status code, how long it
took, the error and the first bytes of Moodle's answer."""

from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable, Static

from backend.jobs import queries
from backend.jobs.public import CallbackAttemptPublic, CallbackDeliveryPublic
from console import calls
from console.messages import ActionDone
from console.screens.base import ManiScreen
from console.widgets import cells
from console.widgets.callbacks import DELIVERY_STYLES, kind, redeliver_question
from console.widgets.fit_table import Col, FitTable

# What goes first when the terminal is narrow is the highest `drop`.
ATTEMPT_COLUMNS = (
    Col("number", "#", justify="right"),
    Col("started", "Started"),
    Col("code", "Code", justify="right"),
    Col("duration", "Took", justify="right"),
    Col("updates", "Updates", short="Upd", justify="right", drop=2),
    Col("error", "Error", min=10, max=32),
    Col("answer", "Answer", min=10, grow=True, drop=1),
)


def _one_line(text: str | None) -> str:
    return " ".join((text or "").split())


class LogLoaded(Message):
    """One delivery and every attempt made, oldest first."""

    def __init__(self, delivery: CallbackDeliveryPublic, attempts: list[CallbackAttemptPublic]) -> None:
        super().__init__()
        self.delivery, self.attempts = delivery, attempts


class CallbackLogScreen(ManiScreen):
    HELP = """\
**Callback attempt log.** One signed callback to Moodle and every attempt made: when it
started, the HTTP status code, how long it took, how many recipient updates it carried, the
error and the start of Moodle's answer (in full under the table for the selected attempt).
A failed delivery is retried on a schedule spanning a day; `r` sends it again now, with a
fresh schedule, and Moodle gets the recipients' current state. `j` opens the job."""

    BINDINGS = [
        Binding("escape", "back", "Back", id="callback.back", tooltip="Back to the previous screen"),
        Binding("r", "redeliver", "Redeliver", id="callback.redeliver",
                tooltip="Send this callback to Moodle again now, with a fresh retry schedule"),
        Binding("j", "open_job", "Open job", id="callback.job", tooltip="Open the job this callback reports on"),
        Binding("ctrl+r,f5", "reload", "Refresh", id="callback.refresh", tooltip="Read the attempts again"),
    ]

    def __init__(self, delivery_id: int) -> None:
        super().__init__()
        self.delivery_id = delivery_id
        self.delivery: CallbackDeliveryPublic | None = None
        self.attempts: list[CallbackAttemptPublic] = []
        self.changed = False
        self.NAV = "dashboard"

    def compose_body(self) -> ComposeResult:
        self.NAV = self.app.current_mode
        yield Static("Loading…", id="callback-summary")
        table = FitTable(ATTEMPT_COLUMNS, id="attempts", cursor_type="row", zebra_stripes=True)
        table.border_title = "Attempts"
        yield table
        yield Static("", id="attempt-detail")

    def on_mount(self) -> None:
        self.query_one("#attempts").focus()
        self.load()

    def action_reload(self) -> None:
        self.load()

    @work(thread=True, exclusive=True, exit_on_error=False, group="callback-log")
    def load(self) -> LogLoaded:
        return LogLoaded(*calls.read(self, queries.delivery_log, delivery_id=self.delivery_id))

    @on(LogLoaded)
    def _loaded(self, message: LogLoaded) -> None:
        self.delivery, self.attempts = message.delivery, message.attempts
        row, now = self.delivery, self.app.config.clock()
        self.sub_title = f"callback {row.id}"
        status = Text(row.status, style=DELIVERY_STYLES.get(row.status, ""))
        head = Text.assemble((f"Callback {row.id}", "bold"), f" · job {row.job_id} · {kind(row)} · "
                             f"{row.updates:,} recipient updates · ", status,
                             f" · {row.attempts:,} attempt{'s' if row.attempts != 1 else ''}")
        when = [f"created {row.created_at:%Y-%m-%d %H:%M:%S}"]
        if row.status == "pending" and row.next_attempt_at:
            wait = "due now" if row.next_attempt_at <= now else f"in {cells.age(row.next_attempt_at, now)}"
            when.append(f"next attempt {row.next_attempt_at:%Y-%m-%d %H:%M:%S} ({wait})")
        if row.delivered_at:
            when.append(f"delivered {row.delivered_at:%Y-%m-%d %H:%M:%S}")
        if row.status == "failed":
            when.append("the retry schedule is used up: r sends it again")
        self.query_one("#callback-summary", Static).update(
            Text("\n").join([head, Text(f"to {row.url}"), Text(" · ".join(when), style="dim")]))
        table = self.query_one("#attempts", FitTable)
        table.set_rows((str(a.number), {
            "number": str(a.number), "started": cells.when_choice(a.started_at, seconds=True),
            "code": Text(str(a.status_code) if a.status_code is not None else "–",
                         style="green" if a.error is None else "red"),
            "duration": f"{a.duration_ms:,} ms", "updates": cells.number(a.update_count),
            "error": Text(_one_line(a.error), style="red") if a.error else Text("ok", style="green"),
            "answer": _one_line(a.response_excerpt) or "–",
        }) for a in self.attempts)
        table.border_title = f"Attempts ({len(self.attempts):,})"
        if self.attempts:
            table.move_cursor(row=len(self.attempts) - 1, animate=False)  # the latest says most
        self._describe()

    @on(DataTable.RowHighlighted, "#attempts")
    def _describe(self) -> None:
        table = self.query_one("#attempts", FitTable)
        detail = self.query_one("#attempt-detail", Static)
        if not self.attempts or table.cursor_row < 0:
            detail.update(Text("No attempt yet: the first one is made as soon as a worker picks it up.", style="dim"))
            return
        a = self.attempts[min(table.cursor_row, len(self.attempts) - 1)]
        text = Text.assemble((f"attempt {a.number}", "bold"), f" · {a.started_at:%Y-%m-%d %H:%M:%S} · ",
                             f"HTTP {a.status_code}" if a.status_code is not None else "no answer",
                             f" · {a.duration_ms:,} ms · {a.update_count:,} updates")
        if a.error:
            text.append("\nerror: ", style="bold")
            text.append(a.error, style="red")
        if a.response_excerpt:
            text.append("\nanswer: ", style="bold")
            text.append(a.response_excerpt)
        detail.update(text)

    # Actions ------------------------------------------------------------------------------------

    def action_back(self) -> None:
        self.dismiss(self.changed)

    def action_open_job(self) -> None:
        if self.delivery is not None:
            self.app.open_job(self.delivery.job_id)

    def action_redeliver(self) -> None:
        if self.delivery is None:
            return
        self.confirm("Redeliver callback", redeliver_question([self.delivery]), self.redeliver, label="Redeliver")

    @work(thread=True, exclusive=True, exit_on_error=False, group="callback-log-action")
    def redeliver(self) -> ActionDone:
        _, note = calls.redeliver_callbacks(self, delivery_ids=[self.delivery_id])
        return ActionDone("redeliver", f"Callback {self.delivery_id} is due now" + (f"; {note}" if note else "") + ".")

    def after_action(self, message: ActionDone) -> None:
        self.changed = True
        self.load()
