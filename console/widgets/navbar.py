"""The top line: the main screens with their number keys, who is signed in, the mode and the time."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

# (mode, long label, short label); the number key is the position + 1.
MAIN_SCREENS = (
    ("dashboard", "Dashboard", "Dash"),
    ("history", "History", "History"),
    ("bulk", "Bulk email", "Bulk"),
    ("companies", "Companies", "Companies"),
    ("deadletters", "Dead letters", "Dead"),
    ("audit", "Audit", "Audit"),
)


class NavBar(Widget):
    """Not focusable: number keys (app bindings) and the palette do the switching."""

    DEFAULT_CSS = """
    NavBar { height: 1; dock: top; background: $panel; }
    """
    current: reactive[str] = reactive("dashboard")

    def __init__(self, current: str, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.current = current

    def on_mount(self) -> None:
        self.watch(self.app, "clock_text", lambda _: self.refresh())

    def render(self) -> Text:
        width = self.size.width
        compact = width < 110
        text = Text(" mani ", style="bold reverse")
        text.append(" ")
        for index, (mode, long_label, short_label) in enumerate(MAIN_SCREENS, start=1):
            label = short_label if compact else long_label
            if mode == self.current:
                text.append(f"{index} {label}", style="bold reverse")
            else:
                text.append(f"{index}", style="bold")
                text.append(f" {label}", style="dim")
            text.append(" ")
        app = self.app
        mode = "read-only" if app.read_only else "full access"
        right = Text()
        if compact:
            right.append("RO" if app.read_only else "RW", style="bold yellow" if app.read_only else "bold green")
            right.append(f" {app.clock_text[-5:]} ")
        else:
            right.append(f"{app.config.actor} · ")
            right.append(mode, style="bold yellow" if app.read_only else "bold green")
            right.append(f" · {app.clock_text} UTC ")
        padding = width - text.cell_len - right.cell_len
        if padding > 0:
            text.append(" " * padding)
            text.append_text(right)
        text.truncate(width)
        return text
