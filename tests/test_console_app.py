"""Pilot tests of mani-console against a real SQLite store seeded with real rows."""

from __future__ import annotations

import asyncio
import functools

import pytest
from sqlalchemy import func, select

from backend.core.errors import ReadOnly
from console.app import ManiConsole
from console.config import ConsoleConfig
from docs.tools.demo import DEMO_NOW, seed
from models import AuditEntry, Batch, Company, Job, Recipient
from models.db import session_scope
from tests.support.console import settle


def run_async(test):
    """Run an async test on its own event loop (no async plugin needed); fixtures still apply."""

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
        ids = seed(session=session, now=DEMO_NOW)
    return ids


def cell_text(table, row_key: str, column: int) -> str:
    value = table.get_row(row_key)[column]
    return getattr(value, "plain", str(value))


@run_async
async def test_dashboard_shows_active_jobs_and_updates_as_a_job_progresses(demo_db):
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot)
        table = app.screen.query_one("#active-jobs")
        assert table.row_count == 5  # queued, 3 processing, paused
        assert cell_text(table, "3", 5) == "1,860/3,000"
        banner = str(app.screen.query_one("Banner").render())
        assert "stuck" in banner and "failure rate" in banner

        # The job progresses: a worker commits 500 more sends.
        with session_scope() as session:
            job = session.get(Job, 3)
            job.sent_count = 2360
            batch = session.execute(select(Batch).where(Batch.job_id == 3, Batch.status == "queued")).scalars().first()
            batch.sent_count, batch.status = 500, "processing"
            session.add_all([job, batch])
        await pilot.press("ctrl+r")
        await settle(pilot)
        assert cell_text(table, "3", 5) == "2,360/3,000"

        # A job that finishes leaves the active table.
        with session_scope() as session:
            job = session.get(Job, 5)
            job.status = "completed"
            session.add(job)
        await pilot.press("ctrl+r")
        await settle(pilot)
        assert table.row_count == 4


@run_async
async def test_dashboard_refreshes_by_itself(demo_db):
    app = make_app(refresh=0.05)
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot)
        table = app.screen.query_one("#active-jobs")
        with session_scope() as session:
            job = session.get(Job, 8)
            job.sent_count = 400
            session.add(job)
        for _ in range(200):  # bounded wait for the timer; no timing is asserted
            await pilot.pause(0.02)
            if cell_text(table, "8", 5) == "400/600":
                break
        assert cell_text(table, "8", 5) == "400/600"


@run_async
async def test_a_failed_worker_is_one_notification_and_the_console_keeps_working(demo_db):
    """No worker catches its own errors: the one `Worker.StateChanged` handler says why."""
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        app.open_job(999)
        await settle(pilot)
        failures = [n for n in app._notifications if n.title == "Failed"]
        assert [n.message for n in failures] == ["no job '999': `mani jobs list` shows the jobs"]
        assert type(app.screen).__name__ == "JobDetailScreen"
        await pilot.press("escape", "2")
        await settle(pilot)
        assert app.screen.total > 0


def recipient_statuses(job_id: int) -> dict[str, int]:
    with session_scope() as session:
        rows = session.execute(
            select(Recipient.status, func.count()).where(Recipient.job_id == job_id).group_by(Recipient.status))
        return dict(rows.all())


