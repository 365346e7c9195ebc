"""The bulk tool's "From Moodle" source: Pilot tests against the fixture site on real MariaDB and
PostgreSQL (pick the card, the company, the course; preview; send), and snapshots at 80x24 and
160x48."""

from __future__ import annotations

import asyncio
import functools
from datetime import datetime, timezone
from pathlib import Path

import pytest
import pytest_textual_snapshot
from sqlmodel import select

from backend.core.settings import reset_settings_cache
from console.app import ManiConsole
from console.config import ConsoleConfig
from docs.tools.demo import demo_broker
from console.screens.bulk import BulkScreen
from docs.tools.screenshots import preserve_spaces
from console.widgets.moodle_form import MoodleForm
from models import AuditEntry, Job
from models.db import session_scope
from tests.support.console import settle
from tests.support.moodle_fixture import AT, COURSE, COURSE_NAME, EXPECTED

pytestmark = [pytest.mark.mariadb, pytest.mark.postgres]
SNAPSHOT_DIR = Path(__file__).parent / "snapshots"
MOODLE_NOW = datetime.fromtimestamp(AT, tz=timezone.utc)


def run_async(test):
    @functools.wraps(test)
    def wrapper(*args, **kwargs):
        return asyncio.run(test(*args, **kwargs))

    return wrapper


@pytest.fixture
def moodle_console(sqlite_db, moodle_site, monkeypatch):
    """The embedded store, the fixture site as the global Moodle, and the console's clock at its AT."""
    monkeypatch.setenv("MANI_MOODLE_DATABASE_URL", moodle_site.readonly_url)
    monkeypatch.setenv("MANI_MOODLE_TABLE_PREFIX", moodle_site.prefix)
    monkeypatch.setenv("MANI_MOODLE_SITE_URL", "https://moodle.example.org")
    reset_settings_cache()
    return moodle_site


def make_app() -> ManiConsole:
    return ManiConsole(ConsoleConfig(refresh=0, actor="tester", clock=lambda: MOODLE_NOW, broker=demo_broker()))


async def open_moodle_source(pilot) -> BulkScreen:
    await settle(pilot)
    await pilot.press("3")
    await settle(pilot)
    await pilot.press("ctrl+t")
    await settle(pilot)
    screen = pilot.app.screen
    assert isinstance(screen, BulkScreen) and screen.source == "moodle"
    return screen


async def pick(pilot, screen: BulkScreen, **values) -> None:
    """Set the form's Selects and Inputs as a person would, one after the other."""
    for name, value in values.items():
        screen.query_one(f"#moodle-{name}").value = value
        await settle(pilot)


@run_async
async def test_reminder_card_previews_then_sends_the_job(moodle_console):
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        screen = await open_moodle_source(pilot)
        form = screen.query_one(MoodleForm)
        company_values = [value for _, value in form.query_one("#moodle-company")._options if value is not None]
        assert "1" in company_values  # IOMAD company 1 of the global Moodle
        await pick(pilot, screen, card="reminder", company="1")
        courses = dict((value, label) for label, value in form.query_one("#moodle-course")._options)
        assert COURSE_NAME in str(courses[COURSE])  # the course picker lists the company's courses by name
        assert form.query_one("#moodle-window").disabled  # a reminder has no window
        await pick(pilot, screen, course=COURSE)
        await pilot.press("ctrl+o")
        await settle(pilot)
        assert screen.preview is not None and screen.preview.accepted == len(EXPECTED["reminder"])
        summary = str(screen.query_one("#bulk-summary").render())
        assert f"{len(EXPECTED['reminder'])} to send" in summary and "1 invalid addresses" in summary
        assert "moodle: reminder, company 1, course 1" in summary
        assert COURSE_NAME in str(screen.query_one("#bulk-message-text").render())
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert f"to {len(EXPECTED['reminder'])} recipients" in str(app.screen.query_one("#confirm-question").render())
        await pilot.press("y")
        await settle(pilot)
        assert type(app.screen).__name__ == "JobDetailScreen"
    with session_scope() as session:
        job = session.exec(select(Job).where(Job.source == "moodle")).one()
        assert (job.type, job.total, job.created_by, job.rejected_count) == ("reminder", len(EXPECTED["reminder"]),
                                                                            "tester", 1)
        assert session.exec(select(AuditEntry).where(AuditEntry.target == job.uuid)).first() is not None


@run_async
async def test_send_without_preview_or_after_a_change_is_refused(moodle_console):
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_moodle_source(pilot)
        await pick(pilot, screen, card="welcome_std", company="1", window="24h")
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert type(app.screen) is BulkScreen  # no confirmation: nothing was previewed
        await pilot.press("ctrl+o")
        await settle(pilot)
        assert screen.preview.accepted == len(EXPECTED["welcome_std"])
        await pick(pilot, screen, window="7d")
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert type(app.screen) is BulkScreen  # the form changed since the preview
        await pick(pilot, screen, window="soon")
        await pilot.press("ctrl+o")
        await settle(pilot)
        assert "--since 'soon' is not a moment" in str(screen.query_one("#bulk-summary").render())
    with session_scope() as session:
        assert session.exec(select(Job)).first() is None


def test_every_binding_has_an_id_and_a_tooltip():
    for binding in BulkScreen.BINDINGS:
        assert binding.id and binding.tooltip


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
@pytest.mark.parametrize("moodle_site", ["postgres"], indirect=True)
@pytest.mark.parametrize("size", [pytest.param((80, 24), id="80x24"), pytest.param((160, 48), id="160x48")])
def test_moodle_preview_snapshot(_snapshot_dir, snap_compare, moodle_console, size):
    async def run_before(pilot) -> None:
        screen = await open_moodle_source(pilot)
        await pick(pilot, screen, card="reengagement", company="1")
        await pick(pilot, screen, course=COURSE)
        await pilot.press("ctrl+o")
        await settle(pilot)

    assert snap_compare(make_app(), terminal_size=size, run_before=run_before)
