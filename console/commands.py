"""The command palette (ctrl+p): go to a screen, open a job, and the current screen's actions."""

from __future__ import annotations

import asyncio
import re
from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider

from backend.core.errors import ManiError
from backend.jobs import queries
from console import calls
from console.widgets.navbar import MAIN_SCREENS

# "3", "#3", "job 3", "open 3", "open job 3", "job 3f1e9c2a" (a uuid prefix): the job reference.
JOB_QUERY = re.compile(r"^\s*(?:open\b\s*)?(?:job\b\s*)?#?\s*(?P<ref>[0-9a-f][0-9a-f-]*)?\s*$", re.IGNORECASE)
# A uuid prefix shorter than this would match too many jobs to be worth a database read.
MIN_UUID_PREFIX = 4


def job_reference(query: str) -> str | None:
    """The job a palette query names (a number or a uuid prefix), or None."""
    match = JOB_QUERY.match(query)
    ref = match and match.group("ref")
    if not ref or (not ref.isdigit() and len(ref) < MIN_UUID_PREFIX):
        return None
    return ref


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

    def _find_job(self, ref: str) -> int | None:
        """The job's number, read on a thread (the palette searches as the admin types)."""
        try:
            return calls.read(self.app, queries.resolve_job_ref, job_ref=ref)
        except ManiError:
            return None  # no such job, or a prefix shared by several: no hit

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        ref = job_reference(query)
        if ref is not None:
            # Resolved as `mani jobs show` does (a number, else a unique uuid prefix): no hit for
            # a job that does not exist.
            job_id = await asyncio.to_thread(self._find_job, ref)
            if job_id is not None:
                name = f"Open job {job_id}" + ("" if ref.lstrip("#") == str(job_id) else f" ({ref}…)")
                yield Hit(1.0, name, partial(self.app.open_job, job_id), help="Show the job's detail page")
        elif matcher.match("Open job") > 0:
            yield Hit(0.5, matcher.highlight("Open job…"), self.app.action_command_palette,
                      help="Type the job's number or the start of its uuid: “job 3”, “open 3f1e”")
        for name, help_text, callback in self._commands():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), callback, help=help_text)