@run_async
async def test_open_a_job_retry_one_failed_recipient_then_all(demo_db):
    before = recipient_statuses(2)
    assert before["failed"] + before["permanently_failed"] == 40
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        app.open_job(2)
        await settle(pilot)
        screen = app.screen
        assert screen.query_one("#recipients").row_count == 100  # one page, never the whole job
        screen.query_one("#recipient-status").value = "retryable"
        await settle(pilot)
        first = screen.page.rows[0]
        assert first.status in ("failed", "permanently_failed")

        await pilot.press("r")
        await pilot.pause()
        assert "Retry 1 recipient" in str(app.screen.query_one("#confirm-question").render())
        await pilot.press("y")
        await settle(pilot)
        with session_scope() as session:
            assert session.get(Recipient, first.id).status == "retry_pending"
        assert recipient_statuses(2).get("retry_pending") == 1

        await pilot.press("R")
        await settle(pilot)  # the question's count is read when the key is pressed
        assert "Retry all 39 failed recipients" in str(app.screen.query_one("#confirm-question").render())
        await pilot.press("y")
        await settle(pilot)
    after = recipient_statuses(2)
    assert after.get("failed", 0) == after.get("permanently_failed", 0) == 0
    assert after["retry_pending"] == 40
    with session_scope() as session:
        entries = session.execute(select(AuditEntry).where(AuditEntry.action == "job.retry",
                                                           AuditEntry.actor == "tester")).scalars().all()
        assert [e.details["recipients"] for e in entries] == [1, 39]
        assert {e.source for e in entries} == {"console"}


@run_async
async def test_a_question_counts_what_its_action_will_do_even_when_the_screen_is_stale(demo_db):
    app = make_app()  # refresh=0: the screen is not refreshed by itself
    async with app.run_test(size=(80, 24)) as pilot:
        app.open_job(2)
        await settle(pilot)
        assert app.screen.detail.retryable == 40
        with session_scope() as session:  # meanwhile a worker fails one more recipient
            sent = session.execute(select(Recipient).where(Recipient.job_id == 2, Recipient.status == "sent")
                                   ).scalars().first()
            sent.status = "failed"
            session.add(sent)
        await pilot.press("R")
        await settle(pilot)
        assert "Retry all 41 failed recipients of job 2?" in app.screen.question
        await pilot.press("y")
        await settle(pilot)
        assert any("Job 2: 41 recipients set to retry" in n.message for n in app._notifications)


@run_async
async def test_job_detail_pages_through_recipients_and_searches(demo_db):
    app = make_app(page_size=50)
    async with app.run_test(size=(160, 48)) as pilot:
        app.open_job(3)
        await settle(pilot)
        screen = app.screen
        assert (screen.page.start, screen.page.total) == (0, 3000)
        await pilot.press("right_square_bracket")
        await settle(pilot)
        assert screen.page.start == 50 and screen.page.rows[0].line == 52
        await pilot.press("ctrl+end")
        await settle(pilot)
        assert screen.page.start == 2950 and not screen.page.has_next
        await pilot.press("slash")
        await pilot.press(*"radia.turing8@")
        await pilot.press("enter")
        await settle(pilot)
        assert screen.page.total == 1 and screen.page.rows[0].email == "radia.turing8@acme.org"


