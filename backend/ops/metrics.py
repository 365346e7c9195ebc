"""Prometheus metrics, read from the database at scrape time.

The database is the source of truth and is shared by every worker host, so one scrape of any
`mani serve` sees the whole system. Every query is a GROUP BY over an indexed column or a
range over an index: cheap enough for a scrape every 15 s at 50,000-recipient jobs.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import case, func, select

from backend.companies.resolution import resolve
from backend.ops import deadletters
from models import BATCH_FINAL, SCHEDULE_RUN_OPEN, Batch, BatchStatus, Job, ProviderCircuit, Recipient, Schedule, ScheduleRun, utcnow
from models.callbacks import CallbackAttempt, CallbackDelivery
from models.db import session_scope

log = logging.getLogger(__name__)
SEND_RATE_WINDOW = 300
# A schedule due for longer than this is overdue (the sweeper runs every few seconds).
SCHEDULE_OVERDUE_SECONDS = 300
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _gauge(name: str, doc: str, labels: list[str] | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=labels)


def collect_families(session) -> list[GaugeMetricFamily]:
    """The metric families from one read of the database."""
    now = utcnow()
    jobs = _gauge("mani_jobs", "Jobs by status.", ["status"])
    for status, count in session.execute(select(Job.status, func.count()).group_by(Job.status)):
        jobs.add_metric([status], count)

    totals = session.execute(select(
        func.coalesce(func.sum(Job.sent_count), 0), func.coalesce(func.sum(Job.failed_count), 0),
        func.coalesce(func.sum(Job.bounced_count), 0), func.coalesce(func.sum(Job.complained_count), 0),
    )).one()
    recipients = _gauge("mani_recipients", "Recipients of finished work, from the jobs' counters.", ["outcome"])
    for outcome, value in zip(("sent", "failed", "bounced", "complained"), totals):
        recipients.add_metric([outcome], int(value))

    since = now - timedelta(seconds=SEND_RATE_WINDOW)
    recent = session.execute(select(func.count()).where(Recipient.sent_at >= since)).scalar_one()
    rate = _gauge("mani_send_rate_per_second", f"Messages sent per second over the last {SEND_RATE_WINDOW} s.")
    rate.add_metric([], recent / SEND_RATE_WINDOW)

    batches = dict(session.execute(select(Batch.status, func.count()).group_by(Batch.status)).all())
    deliveries = dict(session.execute(
        select(CallbackDelivery.status, func.count()).group_by(CallbackDelivery.status)).all())
    depth = _gauge("mani_queue_depth", "Work waiting in the store: batches to send, callbacks to deliver.", ["queue"])
    depth.add_metric(["batches"], batches.get(BatchStatus.QUEUED, 0) + batches.get(BatchStatus.RETRY_PENDING, 0))
    depth.add_metric(["batches_processing"], batches.get(BatchStatus.PROCESSING, 0))
    depth.add_metric(["callbacks"], deliveries.get("pending", 0))

    dead = _gauge("mani_dead_letters", "Work given up on: failed batches, dead callback deliveries.", ["kind"])
    dead.add_metric(["batches"], batches.get(BatchStatus.FAILED, 0))
    dead.add_metric(["callbacks"], deliveries.get("failed", 0))

    callbacks = _gauge("mani_callback_deliveries", "Callback deliveries to Moodle by status.", ["status"])
    for status in ("pending", "delivered", "failed"):
        callbacks.add_metric([status], deliveries.get(status, 0))
    failed_attempts = session.execute(
        select(func.count()).where(CallbackAttempt.error.is_not(None), CallbackAttempt.started_at >= now - timedelta(hours=1))
    ).scalar_one()
    attempts = _gauge("mani_callback_failed_attempts_last_hour", "Callback attempts that failed in the last hour.")
    attempts.add_metric([], failed_attempts)

    down = _gauge("mani_provider_down_since_seconds",
                  "Unix time a route's provider went down for everyone (an open circuit); absent while it is up.",
                  ["company", "provider"])
    for circuit in session.execute(select(ProviderCircuit)).scalars():
        down.add_metric([circuit.company_id or "", circuit.provider], circuit.down_since.timestamp())

    return [jobs, recipients, rate, depth, dead, callbacks, attempts, down, schedule_family(session, now),
            handoff_family(session, now)]


def handoff_family(session, now) -> GaugeMetricFamily:
    """Batches at a company's own cloud worker not settled yet (open), and those of them with no
    report for `cloud_stuck_after` seconds (stuck): what `mani jobs show` flags, for an alert."""
    stuck_after = int(resolve(session=session, company_id=None).get("cloud_stuck_after") or 3600)
    last_heard = func.coalesce(Batch.reported_at, Batch.handoff_at)
    open_, stuck = session.execute(
        select(func.count(), func.coalesce(func.sum(
            case((last_heard < now - timedelta(seconds=stuck_after), 1), else_=0)), 0))
        .where(Batch.handoff_at.is_not(None), Batch.status.not_in(sorted(BATCH_FINAL)))
    ).one()
    family = _gauge("mani_cloud_handoff_batches", "Batches handed to a company's own cloud worker and not settled "
                    "(open), and those with no report for cloud_stuck_after seconds (stuck).", ["state"])
    family.add_metric(["open"], int(open_))
    family.add_metric(["stuck"], int(stuck))
    return family


def schedule_family(session, now) -> GaugeMetricFamily:
    """Schedules due (their time has come), overdue (due for more than 5 minutes: no worker is
    sweeping, or a run keeps failing) and failed (their latest run failed or is being retried)."""
    late = now - timedelta(seconds=SCHEDULE_OVERDUE_SECONDS)
    due_since: dict[int, object] = dict(session.execute(
        select(Schedule.id, Schedule.next_run_at).where(Schedule.enabled.is_(True), Schedule.next_run_at <= now)
    ).all())
    for schedule_id, scheduled_for in session.execute(
        select(ScheduleRun.schedule_id, ScheduleRun.scheduled_for)
        .join(Schedule, Schedule.id == ScheduleRun.schedule_id)
        .where(Schedule.enabled.is_(True), ScheduleRun.status.in_(sorted(SCHEDULE_RUN_OPEN)),
               ScheduleRun.next_attempt_at <= now)
    ):
        known = due_since.get(schedule_id)
        due_since[schedule_id] = scheduled_for if known is None else min(known, scheduled_for)
    due = len(due_since)
    overdue = sum(1 for moment in due_since.values() if moment < late)
    latest = select(func.max(ScheduleRun.id)).group_by(ScheduleRun.schedule_id).scalar_subquery()
    failed = session.execute(
        select(func.count()).where(ScheduleRun.id.in_(latest), ScheduleRun.status.in_(["failed", "retrying"]))
    ).scalar_one()
    family = _gauge("mani_schedules", "Schedules due, overdue (due for over 5 minutes) and failed (latest run "
                    "failed or retrying).", ["state"])
    family.add_metric(["due"], due)
    family.add_metric(["overdue"], overdue)
    family.add_metric(["failed"], failed)
    return family


def broker_families() -> list[GaugeMetricFamily]:
    """Queue depth and dead letters as the broker (Redis) sees them; `mani_broker_up` 0 when down."""
    up = _gauge("mani_broker_up", "1 when the broker answered this scrape.")
    try:
        stats = deadletters.broker_stats()
    except Exception as error:  # noqa: BLE001 - a metric must not fail the scrape
        log.warning("metrics: the broker could not be read (%s)", error)
        up.add_metric([], 0)
        return [up]
    up.add_metric([], 1)
    depth = _gauge("mani_broker_queue_depth", "Messages ready or delayed in the broker, per queue.", ["queue"])
    for queue, count in sorted(stats.queues.items()):
        depth.add_metric([queue], count)
    dead = _gauge("mani_broker_dead_letters", "Messages in the broker's dead-letter queues.")
    dead.add_metric([], stats.dead_letters)
    return [up, depth, dead]


class StoreCollector:
    """A custom collector: everything computed from the store on each scrape."""

    def __init__(self, session_factory=None) -> None:
        self._sessions = session_factory

    def collect(self):
        started = time.monotonic()
        up = _gauge("mani_store_up", "1 when the last scrape could read the database.")
        try:
            with (self._sessions or session_scope)(read_only=True) as session:
                families = collect_families(session)
            up.add_metric([], 1)
        except Exception as error:  # noqa: BLE001 - answer "down" instead of a failed scrape
            log.warning("metrics: the database could not be read (%s)", error)
            families = []
            up.add_metric([], 0)
        duration = _gauge("mani_scrape_duration_seconds", "Time spent reading the store for this scrape.")
        duration.add_metric([], time.monotonic() - started)
        yield from families
        yield from broker_families()
        yield up
        yield duration


def build_registry(session_factory=None) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(session_factory))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
