"""How values look in tables: status colours, progress bars, numbers, ages and rates."""

from __future__ import annotations

from datetime import datetime

from rich.text import Text

from backend.jobs.queries import format_duration
from console.widgets.fit_table import Choice

STATUS_STYLES = {
    "pending": "dim",
    "queued": "cyan",
    "processing": "bold blue",
    "retry_pending": "yellow",
    "paused": "magenta",
    "completed": "green",
    "sent": "green",
    "partial_failure": "bold yellow",
    "failed": "bold red",
    "permanently_failed": "bold red",
    "bounced": "red",
    "complained": "red",
    "cancelled": "dim strike",
    "skipped": "dim",
    "suppressed": "dim yellow",
}


def status_text(status: str) -> Text:
    return Text(status, style=STATUS_STYLES.get(status, ""))


def number(value: int | float | None) -> str:
    if value is None:
        return "–"
    return f"{value:,.0f}"


def short_number(value: int | float) -> str:
    """12,345 -> 12.3k; for narrow columns."""
    value = float(value)
    for unit, size in (("M", 1_000_000), ("k", 1_000)):
        if abs(value) >= size:
            text = f"{value / size:.1f}".rstrip("0").rstrip(".")
            return f"{text}{unit}"
    return f"{value:.0f}"


def rate(per_minute: float | None) -> str:
    if per_minute is None:
        return "–"
    return f"{short_number(per_minute)}/m"


def age(now: datetime, then: datetime | None) -> str:
    if then is None:
        return "–"
    return format_duration((now - then).total_seconds())


def when_choice(value: datetime | None, *, seconds: bool = False) -> Choice | str:
    """A time for a table column that may be narrow: the year goes first, then the seconds."""
    if value is None:
        return "–"
    forms = ["%Y-%m-%d %H:%M:%S", "%m-%d %H:%M:%S", "%m-%d %H:%M"] if seconds else ["%Y-%m-%d %H:%M", "%m-%d %H:%M"]
    return Choice(*(value.strftime(form) for form in forms))


def progress_bar(done: int, failed: int, total: int, *, width: int = 10) -> Text:
    """A bar of `width` cells: sent in green, failed in red, the rest dim; then the percentage."""
    text = Text()
    if total <= 0:
        text.append("─" * width, style="dim")
        text.append("   – ")
        return text
    sent_cells = round(width * min(max(done - failed, 0), total) / total)
    failed_cells = min(round(width * min(failed, total) / total), width - sent_cells)
    if failed and failed_cells == 0 and sent_cells < width:
        failed_cells = 1
    text.append("█" * sent_cells, style="green")
    text.append("█" * failed_cells, style="red")
    text.append("░" * (width - sent_cells - failed_cells), style="dim")
    text.append(f" {min(done, total) * 100 // total:>3}%")
    return text


def ellipsis(value: str | None, width: int) -> str:
    value = (value or "").replace("\n", " ")
    return value if len(value) <= width else value[: max(width - 1, 0)] + "…"