@run_async
async def test_export_the_job_log_as_csv(demo_db, tmp_path):
    app = make_app(export_dir=tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        app.open_job(2)
        await settle(pilot)
        await pilot.press("e")
        await pilot.pause()
        await pilot.press("enter")
        await settle(pilot)
    files = list(tmp_path.glob("mani-job-2-*.csv"))
    assert len(files) == 1
    lines = files[0].read_text().splitlines()
    assert lines[0].startswith("recipient_id,line,userid,email") and len(lines) == 801
    with session_scope() as session:
        assert session.execute(select(func.count()).where(AuditEntry.action == "job.export")).scalar_one() == 1


@run_async
async def test_history_finds_a_job_by_recipient_email(demo_db):
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("2")
        await settle(pilot)
        screen = app.screen
        assert screen.total == 9
        await pilot.press("slash")
        await pilot.press(*"ken.turing7@globex")
        await pilot.press("enter")
        await settle(pilot)
        assert sorted(row.id for row in screen.rows) == [2, 5, 9]
        await pilot.press("enter")
        await settle(pilot)
        assert type(app.screen).__name__ == "JobDetailScreen"
        await pilot.press("escape")
        assert app.screen is screen


@run_async
async def test_edit_a_company_settings_validating_as_you_type(demo_db, monkeypatch):
    from cryptography.fernet import Fernet

    from backend.core.settings import reset_settings_cache

    monkeypatch.setenv("MANI_SECRET_KEY", Fernet.generate_key().decode())
    reset_settings_cache()
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.press("4")
        await settle(pilot)
        await pilot.press("e")
        await settle(pilot)
        form = app.screen
        threshold = form.query_one("#setting-threshold")
        assert threshold.value == "500"
        threshold.value = "lots"
        await pilot.pause()
        assert form.query_one("#error-threshold").has_class("-shown")
        await pilot.press("ctrl+s")
        await pilot.pause()
        with session_scope() as session:
            assert session.get(Company, "acme").settings["threshold"] == 500  # refused, nothing saved
        threshold.value = "750"
        form.query_one("#setting-mailgun_api_key").value = "key-0123456789abcdef"
        await pilot.pause()
        assert not form.query_one("#error-threshold").has_class("-shown")
        await pilot.press("ctrl+s")
        await settle(pilot)
        # It asks first, saying what changes (a secret never shown).
        assert type(app.screen).__name__ == "ConfirmModal"
        question = app.screen.question
        assert "threshold: 500 → 750" in question and "mailgun_api_key: replaced" in question
        assert "0123456789abcdef" not in question
        await pilot.press("y")
        await settle(pilot)
        assert type(app.screen).__name__ == "CompaniesScreen"
        shown = " ".join(str(app.screen.query_one("#company-settings").get_row("mailgun_api_key")[1]).split())
        assert "0123456789abcdef" not in shown
    with session_scope() as session:
        company = session.get(Company, "acme")
        assert company.settings["threshold"] == 750
        assert "mailgun_api_key" in company.secrets and "0123456789" not in company.secrets["mailgun_api_key"]
        entry = session.execute(select(AuditEntry).where(AuditEntry.action == "company.settings",
                                                         AuditEntry.actor == "tester")).scalar_one()
        assert "0123456789abcdef" not in str(entry.details)


@run_async
async def test_edit_the_global_settings_from_the_companies_screen(demo_db):
    from models import GlobalSetting

    app = make_app()
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.press("4")
        await settle(pilot)
        await pilot.press("g")
        await settle(pilot)
        form = app.screen
        assert form.query_one("#company-form").border_title == "Global settings"
        # An empty field shows the value in effect and where it comes from, not "(default)".
        placeholder = form.query_one("#setting-job_batch_size").placeholder
        assert placeholder.startswith("(") and ", from " in placeholder, placeholder
        batch_size = form.query_one("#setting-job_batch_size")
        batch_size.value = "0"
        await pilot.pause()
        assert form.query_one("#error-job_batch_size").has_class("-shown")
        batch_size.value = "500"
        await pilot.pause()
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert "job_batch_size: (" in app.screen.question and ", from " in app.screen.question
        assert "→ 500" in app.screen.question
        await pilot.press("y")
        await settle(pilot)
        assert type(app.screen).__name__ == "CompaniesScreen"
    with session_scope() as session:
        assert session.get(GlobalSetting, "job_batch_size").value == "500"
        assert session.execute(select(AuditEntry).where(AuditEntry.action == "settings.global",
                                                        AuditEntry.actor == "tester")).scalar_one()


def _dead_letter_broker():
    import dramatiq
    from dramatiq import Worker
    from dramatiq.brokers.stub import StubBroker

    broker = StubBroker()
    broker.emit_after("process_boot")

    @dramatiq.actor(broker=broker, max_retries=0, actor_name="always_fails")
    def always_fails(batch_id):
        raise RuntimeError(f"SMTP server closed the connection (batch {batch_id})")

    always_fails.send(17)
    worker = Worker(broker, worker_timeout=50)
    worker.start()
    broker.join(always_fails.queue_name, fail_fast=False)
    worker.stop()
    return broker


@run_async
async def test_dead_letter_requeue_on_the_stub_broker(sqlite_db):
    broker = _dead_letter_broker()
    assert len(broker.dead_letters) == 1
    app = make_app(broker=broker)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert app.screen.query_one("#counter-dead").value == "1"
        await pilot.press("5")
        await settle(pilot)
        assert "SMTP server closed" in str(app.screen.query_one("#dead-error").render())
        await pilot.press("r")
        await pilot.pause()
        await pilot.press("y")
        await settle(pilot)
        assert app.screen.letters == []
    assert broker.dead_letters == [] and broker.queues["default"].qsize() == 1
    with session_scope() as session:
        assert session.execute(select(AuditEntry.action)).scalars().all() == ["deadletter.requeue"]


@pytest.mark.redis
@run_async
async def test_dead_letter_requeue_on_redis(sqlite_db, redis_url):
    import dramatiq
    import redis
    from dramatiq import Worker
    from dramatiq.brokers.redis import RedisBroker

    from backend.core.settings import get_settings

    namespace = get_settings().redis_namespace
    broker = RedisBroker(url=redis_url, namespace=namespace)

    @dramatiq.actor(broker=broker, max_retries=0, actor_name="always_fails_redis")
    def always_fails(batch_id):
        raise RuntimeError("SMTP 421 try again later")

    always_fails.send(17)
    always_fails.send(18)
    worker = Worker(broker, worker_timeout=50)
    worker.start()
    broker.join(always_fails.queue_name)
    worker.stop()
    client = redis.Redis.from_url(redis_url)
    assert client.zcard(f"{namespace}:default.XQ") == 2

    app = make_app()  # the configured Redis, as in production
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot)
        assert app.screen.query_one("#counter-dead").value == "2"
        await pilot.press("5")
        await settle(pilot)
        assert len(app.screen.letters) == 2
        await pilot.press("r")
        await pilot.pause()
        await pilot.press("y")
        await settle(pilot)
        assert len(app.screen.letters) == 1
    assert client.zcard(f"{namespace}:default.XQ") == 1
    assert client.llen(f"{namespace}:default") == 1
    with session_scope() as session:
        assert session.execute(select(AuditEntry.action)).scalars().all() == ["deadletter.requeue"]


