"""Write an SVG screenshot of every console screen (for docs/console.md), from the demo data.

    python -m docs.tools.screenshots docs/screenshots [--size 120x36]

It uses a throwaway SQLite store and a frozen clock, so the pictures only change when the
console does.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path

SHOTS = (
    ("dashboard", ()),
    ("history", ("2",)),
    ("job-detail", ("job",)),
    ("job-callbacks", ("job:1", "t", "t", "t", "down", "down", "down")),
    ("callback-log", ("job:1", "t", "t", "t", "down", "down", "down", "enter")),
    ("bulk", ("3",)),
    ("companies", ("4",)),
    ("company-form", ("4", "e")),
    ("dead-letters", ("5",)),
    ("audit", ("6",)),
    ("schedules", ("7", "down")),
    ("help", ("question_mark",)),
)


async def _shoot(out: Path, size: tuple[int, int], name: str, keys: tuple[str, ...]) -> None:
    from console.app import ManiConsole
    from console.config import ConsoleConfig
    from docs.tools.demo import DEMO_NOW, demo_broker

    app = ManiConsole(ConsoleConfig(refresh=0, actor="alice", clock=lambda: DEMO_NOW, broker=demo_broker()))
    async with app.run_test(size=size) as pilot:
        async def settle() -> None:
            for _ in range(5):
                await pilot.pause()
                await app.workers.wait_for_complete()
            await pilot.pause()

        await settle()
        for key in keys:
            if key.startswith("job"):  # "job": job 3, "job:N": job N
                app.open_job(int(key.partition(":")[2] or 3))
            else:
                await pilot.press(key)
            await settle()
        path = out / f"{name}.svg"
        path.write_text(preserve_spaces(app.export_screenshot()), encoding="utf-8")
    print(f"wrote {path}")


def preserve_spaces(svg: str) -> str:
    """Textual writes each run of text as its own element, so a run may start with a space
    (`&#160;History` after a bold `2`). Some renderers (librsvg, so GNOME's viewer and
    `rsvg-convert`) drop those unless told not to, and the picture then reads "2History"."""
    return svg if 'xml:space="preserve"' in svg else svg.replace("<svg ", '<svg xml:space="preserve" ', 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--size", default="120x36")
    args = parser.parse_args()
    width, height = (int(part) for part in args.size.lower().split("x"))
    os.environ["MANI_DATA_DIR"] = tempfile.mkdtemp(prefix="mani-shots-")
    os.environ.pop("MANI_DATABASE_URL", None)
    os.environ.pop("MANI_REDIS_URL", None)
    os.environ["MANI_CONFIG"] = os.path.join(os.environ["MANI_DATA_DIR"], "none.toml")

    from backend.core.settings import reset_settings_cache
    from docs.tools.demo import DEMO_NOW, seed
    from models.db import get_engine, session_scope, upgrade

    reset_settings_cache()
    upgrade(get_engine())
    with session_scope() as session:
        seed(session=session, now=DEMO_NOW)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, keys in SHOTS:
        asyncio.run(_shoot(args.out, (width, height), name, keys))
    return 0


if __name__ == "__main__":
    sys.exit(main())
