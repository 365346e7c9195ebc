"""Sidekiq-style counter cards for the dashboard."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget


class Counter(Widget):
    """A label, a big number, and an optional small note under it; `alert` makes it stand out."""

    DEFAULT_CSS = """
    Counter { height: 3; border: round $primary 40%; padding: 0 1; }
    Counter.-alert { border: round $error; background: $error 15%; }
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
        text = Text(self.value, style="bold")
        if self.note:
            text.append(f" {self.note}", style="dim")
        return text
