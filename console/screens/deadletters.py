"""Broker messages that exhausted their retries: see why, then requeue or delete them."""

from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Static

from backend import deadletters
from backend.deadletters import DeadLetter
from console import calls
from console.messages import ActionDone, ActionFailed, Loaded
from console.screens.base import ManiScreen
from console.widgets import cells
from console.widgets.fit_table import Col, FitTable

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


class DeadLettersScreen(ManiScreen):
    NAV = "deadletters"
    HELP = """\
**Dead letters.** Messages the workers gave up on after their retries (Redis keeps them a week).
Requeueing one puts it back on its queue with a fresh retry count; the database stays the
source of truth, so a requeued batch that was already finished is simply skipped.
`r` requeue the selected, `R` all; `d` delete the selected, `D` all. Each asks first."""

    BINDINGS = [
        Binding("r", "requeue", "Requeue", id="dead.requeue", tooltip="Put the selected message back on its queue",
                group=REQUEUE),
        Binding("R", "requeue_all", "Requeue all", id="dead.requeue_all", tooltip="Put every dead letter back",
                group=REQUEUE),
        Binding("d", "delete", "Delete", id="dead.delete", tooltip="Drop the selected message for good",
                group=DELETE),
        Binding("D", "delete_all", "Delete all", id="dead.delete_all", tooltip="Drop every dead letter for good",
                group=DELETE),
        Binding("ctrl+r,f5", "reload", "Refresh", id="dead.refresh", tooltip="Read the dead letters again"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.letters: list[DeadLetter] = []
        self.kind = ""

    def compose_body(self) -> ComposeResult:
        table = FitTable(COLUMNS, id="dead-letters", cursor_type="row", zebra_stripes=True)
        table.border_title = "Dead letters"
        yield table
        yield Static("", id="dead-error", classes="detail-line")
        yield Static("", id="dead-status", classes="status-line")

    def on_mount(self) -> None:
        self.query_one(DataTable).focus()

    def on_screen_resume(self) -> None:
        self.load()

    def action_reload(self) -> None:
        self.load()

    @work(thread=True, exclusive=True, group="dead-letters")
    def load(self) -> None:
        try:
            stats = calls.broker(self, deadletters.broker_stats)
            letters = calls.broker(self, deadletters.list_dead_letters)
        except Exception as error:  # noqa: BLE001
            self.post_message(ActionFailed("load", calls.explain(error)))
            return
        self.post_message(Loaded("letters", (stats.kind, letters)))

    @on(Loaded)
    def _loaded(self, message: Loaded) -> None:
        self.kind, self.letters = message.data
        table = self.query_one(FitTable)
        keep = table.cursor_row
        table.set_rows((letter.key, {
            "died": cells.when_choice(letter.dead_at), "queue": letter.queue, "actor": letter.actor,
            "arguments": letter.arguments, "retries": str(letter.retries),
            "error": Text(" ".join((letter.error or "").split()), style="red"),
        }) for letter in self.letters)
        if self.letters:
            table.move_cursor(row=min(max(keep, 0), len(self.letters) - 1), animate=False)
        status = self.query_one("#dead-status", Static)
        if self.kind == "none":
            status.update("no dead-letter queue on the embedded broker")
        else:
            status.update(f"{len(self.letters):,} dead letter(s) in the {self.kind} broker · r/R requeue · d/D delete")
        self._show_error()

    @on(DataTable.RowHighlighted)
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

    def _selected(self) -> DeadLetter | None:
        table = self.query_one(DataTable)
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

    @work(thread=True, exclusive=True, group="dead-letters-action")
    def move(self, keys: list[str] | None, requeue: bool, expected: int) -> None:
        letters = {letter.key: letter for letter in self.letters}
        fn = deadletters.requeue if requeue else deadletters.delete
        action = "deadletter.requeue" if requeue else "deadletter.delete"
        try:
            count = calls.broker(self, fn, change=True, keys=keys)

            def audit(*, session) -> None:
                details = {"count": count}
                if keys and keys[0] in letters:
                    details.update(deadletters.describe(letters[keys[0]]))
                calls.audit(self, session=session, action=action, target=keys[0] if keys else "all", details=details)

            calls.write(self, audit)
        except Exception as error:  # noqa: BLE001
            self.post_message(ActionFailed(action, calls.explain(error)))
            return
        verb = "Requeued" if requeue else "Deleted"
        self.post_message(ActionDone(action, f"{verb} {count:,} dead letter(s)."))

    def after_action(self, message: ActionDone) -> None:
        self.load()