@run_async
async def test_read_only_mode_refuses_every_change(demo_db, tmp_path):
    broker = _dead_letter_broker()
    app = make_app(read_only=True, broker=broker)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        app.open_job(2)
        await settle(pilot)
        for key in ("R", "p", "c"):
            await pilot.press(key)
            await pilot.pause()
            assert type(app.screen).__name__ == "JobDetailScreen"  # no confirmation was even asked
        messages = [n.message for n in app._notifications]
        assert messages and all("Read-only mode" in m for m in messages)
        await pilot.press("escape", "4")
        await settle(pilot)
        await pilot.press("e")
        await pilot.pause()
        assert type(app.screen).__name__ == "CompaniesScreen"
        await pilot.press("5")
        await settle(pilot)
        await pilot.press("R")
        await pilot.pause()
        assert type(app.screen).__name__ == "DeadLettersScreen"
        with pytest.raises(ReadOnly):
            from console import calls

            calls.write(app.screen, lambda session: None)
    assert recipient_statuses(2).get("retry_pending") is None
    assert len(broker.dead_letters) == 1
    with session_scope() as session:
        assert session.execute(select(func.count()).select_from(AuditEntry)).scalar_one() == 5  # the demo's own


@pytest.mark.redis
@run_async
async def test_redis_down_shows_a_banner_and_recovers_by_itself(sqlite_db, redis_url, monkeypatch):
    from backend.core.settings import reset_settings_cache

    monkeypatch.setenv("MANI_REDIS_URL", "redis://127.0.0.1:1/0")
    reset_settings_cache()
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert app.broker_error and "unreachable" in app.broker_error
        assert "unreachable" in str(app.screen.query_one("Banner").render())
        assert app.screen.query_one("#counter-dead").value == "?"
        await pilot.press("2")  # the console keeps working
        await settle(pilot)
        assert app.screen.total == 0
        monkeypatch.setenv("MANI_REDIS_URL", redis_url)
        reset_settings_cache()
        await pilot.press("1", "ctrl+r")
        await settle(pilot)
        assert app.broker_error is None
        assert not app.screen.query_one("Banner").has_class("-shown")


