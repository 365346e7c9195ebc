"""What every console screen shares: the nav bar, the problems banner, the footer, and
helpers for confirmations and read-only refusals."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import ClassVar

from textual.app import ComposeResult
from textual.screen import Screen
from textual.timer import Timer
from textual.widget import Widget
from textual.widgets import Footer, Input

from console.calls import READ_ONLY_MESSAGE
from console.messages import ActionDone, ActionFailed
from console.widgets.banner import Banner
from console.widgets.confirm import ConfirmModal
from console.widgets.navbar import NavBar
from console.workers import WorkerResults

COMPACT_FOOTER_BELOW = 120


class ManiScreen(WorkerResults, Screen):
    # Which main screen the nav bar highlights (a pushed screen names its parent's).
    NAV: ClassVar[str] = "dashboard"
    # Shown by `?` above the key map: what this screen is for, in a few lines of Markdown.
    HELP: ClassVar[str] = ""

    def compose(self) -> ComposeResult:
        yield NavBar(self.NAV)
        yield Banner()
        yield from self.compose_body()
        yield Footer()

    def compose_body(self) -> Iterable[Widget]:
        return ()

    def on_mount(self) -> None:
        # A blinking cursor would make screenshots and snapshot tests depend on timing.
        if self.app.is_headless:
            for field in self.query(Input):
                field.cursor_blink = False
        self._fit_footer()

    def on_resize(self) -> None:
        self._fit_footer()

    def _fit_footer(self) -> None:
        """Below 120 columns the footer drops its padding and the palette key (`?` lists it),
        so that every key of the screen stays on screen."""
        footer = self.query_one(Footer)
        narrow = self.app.size.width < COMPACT_FOOTER_BELOW
        footer.compact = narrow
        footer.show_command_palette = not narrow

    # Actions ----------------------------------------------------------------------------------

    def refuse_if_read_only(self) -> bool:
        """In read-only mode, say so and return True: the caller then does nothing."""
        if self.app.read_only:
            self.notify(READ_ONLY_MESSAGE, title="Not allowed", severity="warning")
            return True
        return False

    def confirm(self, title: str, question: str, then: Callable[[], None], *, label: str = "Yes",
                danger: bool = False) -> None:
        """Ask first; run `then` (which starts a worker) only on yes."""
        if self.refuse_if_read_only():
            return

        def answered(answer: bool | None) -> None:
            if answer:
                then()

        self.app.push_screen(ConfirmModal(title, question, confirm_label=label, danger=danger), answered)

    def on_action_done(self, message: ActionDone) -> None:
        self.notify(message.message, title="Done")
        self.after_action(message)

    def on_action_failed(self, message: ActionFailed) -> None:
        self.notify(message.message, title="Failed", severity="error", timeout=8)

    def after_action(self, message: ActionDone) -> None:
        """Hook: reload what the action changed."""

    # Screens that refresh by themselves (dashboard, job detail) call these from
    # on_screen_resume / on_screen_suspend: one timer per screen, paused while it is hidden.
    _refresh_timer: Timer | None = None

    def resume_refreshing(self, tick: Callable[[], object]) -> None:
        """Tick every `--refresh` seconds while this screen is shown (never when it is 0)."""
        refresh = self.app.config.refresh
        if refresh and self._refresh_timer is None:
            self._refresh_timer = self.set_interval(refresh, tick)
        elif self._refresh_timer is not None:
            self._refresh_timer.resume()

    def pause_refreshing(self) -> None:
        if self._refresh_timer is not None:
            self._refresh_timer.pause()
