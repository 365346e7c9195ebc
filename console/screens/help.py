"""`?`: what the current screen is for, and every key it (and the app) answers to."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Markdown, Static

GLOBAL_HELP = """\
**Everywhere:** `1`–`6` switch screens · `?` help · `q` quit · `ctrl+p` command palette ·
`Escape` back · `/` filter or search · `Enter` open. Every change asks first and is written to
the audit log with your OS user."""


class HelpScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape,question_mark,q", "dismiss", "Close", id="help.close", tooltip="Close the help"),
    ]

    def __init__(self, screen: Screen) -> None:
        super().__init__()
        self.for_screen = screen

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="modal-body", id="help-body") as body:
            body.border_title = "Help"
            text = getattr(self.for_screen, "HELP", "")
            if text:
                yield Markdown(text, id="help-screen-text")
            yield Markdown(GLOBAL_HELP, id="help-global")
            table = DataTable(id="help-keys", cursor_type="row", zebra_stripes=True, show_cursor=False)
            table.add_columns("Key", "Does")
            yield table
            yield Static("Escape closes this help.", classes="dim")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        seen = set()
        for key, active in self.for_screen.active_bindings.items():
            binding = active.binding
            if binding.action in seen and not binding.description:
                continue
            seen.add(binding.action)
            label = binding.key_display or self.app.get_key_display(binding)
            table.add_row(Text(label, style="bold"), binding.tooltip or binding.description)

    def action_dismiss(self) -> None:
        self.dismiss(None)
