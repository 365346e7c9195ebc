"""`mani-console`: the admin's Textual console for jobs, bulk email, company settings and retries."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from textual import on
from textual.app import App
from textual.binding import Binding
from textual.reactive import reactive

from backend.core import secrets
from console.commands import ManiCommands
from console.config import ConsoleConfig
from console.messages import HealthReport
from console.screens.audit import AuditScreen
from console.screens.bulk import BulkScreen
from console.screens.callback_log import CallbackLogScreen
from console.screens.companies import CompaniesScreen
from console.screens.dashboard import DashboardScreen
from console.screens.deadletters import DeadLettersScreen
from console.screens.help import HelpScreen
from console.screens.history import HistoryScreen
from console.screens.job_detail import JobDetailScreen
from console.screens.schedules import SchedulesScreen
from console.widgets.navbar import MAIN_SCREENS


def _screen_bindings() -> list[Binding]:
    return [
        Binding(str(number), f"switch_mode('{mode}')", label, show=False, id=f"screen.{mode}",
                tooltip=f"Switch to the {label} screen")
        for number, (mode, label, _) in enumerate(MAIN_SCREENS, start=1)
    ]


class ManiConsole(App):
    TITLE = "mani"
    SUB_TITLE = "bulk email and certificates for Moodle/IOMAD"
    CSS_PATH = "app.tcss"
    COMMANDS = App.COMMANDS | {ManiCommands}
    MODES = {
        "dashboard": DashboardScreen,
        "history": HistoryScreen,
        "bulk": BulkScreen,
        "companies": CompaniesScreen,
        "deadletters": DeadLettersScreen,
        "audit": AuditScreen,
        "schedules": SchedulesScreen,
    }
    DEFAULT_MODE = "dashboard"
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]
    BINDINGS = [
        *_screen_bindings(),
        Binding("question_mark", "help", "Help", id="app.help", tooltip="Show the keys of this screen"),
        Binding("q", "quit", "Quit", id="app.quit", tooltip="Leave mani-console"),
    ]

    # Set by workers through HealthReport messages; the banner on every screen shows them.
    db_error: reactive[str | None] = reactive(None)
    broker_error: reactive[str | None] = reactive(None)
    clock_text: reactive[str] = reactive("")

    def __init__(self, config: ConsoleConfig | None = None) -> None:
        super().__init__()
        self.config = config or ConsoleConfig()

    @property
    def read_only(self) -> bool:
        return self.config.read_only

    def on_mount(self) -> None:
        self.title = "mani (read-only)" if self.read_only else "mani"
        self._tick()
        self.set_interval(1.0, self._tick)

    def _tick(self) -> None:
        self.clock_text = f"{self.config.clock():%Y-%m-%d %H:%M}"

    @on(HealthReport)
    def _health(self, report: HealthReport) -> None:
        if report.service == "database":
            self.db_error = report.error
        else:
            self.broker_error = report.error

    # Navigation ---------------------------------------------------------------------------------

    def open_job(self, job_id: int) -> None:
        """Going back never lands on another job's screen: a job already open is gone back to,
        and a job opened from another job's screen takes that screen's place."""
        for depth, screen in enumerate(reversed(self.screen_stack)):
            if isinstance(screen, JobDetailScreen) and screen.job_id == job_id:
                for _ in range(depth):
                    self.pop_screen()
                return
        if isinstance(self.screen, JobDetailScreen):
            self.switch_screen(JobDetailScreen(job_id))
        else:
            self.push_screen(JobDetailScreen(job_id))

    def open_callback_log(self, delivery_id: int, closed: Callable[[bool], None] | None = None) -> None:
        """A callback's attempt log; `closed` learns whether a redelivery changed something."""
        self.push_screen(CallbackLogScreen(delivery_id), closed)

    def action_next_screen(self) -> None:
        modes = [mode for mode, _, _ in MAIN_SCREENS]
        index = modes.index(self.current_mode) if self.current_mode in modes else -1
        self.switch_mode(modes[(index + 1) % len(modes)])

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.screen))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mani-console",
        description="The mani admin console: watch jobs, fix and retry failures, send bulk email.",
    )
    parser.add_argument("--read-only", action="store_true",
                        help="watch only: every change (retry, pause, send, settings...) is refused")
    parser.add_argument("--refresh", type=float, default=2.0, metavar="SECONDS",
                        help="dashboard refresh interval in seconds (default 2; 0 = manual)")
    parser.add_argument("--stuck-after", type=float, default=300.0, metavar="SECONDS",
                        help="flag a processing job with no progress for this long (default 300)")
    parser.add_argument("--failure-threshold", type=float, default=0.10, metavar="RATIO",
                        help="flag a job whose failed share is above this (default 0.10)")
    parser.add_argument("--export-dir", type=Path, default=None, metavar="DIR",
                        help="where job logs are exported (default: the current directory)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.refresh < 0:
        build_parser().error("--refresh must be 0 or more")
    # As `mani` does: no secret reaches a log record of this process (libraries' loggers too).
    secrets.install_log_masking()
    config = ConsoleConfig(
        read_only=args.read_only, refresh=args.refresh, stuck_after=args.stuck_after,
        failure_threshold=args.failure_threshold,
    )
    if args.export_dir is not None:
        config.export_dir = args.export_dir
    app = ManiConsole(config)
    app.run()
    return app.return_code or 0


if __name__ == "__main__":
    sys.exit(main())
