"""Completing file paths as you type (the bulk tool's CSV path)."""

from __future__ import annotations

import os
from pathlib import Path

from textual.suggester import Suggester


class PathSuggester(Suggester):
    """Suggests the first directory entry that completes the typed path (→ or End accepts).

    Directories complete with a trailing slash; files are offered only with `suffixes`.
    Reading a directory is fast and local, so this runs on the UI loop like any suggester.
    """

    def __init__(self, *, base: Path | None = None, suffixes: tuple[str, ...] = (".csv", ".txt")) -> None:
        super().__init__(use_cache=False, case_sensitive=True)
        self.base = base
        self.suffixes = suffixes

    async def get_suggestion(self, value: str) -> str | None:
        if not value:
            return None
        expanded = os.path.expanduser(value)
        path = Path(expanded)
        if not path.is_absolute() and self.base is not None:
            path = self.base / path
        directory, prefix = (path, "") if expanded.endswith(os.sep) else (path.parent, path.name)
        try:
            entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
        except OSError:
            return None
        for entry in entries:
            if not entry.name.startswith(prefix) or (entry.name.startswith(".") and not prefix.startswith(".")):
                continue
            is_dir = entry.is_dir()
            if entry.name == prefix:
                if is_dir and prefix:
                    return value + os.sep
                continue
            if not is_dir and not entry.name.lower().endswith(self.suffixes):
                continue
            return value + entry.name[len(prefix):] + (os.sep if is_dir else "")
        return None
