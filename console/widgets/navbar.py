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
    ("schedules", "Schedules", "Sched"),
)


class NavBar(Widget):
    """Not focusable: number keys (app bindings) and the palette do the switching.

    Every tab is padded by one cell on each side, so tabs are always two cells apart; the
    current one is a filled block. The labels and the right-hand side shrink, in steps, to
    what the width allows: the date, the actor, long labels, the name, the time; the mode stays."""

    COMPONENT_CLASSES = {"navbar--brand", "navbar--key", "navbar--tab", "navbar--active", "navbar--rw", "navbar--ro"}
    DEFAULT_CSS = """
    NavBar {
        height: 1;
        dock: top;
        background: $panel;
        color: $text-muted;
        & > .navbar--brand { color: $text-primary; text-style: bold; }
        & > .navbar--key { color: $text-accent; text-style: bold; }
        & > .navbar--tab { color: $text-muted; }
        & > .navbar--active { background: $primary; color: $text; text-style: bold; }
        & > .navbar--rw { color: $text-success; text-style: bold; }
        & > .navbar--ro { color: $text-warning; text-style: bold; }
    }
    """
    current: reactive[str] = reactive("dashboard")

    def __init__(self, current: str, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.current = current

    def on_mount(self) -> None:
        self.watch(self.app, "clock_text", lambda _: self.refresh())

    def _tabs(self, short: bool, brand: bool = True) -> Text:
        style = self.get_component_rich_style
        text = Text(end="")
        if brand:
            text.append(" mani ", style=style("navbar--brand"))
            text.append(" ")
        for index, (mode, long_label, short_label) in enumerate(MAIN_SCREENS, start=1):
            label = short_label if short else long_label
            if mode == self.current:
                active = style("navbar--active")
                text.append(f" {index} {label} ", style=active)
            else:
                text.append(" ")
                text.append(str(index), style=style("navbar--key"))
                text.append(f" {label} ", style=style("navbar--tab"))
        return text

    def _status(self, level: int) -> Text:
        """0: actor · mode · date time UTC; 1: actor · mode · time; 2: mode · time; 3: mode."""
        app = self.app
        mode = Text("read-only" if app.read_only else "full access",
                    style=self.get_component_rich_style("navbar--ro" if app.read_only else "navbar--rw"))
        clock = app.clock_text
        parts: list[Text] = []
        if level <= 1:
            parts.append(Text(app.config.actor))
        parts.append(mode)
        if level == 0:
            parts.append(Text(f"{clock} UTC"))
        elif level <= 2:
            parts.append(Text(clock[-5:]))
        text = Text(" · ").join(parts)
        text.append(" ")
        return text

    def render(self) -> Text:
        width = self.size.width
        steps = ((False, 0, True), (False, 1, True), (False, 2, True), (True, 1, True), (True, 2, True),
                 (True, 2, False), (True, 3, False))
        for short, level, brand in steps:
            left, right = self._tabs(short, brand), self._status(level)
            if left.cell_len + 1 + right.cell_len <= width:
                break
        gap = max(width - left.cell_len - right.cell_len, 0)
        text = left
        text.append(" " * gap)
        text.append_text(right)
        text.truncate(width)
        return text
