"""Keys that mean the same everywhere (docs/console.md): Esc clears, then goes back; going back
never lands on another job; the palette opens a job by number or uuid prefix."""

from __future__ import annotations

import asyncio
import functools

import pytest

from console.app import ManiConsole
from console.commands import ManiCommands, job_reference
from console.config import ConsoleConfig
from docs.tools.demo import DEMO_NOW, demo_broker, seed
from models import Job
from models.db import session_scope
from tests.support.console import settle


def run_async(test):
    @functools.wraps(test)
    def wrapper(*args, **kwargs):
        return asyncio.run(test(*args, **kwargs))

    return wrapper


def make_app() -> ManiConsole:
    return ManiConsole(ConsoleConfig(refresh=0, actor="tester", clock=lambda: DEMO_NOW, broker=demo_broker()))


@pytest.fixture
def demo_db(sqlite_db):
    with session_scope() as session:
        return seed(session=session, now=DEMO_NOW)


def screen_name(app) -> str:
    return type(app.screen).__name__


async def _type(pilot, text: str) -> None:
    await pilot.press(*text)
    await pilot.press("enter")
    await settle(pilot)


@run_async
async def test_esc_clears_a_search_or_filter_first_then_goes_back_on_every_screen(demo_db):
    app = make_app()
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)

        # Main screens: Esc clears what filters them, and there is nothing to go back to.
        for mode, name, search_field in (("dashboard", "DashboardScreen", None),
                                         ("history", "HistoryScreen", "#filter-search"), ("bulk", "BulkScreen", None),
                                         ("companies", "CompaniesScreen", None),
                                         ("deadletters", "DeadLettersScreen", None),
                                         ("audit", "AuditScreen", "#audit-search")):
            await app.switch_mode(mode)  # not a number key: on Bulk, the form has the focus
            await settle(pilot)
            assert screen_name(app) == name
            if search_field:
                await pilot.press("slash")
                await _type(pilot, "ken")
                assert app.screen.query_one(search_field).value == "ken"
                await pilot.press("escape")
                await settle(pilot)
                assert app.screen.query_one(search_field).value == ""
            await pilot.press("escape")
            await settle(pilot)
            assert screen_name(app) == name

        # Job detail: a search, then a filter, each cleared by one Esc; the next Esc goes back.
        await pilot.press("1")
        await settle(pilot)
        app.open_job(3)
        await settle(pilot)
        job = app.screen
        await pilot.press("slash")
        await _type(pilot, "ada")
        assert job.search == "ada" and job.page.total < 3000
        await pilot.press("escape")
        await settle(pilot)
        assert app.screen is job and job.search == "" and job.page.total == 3000
        job.query_one("#recipient-status").value = "problems"
        await settle(pilot)
        assert job.page.total < 3000
        await pilot.press("escape")
        await settle(pilot)
        assert app.screen is job and job.status_filter == "all" and job.page.total == 3000
        await pilot.press("slash", "x")  # typed, not yet submitted: cleared too
        await pilot.press("escape")
        await settle(pilot)
        assert app.screen is job and job.query_one("#recipient-search").value == ""
        await pilot.press("escape")
        await settle(pilot)
        assert screen_name(app) == "DashboardScreen"

        # Pushed screens and dialogs: Esc goes back (or answers no, or closes).
        app.open_job(1)
        await settle(pilot)
        await pilot.press("t", "t", "t", "down", "down", "down", "enter")
        await settle(pilot)
        assert screen_name(app) == "CallbackLogScreen"
        await pilot.press("escape")
        await settle(pilot)
        assert screen_name(app) == "JobDetailScreen"
        for key, dialog in (("v", "FullTextModal"), ("r", "ConfirmModal")):
            await pilot.press(key)
            await settle(pilot)
            assert screen_name(app) == dialog
            await pilot.press("escape")
            await settle(pilot)
            assert screen_name(app) == "JobDetailScreen"
        await pilot.press("escape", "4")
        await settle(pilot)
        await pilot.press("e")
        await settle(pilot)
        assert screen_name(app) == "CompanyFormScreen"
        await pilot.press("escape")
        await settle(pilot)
        assert screen_name(app) == "CompaniesScreen"


@run_async
async def test_going_back_never_lands_on_another_jobs_screen(demo_db):
    app = make_app()
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        app.open_job(3)
        await settle(pilot)
        app.open_job(5)  # from the palette, on job 3's screen: job 5 takes its place
        await settle(pilot)
        assert [type(s).__name__ for s in app.screen_stack[1:]] == ["JobDetailScreen"]
        assert app.screen.job_id == 5
        await pilot.press("escape")
        await settle(pilot)
        assert screen_name(app) == "DashboardScreen"

        # A callback's `j` on the job it came from goes back to that job's screen.
        app.open_job(1)
        await settle(pilot)
        job = app.screen
        await pilot.press("t", "t", "t", "down", "down", "down", "enter")
        await settle(pilot)
        await pilot.press("j")
        await settle(pilot)
        assert app.screen is job and len(app.screen_stack) == 2


def test_job_reference_reads_what_a_person_types():
    assert [job_reference(text) for text in ("3", "#3", "job 3", "Job #3", "open 3", "open job 3", "  job  12 ")] \
        == ["3", "3", "3", "3", "3", "3", "12"]
    assert job_reference("job 3f1e") == "3f1e" and job_reference("open 3F1E9C2A-00") == "3F1E9C2A-00"
    assert [job_reference(text) for text in ("open", "job", "help", "job abc", "go to history")] == [None] * 5


@run_async
async def test_the_palette_opens_a_job_by_number_word_or_uuid_prefix(demo_db):
    with session_scope() as session:
        uuid = session.get(Job, 4).uuid
    app = make_app()
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        provider = ManiCommands(app.screen)

        async def hits(query: str) -> list[str]:
            return [str(getattr(hit.text, "plain", hit.text)) for hit in [h async for h in provider.search(query)]]

        for query in ("3", "job 3", "open 3", "#3"):
            assert "Open job 3" in await hits(query), query
        assert f"Open job 4 ({uuid[:11]}…)" in await hits(f"job {uuid[:11]}")
        assert await hits("job 99") == []  # no such job: no hit to open
        # "open" alone: the job selected on the dashboard, first row.
        selected = app.screen.query_one("#active-jobs").coordinate_to_cell_key((0, 0)).row_key.value
        assert f"Open job {selected}" in await hits("open")
        hit = [h async for h in provider.search("job 3")][0]
        hit.command()
        await settle(pilot)
        assert screen_name(app) == "JobDetailScreen" and app.screen.job_id == 3
