"""What gave up: broker messages that exhausted their retries (requeue or delete them), and
callbacks to Moodle that used up their retry schedule (read their attempts, redeliver them)."""

from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable, Static

from backend.jobs.public import CallbackDeliveryPublic
from backend.jobs.queries import failed_deliveries
from backend.ops import deadletters
from backend.ops.deadletters import DeadLetter
from console import calls
from console.messages import ActionDone
from console.screens.base import ManiScreen
from console.widgets import cells
from console.widgets.callbacks import CallbacksPane
from console.widgets.fit_table import Col, FitTable
from console.widgets.full_text import FullTextModal

# What goes first when the terminal is narrow is the highest `drop`.
COLUMNS = (
    Col("died", "Died"),
    Col("queue", "Queue", max=16, drop=2),
    Col("actor", "Actor", max=24),
    Col("arguments", "Arguments", short="Args", min=6, max=16, drop=3),
    Col("retries", "Retries", short="Try", justify="right", drop=1),
    Col("error", "Error", min=16, grow=True),
)
# Footer groups: "rR Requeue 1/all" takes less room than two entries.
REQUEUE = Binding.Group("Requeue 1/all", compact=True)
DELETE = Binding.Group("Delete 1/all", compact=True)
REDELIVER = Binding.Group("Redeliver", compact=True)
# Keys that act on the focused table: broker messages, or failed callbacks.
LETTER_ACTIONS = {"requeue", "requeue_all", "delete", "delete_all"}
CALLBACK_ACTIONS = {"redeliver", "redeliver_all", "open_delivery"}


class LettersLoaded(Message):
    """The broker's dead letters; `kind` is the broker's ("redis", "stub", "none")."""

    def __init__(self, kind: str, letters: list[DeadLetter]) -> None:
        super().__init__()
        self.kind, self.letters = kind, letters


class FailedCallbacksLoaded(Message):
    """The newest failed callback deliveries of every job, and how many there are in all."""

    def __init__(self, rows: list[CallbackDeliveryPublic], total: int) -> None:
        super().__init__()
        self.rows, self.total = rows, total


