"""`?`: what the current screen is for, and every key it (and the app) answers to."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Markdown, Static

from console.widgets.fit_table import Col, FitTable

GLOBAL_HELP = """\
**Everywhere:** `1`–`6` switch screens · `?` help · `q` quit · `ctrl+p` command palette ·
`Escape` back · `/` filter or search · `Enter` open. Every change asks first and is written to
the audit log with your OS user."""

KEY_COLUMNS = (Col("key", "Key", max=16), Col("does", "Does", min=16, grow=True))


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
            yield FitTable(KEY_COLUMNS, id="help-keys", cursor_type="row", zebra_stripes=True, show_cursor=False)
            yield Static("Escape closes this help.", classes="dim")

    def on_mount(self) -> None:
        self.query_one(FitTable).set_rows(
            (None, {"key": Text(keys, style="bold"), "does": does}) for keys, does in self.key_rows())

    def key_rows(self) -> list[tuple[str, str]]:
        """(keys, what they do): the screen's own first (ours have an `id`), then the app's,
        then the focused widget's (moving in a table, say), then the screen's general ones. Keys
        for the same action share a row; a key is listed once, for whoever answers it first."""
        screen, app = self.for_screen, self.app
        # A key can mean different things in different places (`r` on Job detail's Callbacks tab):
        # the screen's check_action says which of its bindings answer right now.
        found: list[tuple[int, Binding]] = [(0, binding) for _, binding in screen._bindings
                                            if binding.id and self._enabled(screen, binding)]
        found += [(1, binding) for _, binding in app._bindings if binding.id]
        for active in screen.active_bindings.values():
            if active.node is screen or active.node is app:
                if not active.binding.id:
                    found.append((1 if active.node is app else 3, active.binding))
            else:  # the focused widget's own keys: paging a table ([ ]), moving in it
                found.append((2, active.binding))
        groups: dict[str, tuple[int, list[str], str]] = {}
        taken: set[str] = set()  # a key the screen or the app answers to is theirs, not the table's
        for rank, binding in sorted(found, key=lambda item: item[0]):
            if binding.key in taken:
                continue
            taken.add(binding.key)
            action = "switch_mode" if binding.action.startswith("switch_mode(") else binding.action
            does = "Switch screens (the numbers in the top bar)" if action == "switch_mode" else (
                binding.tooltip or binding.description)
            _, keys, _ = groups.setdefault(action, (rank, [], does))
            label = binding.key_display or app.get_key_display(binding)
            if label not in keys:
                keys.append(label)
        rows = []
        for action, (_, keys, does) in groups.items():
            shown = f"{keys[0]}–{keys[-1]}" if action == "switch_mode" and len(keys) > 2 else " ".join(keys)
            rows.append((shown, does))
        return rows

    @staticmethod
    def _enabled(screen: Screen, binding: Binding) -> bool:
        action = binding.action.split("(", 1)[0]
        return screen.check_action(action, ()) is not False

    def action_dismiss(self) -> None:
        self.dismiss(None)
