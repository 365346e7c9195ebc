"""The console fits the terminal: tables never scroll sideways, labels are never cut."""

from __future__ import annotations

import asyncio

import pytest
from rich.text import Text

from console.app import ManiConsole
from console.config import ConsoleConfig
from docs.tools.demo import DEMO_NOW, demo_broker, seed
from console.widgets.counters import Counter
from console.widgets.fit_table import Choice, Col, FitTable, layout
from console.widgets.navbar import MAIN_SCREENS, NavBar
from models.db import session_scope
from tests.support.console import settle

SIZES = [(80, 24), (100, 30), (120, 36), (160, 48)]
SCREENS = [(), ("2",), ("job",), ("job", "t", "t", "t"), ("job", "t", "t", "t", "end", "enter"), ("3",), ("4",),
           ("4", "e"), ("5",), ("5", "tab", "enter"), ("6",), ("question_mark",)]
# Each test visits a third of the screens at one size, so that parallel workers share them out.
SCREEN_GROUPS = {"dashboard-history-job": SCREENS[:4], "callbacks-bulk-companies": SCREENS[4:8],
                 "letters-audit-help": SCREENS[8:]}


def test_layout_drops_the_least_useful_columns_first_and_fits():
    columns = (Col("id", "Id"), Col("name", "Name", min=6), Col("note", "Note", drop=2), Col("extra", "Extra", drop=1))
    rows = [{"id": "17", "name": "Ada Lovelace", "note": "a long note here", "extra": "x"}]
    wide = layout(columns, rows, 80)
    assert [col.key for col, _ in wide] == ["id", "name", "note", "extra"]
    assert dict((col.key, width) for col, width in wide)["name"] == len("Ada Lovelace")
    narrow = layout(columns, rows, 30)
    assert [col.key for col, _ in narrow] == ["id", "name", "extra"]  # "note" (drop=2) went first
    assert sum(width + 2 for _, width in narrow) <= 30
    tight = layout(columns, rows, 12)
    assert [col.key for col, _ in tight] == ["id", "name"]
    assert dict((col.key, width) for col, width in tight)["name"] == 6  # shrunk to its min, never below


def test_layout_gives_a_choice_column_its_short_form_before_cutting_names():
    columns = (Col("name", "Name"), Col("sent", "Sent/Total", short="Sent", justify="right"))
    rows = [{"name": "welcome_lic", "sent": Choice("1,860/3,000", "1.9k/3k")},
            {"name": "reminder", "sent": Choice("200/1,000", "200/1k")}]
    shape = dict((col.key, width) for col, width in layout(columns, rows, 24))
    assert shape == {"name": 11, "sent": 9}


@pytest.fixture
def demo_store(sqlite_db):
    with session_scope() as session:
        seed(session=session, now=DEMO_NOW)


async def _visit(size: tuple[int, int], keys: tuple[str, ...]) -> list[str]:
    """Open a screen at `size`; return what does not fit."""
    app = ManiConsole(ConsoleConfig(refresh=0, actor="alice", clock=lambda: DEMO_NOW, broker=demo_broker()))
    problems = []
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        for key in keys:
            if key == "job":
                app.open_job(3)
            else:
                await pilot.press(key)
            await settle(pilot)
        where = f"{size[0]}x{size[1]} {keys or 'dashboard'}"
        for table in app.screen.query(FitTable):
            if table.size.width and table.virtual_size.width > table.scrollable_content_region.width:
                problems.append(f"{where}: #{table.id} is {table.virtual_size.width} wide in "
                                f"{table.scrollable_content_region.width}")
        for counter in app.screen.query(Counter):  # "╭─ Dead letters ─╮" needs the label + 5
            if counter.outer_size.width < len(counter.label) + 5:
                problems.append(f"{where}: counter {counter.label!r} is cut ({counter.outer_size.width} wide)")
        for field in app.screen.query("Input, Select, Button"):
            if field.region.width and field.region.right > size[0]:
                problems.append(f"{where}: #{field.id} ends at column {field.region.right}")
        navbars = list(app.query(NavBar))
        if navbars:
            line = navbars[0].render().plain
            if len(line) > size[0] or not all(f"{n} " in line for n in range(1, len(MAIN_SCREENS) + 1)):
                problems.append(f"{where}: top bar {line!r}")
            if "full access" not in line:
                problems.append(f"{where}: the mode is missing from the top bar {line!r}")
    return problems


@pytest.mark.slow
@pytest.mark.parametrize("screens", SCREEN_GROUPS)
@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
def test_every_screen_fits(demo_store, size, screens):
    problems = []
    for keys in SCREEN_GROUPS[screens]:
        problems += asyncio.run(_visit(size, keys))
    assert problems == []


def test_counter_separates_value_and_note():
    counter = Counter("Send rate")
    counter.value, counter.note = "100/m", "avg 44/m"
    assert isinstance(counter.render(), Text) and counter.render().plain == "100/m · avg 44/m"
