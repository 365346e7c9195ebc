"""Pilot tests: job detail refreshes by itself, and every cut value can be read whole."""

from __future__ import annotations

import asyncio
import functools

import pytest
from textual.widgets import TextArea

from console.app import ManiConsole
from console.config import ConsoleConfig
from docs.tools.demo import DEMO_NOW, seed
from models import Job, Recipient
from models.db import session_scope
from tests.support.console import settle

LONG_ERROR = ("550 5.1.1 <nobody@example.org>: Recipient address rejected: User unknown in virtual mailbox table; "
              "the remote server gave up after three attempts and said so at length, which the table cuts")


def run_async(test):
    @functools.wraps(test)
    def wrapper(*args, **kwargs):
        return asyncio.run(test(*args, **kwargs))

    return wrapper


def make_app(**options) -> ManiConsole:
    options.setdefault("refresh", 0)
    options.setdefault("actor", "tester")
    options.setdefault("clock", lambda: DEMO_NOW)
    return ManiConsole(ConsoleConfig(**options))


@pytest.fixture
def demo_db(sqlite_db):
    with session_scope() as session:
        return seed(session=session, now=DEMO_NOW)


def _plain(widget) -> str:
    return str(getattr(widget.render(), "plain", widget.render()))


async def _wait_until(pilot, condition, rounds: int = 300) -> None:
    for _ in range(rounds):  # bounded polling: no timing is asserted
        if condition():
            return
        await pilot.pause(0.02)
    assert condition()


@run_async
async def test_job_detail_refreshes_by_itself_without_moving_the_cursor_or_the_scroll(demo_db):
    app = make_app(refresh=0.05)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        app.open_job(3)
        await settle(pilot)
        screen = app.screen
        table = screen.query_one("#recipients")
        for _ in range(40):
            await pilot.press("down")
        await settle(pilot)
        cursor, scroll = table.cursor_row, table.scroll_y
        assert cursor == 40 and scroll > 0
        neighbour = screen.page.rows[cursor + 1]  # on screen, under the cursor
        assert neighbour.status != "bounced"

        # A worker sends more and a recipient bounces; no key is pressed.
        with session_scope() as session:
            job = session.get(Job, 3)
            job.sent_count = 2345
            recipient = session.get(Recipient, neighbour.id)
            recipient.status, recipient.last_error = "bounced", LONG_ERROR
            session.add_all([job, recipient])
        summary = screen.query_one("#job-summary")
        await _wait_until(pilot, lambda: "2,345 sent" in _plain(summary))
        await _wait_until(pilot, lambda: screen.page.rows[cursor + 1].status == "bounced")
        await settle(pilot)
        assert "bounced" in str(table.get_row_at(cursor + 1))
        assert (table.cursor_row, table.scroll_y) == (cursor, scroll)


@run_async
async def test_enter_or_v_shows_a_recipient_whole_and_esc_closes_it(demo_db):
    with session_scope() as session:
        first = session.query(Recipient).filter(Recipient.job_id == 2).order_by(Recipient.id).first()
        first.status, first.last_error = "failed", LONG_ERROR
        session.add(first)
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        app.open_job(2)
        await settle(pilot)
        table = app.screen.query_one("#recipients")
        cut = str(table.get_row_at(0))
        assert LONG_ERROR not in cut  # the table cuts it at 80 columns
        # The line under the table has the selected recipient's error whole, wrapped.
        assert LONG_ERROR in " ".join(_plain(app.screen.query_one("#recipient-detail")).split())
        for key in ("enter", "v"):
            await pilot.press(key)
            await settle(pilot)
            assert type(app.screen).__name__ == "FullTextModal"
            text = app.screen.query_one(TextArea).text
            assert f"last error: {LONG_ERROR}" in text and f"email: {first.email}" in text
            await pilot.press("escape")
            await settle(pilot)
            assert type(app.screen).__name__ == "JobDetailScreen"


@run_async
async def test_full_text_of_a_callback_and_an_audit_entry(demo_db):
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        app.open_job(1)
        await settle(pilot)
        await pilot.press("t", "t", "t", "down", "down", "down", "v")
        await settle(pilot)
        assert type(app.screen).__name__ == "FullTextModal"
        text = app.screen.query_one(TextArea).text
        assert "status: failed" in text and "url: https://" in text
        await pilot.press("escape", "escape", "6")
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        assert type(app.screen).__name__ == "FullTextModal"
        assert "actor: " in app.screen.query_one(TextArea).text


@run_async
async def test_a_rejection_reason_is_shown_whole(demo_db, tmp_path):
    csv_file = tmp_path / "users.csv"
    csv_file.write_text("email,firstname,lastname,username\n"
                        "ok@example.org,Ok,User,ok\n"
                        "not-an-address,Bad,User,bad\n", encoding="utf-8")
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("3")
        await settle(pilot)
        app.screen.query_one("#bulk-path").value = str(csv_file)
        await pilot.press("ctrl+o")
        await settle(pilot)
        reason = app.screen.preview.rejected[0].reason
        app.screen.query_one("#bulk-tabs").active = "tab-rejected"
        await settle(pilot)
        app.screen.query_one("#bulk-rejected").focus()
        await pilot.press("enter")
        await settle(pilot)
        assert type(app.screen).__name__ == "FullTextModal"
        assert f"reason: {reason}" in app.screen.query_one(TextArea).text


@run_async
async def test_the_bulk_preview_counts_every_duplicate_and_rejected_row(sqlite_db, tmp_path):
    """More than 1,000 duplicates and more than 1,000 rejected rows: the console shows the
    complete counts (`Preview` directly), not the lengths of the rows kept for display."""
    from backend.jobs.create import submit_csv
    from tests.support.engine import people, write_csv

    earlier = write_csv(tmp_path / "earlier.csv", people(1200))
    with session_scope() as session:
        submit_csv(session=session, path=earlier, job_type="welcome_std")
    rows = people(1200) + people(30, start=5000) + [{"email": f"broken{i}.example.com"} for i in range(1100)]
    path = write_csv(tmp_path / "next.csv", rows)
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot)
        await pilot.press("3")
        await settle(pilot)
        app.screen.query_one("#bulk-path").value = str(path)
        await pilot.press("ctrl+o")
        await settle(pilot)
        summary = _plain(app.screen.query_one("#bulk-summary"))
        assert "30 to send · 1,100 rejected · 1,200 duplicates skipped" in summary
        tabs = app.screen.query_one("#bulk-tabs")
        assert str(tabs.get_tab("tab-rejected").label) == "Rejected 1,100"
        assert str(tabs.get_tab("tab-duplicates").label) == "Duplicates 1,200"
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert "(1,100 rejected rows and 1,200 duplicates are not sent.)" in app.screen.question


@run_async
async def test_the_connection_test_dialog_wraps_its_results_whole(demo_db):
    from types import SimpleNamespace

    from console.screens.company_form import CheckResultsModal

    long_detail = ("the provider answered 401 Unauthorized: the API key was rejected for the domain "
                   "mg.acme.example.org; check the key in the company's settings and the sending domain")
    results = [SimpleNamespace(name="provider", ok=False, detail=long_detail),
               SimpleNamespace(name="storage", ok=True, detail="bucket reachable")]
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        app.push_screen(CheckResultsModal("acme", results))
        await settle(pilot)
        shown = app.screen.query_one("#check-results-text")
        assert shown.size.height >= 3  # the long answer wraps onto more lines
        text = " ".join(_plain(shown).split())
        assert f"FAIL provider · {long_detail}" in text and "ok storage · bucket reachable" in text
