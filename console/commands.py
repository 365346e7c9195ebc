"""The command palette (ctrl+p): go to a screen, open a job by id, and the current screen's actions."""

from __future__ import annotations

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider

from console.widgets.navbar import MAIN_SCREENS


class ManiCommands(Provider):
    """Commands are (name, help, callback); a screen adds its own through `palette_commands()`."""

    def _commands(self) -> list[tuple[str, str, object]]:
        app = self.app
        commands: list[tuple[str, str, object]] = []
        for number, (mode, label, _) in enumerate(MAIN_SCREENS, start=1):
            commands.append((f"Go to {label}", f"Switch to the {label} screen (key {number})",
                             partial(app.switch_mode, mode)))
        screen = self.screen
        extra = getattr(screen, "palette_commands", None)
        if callable(extra):
            commands.extend(extra())
        commands.append(("Help: keys of this screen", "Show the key map (?)", app.action_help))
        return commands

    async def discover(self) -> Hits:
        for name, help_text, callback in self._commands():
            yield DiscoveryHit(name, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        text = query.strip().lstrip("#")
        if text.isdigit():
            yield Hit(1.0, f"Open job {text}", partial(self.app.open_job, int(text)),
                      help="Show the job's detail page")
        for name, help_text, callback in self._commands():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), callback, help=help_text)
