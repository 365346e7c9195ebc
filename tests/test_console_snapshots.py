"""Snapshots of every main screen at 80x24, 120x36 (the docs' size) and 160x48, with the demo
data and a frozen clock.

Snapshots live in tests/snapshots/; refresh them with `pytest tests/test_console_snapshots.py
--snapshot-update` after a deliberate change, and look at the report before committing.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import pytest_textual_snapshot

from console.app import ManiConsole
from console.config import ConsoleConfig
from docs.tools.demo import DEMO_NOW, demo_broker, seed
from docs.tools.screenshots import preserve_spaces
from models.db import session_scope
from tests.support.console import settle

SNAPSHOT_DIR = Path(__file__).parent / "snapshots"
pytestmark = pytest.mark.slow  # a whole app per snapshot: seconds each
SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((120, 36), id="120x36"),
         pytest.param((160, 48), id="160x48")]


class _SnapshotsHere(pytest_textual_snapshot.SVGImageExtension):
    """Stored next to this file, and readable in any SVG viewer (see `preserve_spaces`)."""

    @classmethod
    def dirname(cls, *, test_location) -> str:
        return str(SNAPSHOT_DIR / Path(test_location.filepath).stem)

    def serialize(self, *args, **kwargs):
        return preserve_spaces(super().serialize(*args, **kwargs))


@pytest.fixture(autouse=True)
def _snapshot_dir(monkeypatch):
    monkeypatch.setattr(pytest_textual_snapshot, "SVGImageExtension", _SnapshotsHere)


@pytest.fixture
def demo_app(sqlite_db):
    with session_scope() as session:
        seed(session=session, now=DEMO_NOW)
    return ManiConsole(ConsoleConfig(refresh=0, actor="alice", clock=lambda: DEMO_NOW, broker=demo_broker()))


async def _settled(pilot) -> None:
    await settle(pilot, rounds=5)


def _screen(keys: tuple[str, ...] = (), job: int | None = None):
    async def run_before(pilot) -> None:
        await _settled(pilot)
        if job is not None:
            pilot.app.open_job(job)
            await _settled(pilot)
        for key in keys:
            await pilot.press(key)
            await _settled(pilot)

    return run_before


@pytest.mark.parametrize("size", SIZES)
def test_dashboard(snap_compare, demo_app, size):
    assert snap_compare(demo_app, terminal_size=size, run_before=_screen())


@pytest.mark.parametrize("size", SIZES)
def test_history(snap_compare, demo_app, size):
    assert snap_compare(demo_app, terminal_size=size, run_before=_screen(("2",)))


@pytest.mark.parametrize("size", SIZES)
def test_job_detail(snap_compare, demo_app, size):
    assert snap_compare(demo_app, terminal_size=size, run_before=_screen(job=3))


@pytest.mark.parametrize("size", SIZES)
def test_job_callbacks(snap_compare, demo_app, size):
    """Job 1's Callbacks tab: one delivery failed for good, a bounce rate over 2 %."""
    assert snap_compare(demo_app, terminal_size=size, run_before=_screen(("t", "t", "t", "down", "down", "down"), job=1))


@pytest.mark.parametrize("size", SIZES)
def test_callback_log(snap_compare, demo_app, size):
    """The attempt log of job 1's failed delivery: eight refusals, Moodle's answer in full."""
    assert snap_compare(demo_app, terminal_size=size, run_before=_screen(("t", "t", "t", "down", "down", "down",
                                                                          "enter"), job=1))


@pytest.mark.parametrize("size", SIZES)
def test_bulk(snap_compare, demo_app, size):
    assert snap_compare(demo_app, terminal_size=size, run_before=_screen(("3",)))


@pytest.mark.parametrize("size", SIZES)
def test_companies(snap_compare, demo_app, size):
    assert snap_compare(demo_app, terminal_size=size, run_before=_screen(("4",)))


@pytest.mark.parametrize("size", SIZES)
def test_company_form(snap_compare, demo_app, size):
    assert snap_compare(demo_app, terminal_size=size, run_before=_screen(("4", "e")))


@pytest.mark.parametrize("size", SIZES)
def test_dead_letters(snap_compare, demo_app, size):
    assert snap_compare(demo_app, terminal_size=size, run_before=_screen(("5",)))


@pytest.mark.parametrize("size", SIZES)
def test_audit(snap_compare, demo_app, size):
    assert snap_compare(demo_app, terminal_size=size, run_before=_screen(("6",)))


@pytest.mark.parametrize("size", SIZES)
def test_help(snap_compare, demo_app, size):
    assert snap_compare(demo_app, terminal_size=size, run_before=_screen(("question_mark",)))
