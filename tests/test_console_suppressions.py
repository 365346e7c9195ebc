"""The console's suppression list (Companies → s): Pilot tests against a real SQLite store, and
snapshots at 80x24 and 160x48."""

from __future__ import annotations

import asyncio
import csv
import functools
from datetime import timedelta
from pathlib import Path

import pytest
import pytest_textual_snapshot
from sqlalchemy import insert, select

from console.app import ManiConsole
from console.config import ConsoleConfig
from docs.tools.demo import DEMO_NOW, demo_broker, seed
from docs.tools.screenshots import preserve_spaces
from console.screens.suppressions import SuppressionsScreen
from models import AuditEntry, Suppression
from models.db import session_scope
from tests.support.console import settle

SNAPSHOT_DIR = Path(__file__).parent / "snapshots"
ENTRIES = [
    ("acme", "gone@acme.example", "bounce", "smtp; 550 5.1.1 user unknown (mailbox does not exist at this host)", 3),
    ("acme", "angry@acme.example", "complaint", "abuse", 3),
    ("acme", "=cmd@acme.example", "admin", "=HYPERLINK(\"http://evil\")", None),
    ("globex", "left@globex.example", "import", "left the company", None),
]


def run_async(test):
    @functools.wraps(test)
    def wrapper(*args, **kwargs):
        return asyncio.run(test(*args, **kwargs))

    return wrapper


@pytest.fixture
def demo_db(sqlite_db):
    with session_scope() as session:
        seed(session=session, now=DEMO_NOW)
        session.execute(insert(Suppression.__table__), [
            {"company_key": company, "email_norm": email, "source": source, "reason": reason, "job_id": job,
             "created_by": "alice", "created_at": DEMO_NOW - timedelta(hours=number)}
            for number, (company, email, source, reason, job) in enumerate(ENTRIES, start=1)])


def make_app(tmp_path, **options) -> ManiConsole:
    return ManiConsole(ConsoleConfig(refresh=0, actor="tester", clock=lambda: DEMO_NOW, export_dir=tmp_path,
                                     csv_dir=tmp_path, **options))


async def _open_acme(pilot) -> SuppressionsScreen:
    await settle(pilot)
    await pilot.press("4")
    await settle(pilot)
    await pilot.press("s")
    await settle(pilot)
    screen = pilot.app.screen
    assert isinstance(screen, SuppressionsScreen) and screen.company_id == "acme"
    return screen


def _emails(screen: SuppressionsScreen) -> list[str]:
    return [row.email for row in screen.rows]


@run_async
async def test_add_search_remove_export_and_back(demo_db, tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=(160, 48)) as pilot:
        screen = await _open_acme(pilot)
        assert _emails(screen) == ["gone@acme.example", "angry@acme.example", "=cmd@acme.example"]
        assert "user unknown (mailbox does not exist at this host)" in str(screen.query_one("#supp-detail").render())

        await pilot.press("a")
        await settle(pilot)
        await pilot.press(*"new@acme.example, other@acme.example", "enter")
        await settle(pilot)
        assert "2 address(es)" in str(app.screen.query_one("#confirm-question").render())
        await pilot.press("y")
        await settle(pilot)
        assert set(_emails(screen)) >= {"new@acme.example", "other@acme.example"} and screen.total == 5

        await pilot.press("slash", *"angry", "enter")
        await settle(pilot)
        assert _emails(screen) == ["angry@acme.example"]
        await pilot.press("d")
        await settle(pilot)
        await pilot.press("y")
        await settle(pilot)
        assert _emails(screen) == []
        await pilot.press("escape")  # clears the search first
        await settle(pilot)
        assert app.screen is screen and screen.total == 4

        await pilot.press("e")
        await settle(pilot)
        rows = list(csv.reader((tmp_path / "suppressions-acme.csv").open(encoding="utf-8", newline="")))
        assert len(rows) == 5 and ["acme", "'=cmd@acme.example", "admin", "'=HYPERLINK(\"http://evil\")"] == rows[
            [r[1] for r in rows].index("'=cmd@acme.example")][:4]

        select_widget = screen.query_one("#supp-company")
        select_widget.value = "globex"
        await settle(pilot)
        assert _emails(screen) == ["left@globex.example"]

        await pilot.press("escape")  # then goes back
        await settle(pilot)
        assert app.screen is not screen and app.current_mode == "companies"

    with session_scope() as session:
        entries = session.execute(select(AuditEntry).where(AuditEntry.action.like("suppression.%"))
                                  .order_by(AuditEntry.id)).scalars().all()
        left = set(session.execute(select(Suppression.email_norm).where(Suppression.company_key == "acme")).scalars())
    assert [(e.action, e.source, e.actor) for e in entries] == [("suppression.admin", "console", "tester"),
                                                                ("suppression.remove", "console", "tester")]
    assert entries[1].details["emails"] == ["angry@acme.example"]
    assert left == {"gone@acme.example", "=cmd@acme.example", "new@acme.example", "other@acme.example"}


@run_async
async def test_read_only_mode_shows_the_list_and_refuses_changes(demo_db, tmp_path):
    app = make_app(tmp_path, read_only=True)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await _open_acme(pilot)
        assert len(screen.rows) == 3
        for key in ("a", "i", "d"):
            await pilot.press(key)
            await settle(pilot)
            assert app.screen is screen  # no prompt, no dialog
    with session_scope() as session:
        assert session.execute(select(Suppression)).scalars().all().__len__() == len(ENTRIES)


def test_every_binding_has_an_id_and_a_tooltip():
    for binding in SuppressionsScreen.BINDINGS:
        assert binding.id and binding.tooltip


# Snapshots ---------------------------------------------------------------------------------------


class _SnapshotsHere(pytest_textual_snapshot.SVGImageExtension):
    @classmethod
    def dirname(cls, *, test_location) -> str:
        return str(SNAPSHOT_DIR / Path(test_location.filepath).stem)

    def serialize(self, *args, **kwargs):
        return preserve_spaces(super().serialize(*args, **kwargs))


@pytest.fixture
def _snapshot_dir(monkeypatch):
    monkeypatch.setattr(pytest_textual_snapshot, "SVGImageExtension", _SnapshotsHere)


@pytest.mark.slow
@pytest.mark.parametrize("size", [pytest.param((80, 24), id="80x24"), pytest.param((160, 48), id="160x48")])
def test_suppressions_snapshot(_snapshot_dir, snap_compare, demo_db, size):
    app = ManiConsole(ConsoleConfig(refresh=0, actor="alice", clock=lambda: DEMO_NOW, broker=demo_broker()))

    async def run_before(pilot) -> None:
        await _open_acme(pilot)

    assert snap_compare(app, terminal_size=size, run_before=run_before)
