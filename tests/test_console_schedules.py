"""The console's Schedules screen with Pilot: the list, pause and resume and run now behind a
confirmation, opening a run's job, and the form that checks as you type and shows the next five
run times; snapshots at 80x24 and 160x48."""

from __future__ import annotations

import pytest
import pytest_textual_snapshot
from sqlmodel import select

from backend.core.settings import reset_settings_cache
from docs.tools.demo import DEMO_NOW, demo_broker
from console.screens.job_detail import JobDetailScreen
from models import AuditEntry, Company, Schedule, ScheduleRun
from models.db import session_scope
from tests.support.moodle_fixture import COURSE
from tests.test_console_app import cell_text, demo_db, make_app, run_async, settle  # noqa: F401 - fixtures
from tests.test_console_snapshots import _SnapshotsHere, _screen


async def open_schedules(pilot) -> None:
    await settle(pilot)
    await pilot.press("7")
    await settle(pilot)


@run_async
async def test_the_list_shows_next_run_last_run_and_its_job(demo_db):
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await open_schedules(pilot)
        table = app.screen.query_one("#schedules")
        assert table.row_count == 3
        assert cell_text(table, "1", 1) == "Daily welcome"
        assert cell_text(table, "1", 4) == "2025-03-15 09:00"  # 09:00 Berlin, the day after DEMO_NOW
        assert cell_text(table, "1", 5).endswith("created") and cell_text(table, "1", 6) == "#1 completed"
        assert cell_text(table, "3", 4) == "paused"
        await pilot.press("down")
        await pilot.pause()
        detail = str(app.screen.query_one("#schedule-detail").render())
        assert "retrying" in detail and "cannot be reached" in detail
        await pilot.press("up", "enter")
        await settle(pilot)
        assert isinstance(app.screen, JobDetailScreen)


@run_async
async def test_pause_resume_and_run_now_ask_first(demo_db):
    app = make_app()
    async with app.run_test(size=(120, 36)) as pilot:
        await open_schedules(pilot)
        await pilot.press("p")
        await pilot.pause()
        await pilot.press("n")  # no: nothing changes
        await settle(pilot)
        with session_scope() as session:
            assert session.get(Schedule, 1).enabled is True
        await pilot.press("p")
        await pilot.pause()
        await pilot.press("y")
        await settle(pilot)
        with session_scope() as session:
            paused = session.get(Schedule, 1)
            assert (paused.enabled, paused.next_run_at) == (False, None)
        assert cell_text(app.screen.query_one("#schedules"), "1", 4) == "paused"
        await pilot.press("r")
        await pilot.pause()
        await pilot.press("y")
        await settle(pilot)
        with session_scope() as session:
            assert session.get(Schedule, 1).enabled is True
        # Run now: the demo company has no IOMAD company id, so the run is recorded as failed, with why.
        await pilot.press("n")
        await pilot.pause()
        await pilot.press("y")
        await settle(pilot)
        with session_scope() as session:
            run = session.exec(select(ScheduleRun).where(ScheduleRun.manual.is_(True))).one()
            assert run.status == "failed" and "has no moodle_company_id" in run.error
            actions = {e.action for e in session.exec(select(AuditEntry).where(AuditEntry.actor == "tester")).all()}
            assert {"schedule.pause", "schedule.resume", "schedule.run_now"} <= actions
        assert cell_text(app.screen.query_one("#schedules"), "1", 5).endswith("failed")


@run_async
async def test_the_command_palette_goes_to_schedules_and_offers_their_actions(demo_db):
    from console.commands import ManiCommands

    app = make_app()
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        provider = ManiCommands(app.screen)
        names = [name for name, _, _ in provider._commands()]
        assert "Go to Schedules" in names
        dict((name, callback) for name, _, callback in provider._commands())["Go to Schedules"]()
        await settle(pilot)
        assert type(app.screen).__name__ == "SchedulesScreen"
        names = [name for name, _, _ in ManiCommands(app.screen)._commands()]
        assert "Schedules: run the selected schedule now" in names


