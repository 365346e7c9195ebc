"""Helpers for Pilot and snapshot tests of mani-console."""

from __future__ import annotations

import asyncio


async def settle(pilot, rounds: int = 4) -> None:
    """Let workers finish and their messages land (a message may start further workers).

    Outcomes are not raised here: a worker that failed is shown as a notification (which a test
    reads), and one that was cancelled was replaced by a newer one, waited for in the next round.
    """
    for _ in range(rounds):
        await pilot.pause()
        running = [worker for worker in pilot.app.workers if not worker.is_finished]
        await asyncio.gather(*(worker.wait() for worker in running), return_exceptions=True)
    await pilot.pause()
