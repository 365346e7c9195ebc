"""The layers hold: `backend/` imports no front end and no actor (import-linter checks the rest)."""

from __future__ import annotations

import ast
from pathlib import Path

BACKEND = Path(__file__).resolve().parents[1] / "backend"
FRONT_ENDS_AND_ACTORS = ("actors", "api", "console", "cli", "cloud_workers")


def _imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_backend_imports_no_front_end_and_no_actor():
    found = {
        f"{path.relative_to(BACKEND.parent)}: {name}"
        for path in BACKEND.rglob("*.py")
        for name in _imported(path)
        if name.split(".")[0] in FRONT_ENDS_AND_ACTORS or name.split(".")[0].startswith("cli_")
    }
    assert sorted(found) == []
    assert len(list(BACKEND.rglob("*.py"))) > 40  # the walk did look at the backend