@run_async
async def test_read_only_refuses_changes(demo_db):
    app = make_app(read_only=True)
    async with app.run_test(size=(120, 36)) as pilot:
        await open_schedules(pilot)
        await pilot.press("p")
        await settle(pilot)
        await pilot.press("a")
        await settle(pilot)
        assert type(app.screen).__name__ == "SchedulesScreen"
    with session_scope() as session:
        assert session.get(Schedule, 1).enabled is True


def fill(form, **values) -> None:
    for key, value in values.items():
        form.query_one(f"#schedule-{key}").value = value


@pytest.mark.mariadb
@pytest.mark.parametrize("moodle_site", ["mariadb"], indirect=True)
@run_async
async def test_the_form_checks_as_you_type_shows_five_runs_and_saves(sqlite_db, moodle_site, monkeypatch):
    monkeypatch.setenv("MANI_MOODLE_DATABASE_URL", moodle_site.readonly_url)
    monkeypatch.setenv("MANI_MOODLE_TABLE_PREFIX", moodle_site.prefix)
    reset_settings_cache()
    with session_scope() as session:
        session.add(Company(id="1", name="Acme Training"))
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await open_schedules(pilot)
        await pilot.press("a")
        await settle(pilot)
        form = app.screen
        fill(form, name="Nudge", company_id="1", job_type="reengagement", frequency="custom", interval_days="0",
             time="09:00", timezone="Europe/Berlin", start="2025-03-28", course_id=str(COURSE), since="")
        await pilot.pause()
        assert "--interval-days must be 1 or more" in str(form.query_one("#schedule-next").render())
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert form is app.screen  # refused: still editing
        fill(form, interval_days="2", timezone="Mars/Base")
        await pilot.pause()
        assert "not an IANA time zone" in str(form.query_one("#schedule-next").render())
        fill(form, timezone="Europe/Berlin")
        await pilot.pause()
        # Every 2 days from 28 March 2025 at 09:00 Berlin, across the spring change on 30 March.
        assert str(form.query_one("#schedule-next").render()) == (
            "Next runs: Fri 2025-03-28 09:00 CET, Sun 2025-03-30 09:00 CEST, Tue 2025-04-01 09:00 CEST, "
            "Thu 2025-04-03 09:00 CEST, Sat 2025-04-05 09:00 CEST")
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert type(app.screen).__name__ == "SchedulesScreen"
        assert app.screen.query_one("#schedules").row_count == 1
    with session_scope() as session:
        stored = session.exec(select(Schedule)).one()
        assert (stored.name, stored.custom_interval, stored.selection["course_id"]) == ("Nudge", 2, COURSE)


# Snapshots ---------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _snapshot_dir(monkeypatch):
    monkeypatch.setattr(pytest_textual_snapshot, "SVGImageExtension", _SnapshotsHere)


@pytest.fixture
def demo_app(demo_db):
    from console.app import ManiConsole
    from console.config import ConsoleConfig

    return ManiConsole(ConsoleConfig(refresh=0, actor="alice", clock=lambda: DEMO_NOW, broker=demo_broker()))


SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((160, 48), id="160x48")]


@pytest.mark.slow
@pytest.mark.parametrize("size", SIZES)
def test_schedules_snapshot(snap_compare, demo_app, size):
    assert snap_compare(demo_app, terminal_size=size, run_before=_screen(("7", "down")))


@pytest.mark.slow
@pytest.mark.parametrize("size", SIZES)
def test_schedule_form_snapshot(snap_compare, demo_app, size):
    async def run_before(pilot) -> None:
        await _screen(("7", "a"))(pilot)
        fill(pilot.app.screen, name="Daily welcome", company_id="2", timezone="Europe/Berlin", since="24h",
             start="2025-03-29")
        await pilot.pause()

    assert snap_compare(demo_app, terminal_size=size, run_before=run_before)