@run_async
async def test_bulk_csv_preview_then_send_creates_the_job(demo_db, tmp_path):
    csv_file = tmp_path / "new-users.csv"
    csv_file.write_text(
        "email,firstname,lastname,username,password\n"
        "new.one@acme.org,New,One,newone,Secret-1\n"
        "new.two@acme.org,New,Two,newtwo,Secret-2\n"
        "not-an-address,Bad,Row,bad,Secret-3\n"
        "new.three@acme.org,New,Three,newthree,Secret-4\n"
    )
    app = make_app(csv_dir=tmp_path)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.press("3")
        await settle(pilot)
        screen = app.screen
        screen.query_one("#bulk-company").value = "acme"
        screen.query_one("#bulk-path").value = str(csv_file)
        await pilot.press("ctrl+o")
        await settle(pilot)
        assert screen.preview.accepted == 3
        assert [int(getattr(r, "line", 0)) for r in screen.preview.rejected] == [4]
        assert "Subject:" in str(screen.query_one("#bulk-message-text").render())
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert "to 3 recipients" in str(app.screen.query_one("#confirm-question").render())
        await pilot.press("y")
        await settle(pilot)
        assert type(app.screen).__name__ == "JobDetailScreen"
    with session_scope() as session:
        job = session.execute(select(Job).where(Job.source_name == str(csv_file))).scalar_one()
        assert (job.total, job.company_id, job.created_by, job.rejected_count) == (3, "acme", "tester", 1)
        assert session.execute(select(func.count()).where(AuditEntry.action == "job.submit",
                                                          AuditEntry.target == job.uuid)).scalar_one() >= 1


# Callbacks to Moodle, delivery rates, the route ---------------------------------------------------


def _delivery(delivery_id: int):
    from models.callbacks import CallbackDelivery

    with session_scope() as session:
        delivery = session.get(CallbackDelivery, delivery_id)
        session.expunge(delivery)
        return delivery


def _text(widget) -> str:
    return " ".join(str(widget.render()).split())


@run_async
async def test_job_callbacks_tab_lists_opens_the_attempt_log_and_redelivers(demo_db):
    from dramatiq.brokers.stub import StubBroker

    from models import utcnow

    broker = StubBroker()
    app = make_app(broker=broker)
    async with app.run_test(size=(80, 24)) as pilot:
        app.open_job(1)
        await settle(pilot)
        screen = app.screen
        summary = _text(screen.query_one("#job-summary"))
        assert "callbacks 6/7 delivered (85%) · 1 failed" in summary
        assert "route cloud via ses: company acme: cloud enabled, 1,200 ≥ threshold 500 -> ses" in summary
        await pilot.press("t", "t", "t")
        await settle(pilot)
        assert screen.query_one("TabbedContent").active == "tab-callbacks"
        table = screen.query_one("#callbacks")
        assert app.focused is table and table.row_count == 7
        assert [cell_text(table, "4", i) for i in (1, 3, 4, 5)] == ["batch 4", "failed", "8", "HTTP 422"]

        await pilot.press("down", "down", "down", "enter")  # the failed one
        await settle(pilot)
        log = app.screen
        assert type(log).__name__ == "CallbackLogScreen" and log.delivery_id == 4
        assert log.query_one("#attempts").row_count == 8
        assert "unknown userid 1637" in _text(log.query_one("#attempt-detail"))
        assert "the retry schedule is used up" in _text(log.query_one("#callback-summary"))

        await pilot.press("r")
        await pilot.pause()
        question = _text(app.screen.query_one("#confirm-question"))
        assert "callback 4 (batch 4 of job 1, failed, 200 recipient updates)" in question
        await pilot.press("y")
        await settle(pilot)
        assert "pending" in _text(log.query_one("#callback-summary"))
        await pilot.press("escape")
        await settle(pilot)
        assert app.screen is screen
        assert "callbacks 6/7 delivered (85%) · 1 pending" in _text(screen.query_one("#job-summary"))
        assert cell_text(table, "4", 3) == "pending"
        await pilot.press("R")  # nothing failed any more: nothing to ask
        await pilot.pause()
        assert app.screen is screen
        assert any("no failed callbacks of job 1" in n.message for n in app._notifications)

    delivery = _delivery(4)
    assert (delivery.status, delivery.retry_index, delivery.attempts) == ("pending", 0, 8)
    assert abs((delivery.next_attempt_at - utcnow()).total_seconds()) < 60
    with session_scope() as session:
        entry = session.execute(select(AuditEntry).where(AuditEntry.action == "callback.redeliver")).scalar_one()
        assert (entry.actor, entry.source, entry.target) == ("tester", "console", "delivery:4")
        assert entry.details == {"job_id": 1, "was": "failed"}
    assert broker.queues["callbacks"].qsize() == 1  # handed to the workers after the commit


