"""Full text on demand: one row's every field, whole, wrapped and selectable for copying.

Tables cut long values (an SMTP error, Moodle's answer, a rejection reason) to fit. Enter or
`v` on a recipient, a batch, a dead letter, a rejection, a callback or an audit entry opens this
panel, which shows them whole.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static, TextArea

Field = tuple[str, object]


def field_text(value: object) -> str:
    """A field's value as the panel shows it: whole, `–` when empty."""
    if value is None or value == "":
        return "–"
    if isinstance(value, datetime):
        return f"{value:%Y-%m-%d %H:%M:%S %Z}".strip()
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value)) or "–"
    return str(value)


def fields_text(fields: Iterable[Field]) -> str:
    """`label: value`, one field a line; a value of several lines keeps them, indented."""
    lines = []
    for label, value in fields:
        first, *rest = field_text(value).splitlines() or ["–"]
        lines.append(f"{label}: {first}")
        lines.extend(f"    {line}" for line in rest)
    return "\n".join(lines)


class FullTextModal(ModalScreen[None]):
    """A read-only text area (it wraps; shift+arrows or the mouse select; ctrl+c copies)."""

    BINDINGS = [
        Binding("escape,v", "close", "Close", id="fulltext.close", tooltip="Close the panel"),
    ]

    def __init__(self, title: str, fields: Iterable[Field]) -> None:
        super().__init__()
        self.title_text = title
        self.text = fields_text(fields)

    def compose(self) -> ComposeResult:
        with Vertical(classes="modal-body full-text") as body:
            body.border_title = self.title_text
            area = TextArea(self.text, read_only=True, soft_wrap=True, show_cursor=True, id="full-text-area",
                            compact=True)
            yield area
            yield Static("shift+arrows select · f7 selects all · ctrl+c copies · Esc closes", classes="full-text-hint")

    def on_mount(self) -> None:
        self.query_one(TextArea).focus()

    def action_close(self) -> None:
        self.dismiss(None)
