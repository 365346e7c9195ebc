"""Sidekiq-style counter cards for the dashboard."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget


class Counter(Widget):
    """A label (the card's title), a big number and an optional note after it, as in
    `100/m · avg 44/m`; `alert` makes it stand out. A note too long for the card is cut."""

    DEFAULT_CSS = """
    Counter {
        height: 3;
        border: round $primary 40%;
        border-title-color: $text-primary;
        padding: 0 1;
    }
    Counter.-alert { border: round $error; border-title-color: $text-error; background: $error 15%; }
    """
    value: reactive[str] = reactive("–")
    note: reactive[str] = reactive("")
    alert: reactive[bool] = reactive(False)

    def __init__(self, label: str, *, id: str | None = None, tooltip: str | None = None) -> None:
        super().__init__(id=id)
        self.border_title = label
        self.label = label
        if tooltip:
            self.tooltip = tooltip

    def watch_alert(self, alert: bool) -> None:
        self.set_class(alert, "-alert")

    def render(self) -> Text:
        # The separator ends the value's segment rather than starting the note's: some SVG
        # renderers drop a text element's leading spaces.
        text = Text(self.value + (" " if self.note else ""), style="bold", no_wrap=True, end="")
        if self.note:
            text.append(f"· {self.note}", style="dim")
        width = self.content_size.width
        if width and text.cell_len > width:
            text.truncate(width, overflow="ellipsis")
        return text