@run_async
async def test_redeliver_every_failed_callback_from_the_dead_letters_screen(demo_db):
    app = make_app()
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        assert "1 callback(s) to Moodle failed: press 5 to redeliver" in _text(app.screen.query_one("Banner"))
        await pilot.press("5")
        await settle(pilot)
        screen = app.screen
        failed = screen.query_one("#failed-callbacks")
        assert app.focused is failed  # no dead letter on the embedded broker: the callbacks have the focus
        assert failed.row_count == 1 and cell_text(failed, "4", 1) == "1"
        await pilot.press("R")
        await pilot.pause()
        assert "all 1 failed callbacks of every job (200 recipient updates)" in _text(
            app.screen.query_one("#confirm-question"))
        await pilot.press("y")
        await settle(pilot)
        assert failed.row_count == 0
        assert any("mani worker" in n.message for n in app._notifications)  # no broker here: the sweeper sends it
    assert _delivery(4).status == "pending"


@run_async
async def test_read_only_mode_refuses_redelivery(demo_db):
    app = make_app(read_only=True)
    async with app.run_test(size=(80, 24)) as pilot:
        app.open_job(1)
        await settle(pilot)
        await pilot.press("t", "t", "t", "down", "down", "down")
        for key in ("r", "R"):
            await pilot.press(key)
            await pilot.pause()
            assert type(app.screen).__name__ == "JobDetailScreen"  # no confirmation was even asked
        await pilot.press("enter")
        await settle(pilot)
        await pilot.press("r")
        await pilot.pause()
        assert type(app.screen).__name__ == "CallbackLogScreen"
        messages = [n.message for n in app._notifications]
        assert len(messages) == 3 and all("Read-only mode" in m for m in messages)
    assert _delivery(4).status == "failed"
    with session_scope() as session:
        assert session.execute(select(func.count()).where(AuditEntry.action == "callback.redeliver")).scalar_one() == 0


@run_async
async def test_bounce_and_complaint_rates_per_job_and_per_company(demo_db):
    app = make_app()
    async with app.run_test(size=(120, 36)) as pilot:
        app.open_job(9)
        await settle(pilot)
        summary = app.screen.query_one("#job-summary")
        assert "bounces 20.00% (24) ▲ target < 2% · complaints 1.67% (2)" in _text(summary)
        app.open_job(3)
        await settle(pilot)
        assert "bounces 0.00% (0) · complaints 0.00% (0)" in _text(app.screen.query_one("#job-summary"))
        await pilot.press("escape", "escape", "4")
        await settle(pilot)
        companies = app.screen.query_one("#companies")
        assert [cell_text(companies, key, 2) for key in ("acme", "globex", "initech")] == ["0.95%", "2.73%", "0.00%"]
        assert "bold red" in str(companies.get_row("globex")[2].style)
        assert "acme: 3,260 sent · bounces 0.95% (31) · complaints 0.06% (2)" in _text(
            app.screen.query_one("#company-rates"))


def test_main_masks_secrets_in_logs_before_starting(monkeypatch):
    from backend.core import secrets
    from console import app as console_app

    called = []
    monkeypatch.setattr(secrets, "install_log_masking", lambda: called.append("masking"))
    monkeypatch.setattr(console_app.ManiConsole, "run", lambda self: called.append("run"))
    assert console_app.main(["--refresh", "0"]) == 0
    assert called == ["masking", "run"]