class DeadLettersScreen(ManiScreen):
    NAV = "deadletters"
    HELP = """\
**Dead letters.** What gave up. On top, messages the workers gave up on after their retries
(Redis keeps them a week): `r` requeues the selected (with a fresh retry count), `R` all; `d`
deletes the selected, `D` all. The database stays the source of truth, so a requeued batch
that was already finished is simply skipped. Below, **failed callbacks**: deliveries to Moodle
that used up their retry schedule (a day). `Tab` moves there; Enter opens the attempt log, `r`
redelivers the selected, `R` all of them. Each asks first."""

    BINDINGS = [
        Binding("r", "requeue", "Requeue", id="dead.requeue", tooltip="Put the selected message back on its queue",
                group=REQUEUE),
        Binding("R", "requeue_all", "Requeue all", id="dead.requeue_all", tooltip="Put every dead letter back",
                group=REQUEUE),
        Binding("d", "delete", "Delete", id="dead.delete", tooltip="Drop the selected message for good",
                group=DELETE),
        Binding("D", "delete_all", "Delete all", id="dead.delete_all", tooltip="Drop every dead letter for good",
                group=DELETE),
        Binding("r", "redeliver", "Redeliver", id="dead.redeliver", group=REDELIVER,
                tooltip="Failed callbacks: send the selected callback to Moodle again"),
        Binding("R", "redeliver_all", "Redeliver all", id="dead.redeliver_all", group=REDELIVER,
                tooltip="Failed callbacks: send every failed callback again"),
        Binding("enter", "open_delivery", "Attempts", id="dead.callback_log",
                tooltip="Failed callbacks: open the selected callback's attempt log"),
        Binding("v", "view", "Full text", id="dead.view",
                tooltip="Every field of the selected dead letter or callback, whole, selectable (Enter too)"),
        Binding("ctrl+r,f5", "reload", "Refresh", id="dead.refresh", tooltip="Read the dead letters again"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.letters: list[DeadLetter] = []
        self.kind = ""
        self.failed_total: int | None = None

    def compose_body(self) -> ComposeResult:
        table = FitTable(COLUMNS, id="dead-letters", cursor_type="row", zebra_stripes=True)
        table.border_title = "Dead letters"
        yield table
        yield Static("", id="dead-error", classes="detail-line")
        pane = CallbacksPane(table_id="failed-callbacks", failed=True, id="failed-callbacks-pane",
                             empty="No failed callbacks: every callback to Moodle was delivered or is still retrying.")
        yield pane
        yield Static("", id="dead-status", classes="status-line")

    def on_mount(self) -> None:
        self.query_one("#dead-letters").focus()

    # Which table the keys act on -----------------------------------------------------------------

    def _on_callbacks(self) -> bool:
        return self.focused is not None and self.focused.id == "failed-callbacks"

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in CALLBACK_ACTIONS:
            return self._on_callbacks()
        if action in LETTER_ACTIONS:
            return not self._on_callbacks()
        return True

    def on_descendant_focus(self) -> None:
        self.refresh_bindings()
        self._show_status()

    def action_redeliver(self) -> None:
        self.query_one(CallbacksPane).ask_redeliver()

    def action_redeliver_all(self) -> None:
        self.query_one(CallbacksPane).ask_redeliver_failed(total=self.failed_total)

    def action_open_delivery(self) -> None:
        self.query_one(CallbacksPane).open_log()

    def on_screen_resume(self) -> None:
        self.load()

    def action_reload(self) -> None:
        self.load()

    def load(self) -> None:
        # Two workers: the failed callbacks live in the database, so they are shown even when the
        # broker does not answer.
        self.load_letters()
        self.load_callbacks()

    @work(thread=True, exclusive=True, exit_on_error=False, group="dead-letters")
    def load_letters(self) -> LettersLoaded:
        stats = calls.broker(self, deadletters.broker_stats)
        return LettersLoaded(stats.kind, calls.broker(self, deadletters.list_dead_letters))

    @work(thread=True, exclusive=True, exit_on_error=False, group="dead-letters-callbacks")
    def load_callbacks(self) -> FailedCallbacksLoaded:
        return FailedCallbacksLoaded(*calls.read(self, failed_deliveries))

    @on(FailedCallbacksLoaded)
    def _callbacks_loaded(self, message: FailedCallbacksLoaded) -> None:
        self._show_callbacks(message.rows, message.total)

    @on(LettersLoaded)
    def _loaded(self, message: LettersLoaded) -> None:
        self.kind, self.letters = message.kind, message.letters
        table = self.query_one("#dead-letters", FitTable)
        keep = table.cursor_row
        table.set_rows((letter.key, {
            "died": cells.when_choice(letter.dead_at), "queue": letter.queue, "actor": letter.actor,
            "arguments": letter.arguments, "retries": str(letter.retries),
            "error": Text(" ".join((letter.error or "").split()), style="red"),
        }) for letter in self.letters)
        if self.letters:
            table.move_cursor(row=min(max(keep, 0), len(self.letters) - 1), animate=False)
        self._show_status()
        self._show_error()

    def _show_callbacks(self, rows: list, total: int) -> None:
        first = self.failed_total is None
        self.failed_total = total
        pane = self.query_one(CallbacksPane)
        pane.show(rows, self.app.config.clock())
        shown = f"{len(rows):,} newest of {total:,}" if total > len(rows) else f"{total:,}"
        pane.table.border_title = f"Failed callbacks ({shown})" if total else "Failed callbacks"
        pane.set_class(not total, "-empty")
        if first and total and not self.letters and self.focused is self.query_one("#dead-letters"):
            pane.table.focus()  # nothing above needs a look: start where the work is
        self._show_status()

    def _show_status(self) -> None:
        letters = ("no dead-letter queue on the embedded broker" if self.kind == "none" else
                   f"{len(self.letters):,} dead letter(s) in the {self.kind or '…'} broker")
        callbacks = f"{self.failed_total or 0:,} failed callback(s)"
        other = "⏎ attempt log · tab: the dead letters" if self._on_callbacks() else "tab: the failed callbacks"
        self.query_one("#dead-status", Static).update(f"{letters} · {callbacks} · {other}")

    @on(DataTable.RowHighlighted, "#dead-letters")
    def _show_error(self) -> None:
        letter = self._selected()
        if letter is not None:
            text = Text.assemble(("error: ", "bold"), letter.error, (f" · message {letter.message_id}", "dim"))
        elif self.kind == "none":
            # Below the empty table, where it has room to wrap.
            text = Text("Embedded default: the broker is in-process, so there is no shared dead-letter queue. "
                        "Set MANI_REDIS_URL to run distributed.")
        else:
            text = Text("")
        self.query_one("#dead-error", Static).update(text)

    @on(DataTable.RowSelected, "#dead-letters")
    def action_view(self) -> None:
        if self._on_callbacks():
            self.query_one(CallbacksPane).view()
            return
        letter = self._selected()
        if letter is not None:
            self.app.push_screen(FullTextModal(f"Dead letter {letter.message_id}", [
                ("queue", letter.queue), ("actor", letter.actor), ("arguments", letter.arguments),
                ("error", letter.error), ("died", letter.dead_at), ("retries", letter.retries),
                ("message id", letter.message_id), ("key", letter.key)]))

    def _selected(self) -> DeadLetter | None:
        table = self.query_one("#dead-letters", DataTable)
        if not self.letters or table.cursor_row < 0:
            return None
        return self.letters[min(table.cursor_row, len(self.letters) - 1)]

    def _ask(self, *, requeue: bool, every: bool) -> None:
        letter = self._selected()
        if not self.letters or (not every and letter is None):
            self.notify("There are no dead letters.", severity="warning")
            return
        verb = "Requeue" if requeue else "Delete"
        if every:
            question = f"{verb} all {len(self.letters):,} dead letters?"
        else:
            question = f"{verb} 1 dead letter ({letter.actor}{'(' + letter.arguments + ')' if letter.arguments else ''})?"
        if not requeue:
            question += " Deleted messages are gone for good (the sweeper still finds unfinished work in the store)."
        keys = None if every else [letter.key]
        self.confirm(f"{verb} dead letters", question, lambda: self.move(keys, requeue, len(self.letters) if every else 1),
                     label=verb, danger=not requeue)

    def action_requeue(self) -> None:
        self._ask(requeue=True, every=False)

    def action_requeue_all(self) -> None:
        self._ask(requeue=True, every=True)

    def action_delete(self) -> None:
        self._ask(requeue=False, every=False)

    def action_delete_all(self) -> None:
        self._ask(requeue=False, every=True)

    @work(thread=True, exclusive=True, exit_on_error=False, group="dead-letters-action")
    def move(self, keys: list[str] | None, requeue: bool, expected: int) -> ActionDone:
        letters = {letter.key: letter for letter in self.letters}
        fn = deadletters.requeue if requeue else deadletters.delete
        action = "deadletter.requeue" if requeue else "deadletter.delete"
        count = calls.broker(self, fn, change=True, keys=keys)

        def audit(*, session) -> None:
            details = {"count": count}
            if keys and keys[0] in letters:
                details.update(deadletters.describe(letters[keys[0]]))
            calls.audit(self, session=session, action=action, target=keys[0] if keys else "all", details=details)

        calls.write(self, audit)
        verb = "Requeued" if requeue else "Deleted"
        return ActionDone(action, f"{verb} {count:,} dead letter(s).")

    def after_action(self, message: ActionDone) -> None:
        self.load()
