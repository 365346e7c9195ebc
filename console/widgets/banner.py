"""The problems banner: services that do not answer, and whatever the screen flags."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import Static


class Banner(Static):
    """Shows the app's database/broker errors plus `problems`; hidden when all is well."""

    DEFAULT_CSS = """
    Banner { display: none; height: auto; max-height: 4; padding: 0 1; background: $error 30%; }
    Banner.-shown { display: block; }
    Banner.-warning-only { background: $warning 25%; }
    """
    problems: reactive[tuple[str, ...]] = reactive(tuple, always_update=True)

    def on_mount(self) -> None:
        self.watch(self.app, "db_error", lambda _: self._redraw())
        self.watch(self.app, "broker_error", lambda _: self._redraw())

    def watch_problems(self) -> None:
        self._redraw()

    def _redraw(self) -> None:
        lines: list[Text] = []
        outages = [error for error in (self.app.db_error, self.app.broker_error) if error]
        for error in outages:
            line = Text("✖ ", style="bold")
            line.append(error)
            line.append("  (retrying by itself)", style="italic")
            lines.append(line)
        problems = list(self.problems)
        if problems:
            shown = problems[:3] if not outages else problems[:1]
            line = Text("▲ ", style="bold")
            line.append(" · ".join(shown))
            if len(problems) > len(shown):
                line.append(f"  (+{len(problems) - len(shown)} more)")
            lines.append(line)
        self.set_class(bool(lines), "-shown")
        self.set_class(bool(lines) and not outages, "-warning-only")
        self.update(Text("\n").join(lines))
