"""A small, deterministic store for screenshots, snapshot tests and trying the console out.

`seed(session=..., now=...)` writes three companies, nine jobs in every interesting state
(running, stuck, failing, paused, finished...) with the route each took and why, their batches
and recipients (a few bounced or complained), callback deliveries to Moodle with their attempts
(delivered, retrying, failed for good), and a few audit entries. Everything is placed relative
to `now`, so a frozen clock gives identical screens.

    python -m docs.tools.demo            # seeds the configured store (refuses a non-empty one)
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import func, insert, select
from sqlmodel import Session

from backend.schedules.definition import recurrence_of
from models import AuditEntry, Batch, Company, Job, Recipient, Rejection, Schedule, ScheduleRun
from models.callbacks import CallbackAttempt, CallbackDelivery

DEMO_NOW = datetime(2025, 3, 14, 9, 30, tzinfo=timezone.utc)
FIRST_NAMES = ("ada", "alan", "grace", "edsger", "barbara", "donald", "frances", "ken", "radia", "linus")
LAST_NAMES = ("lovelace", "turing", "hopper", "dijkstra", "liskov", "knuth", "allen", "thompson", "perlman")


@dataclass(frozen=True)
class DemoJob:
    type: str
    company: str | None
    status: str
    total: int
    sent: int
    failed: int  # of which the first third permanently failed
    created_ago: timedelta
    progress_ago: timedelta | None = None
    source: str = "users.csv"
    error: str | None = None


JOBS = (
    DemoJob("welcome_std", "acme", "completed", 1200, 1200, 0, timedelta(days=2), timedelta(days=2), "acme-new.csv"),
    DemoJob("reminder", "globex", "partial_failure", 800, 760, 40, timedelta(hours=26), timedelta(hours=25),
            "q1-reminders.csv"),
    DemoJob("welcome_lic", "acme", "processing", 3000, 1860, 12, timedelta(minutes=20), timedelta(seconds=4),
            "licences-march.csv"),
    DemoJob("reengagement", "initech", "processing", 1000, 400, 3, timedelta(minutes=55), timedelta(minutes=25),
            "inactive-30d.csv"),
    DemoJob("certificate", "globex", "queued", 300, 0, 0, timedelta(minutes=2), None, "completions.csv"),
    DemoJob("reminder", "acme", "paused", 1000, 200, 0, timedelta(hours=3), timedelta(hours=2), "due-friday.csv"),
    DemoJob("welcome_std", None, "failed", 50, 0, 50, timedelta(hours=5), timedelta(hours=5), "trial.csv",
            "every recipient failed: SMTP 550 relay denied"),
    DemoJob("welcome_std", "initech", "processing", 600, 150, 90, timedelta(minutes=9), timedelta(seconds=20),
            "bad-addresses.csv"),
    DemoJob("reminder", "globex", "cancelled", 400, 120, 0, timedelta(days=1), timedelta(days=1), "old-list.csv"),
)
ERRORS = ("SMTP 550 5.1.1 user unknown", "SMTP 421 try again later", "mailbox full (552)")
# Why each job took its route (job number -> route, provider, reason), as backend.delivery.routing says it.
ROUTES = {
    1: ("cloud", "ses", "company acme: cloud enabled, 1,200 ≥ threshold 500 -> ses"),
    2: ("cloud", "mailgun", "company globex: job forces cloud -> mailgun"),
    3: ("cloud", "ses", "company acme: cloud enabled, 3,000 ≥ threshold 500 -> ses"),
    4: ("local", "smtp", "company initech: cloud not enabled -> smtp"),
    5: ("cloud", "mailgun", "company globex: job forces cloud -> mailgun"),
    6: ("local", "smtp", ("company acme: cloud enabled, 1,000 ≥ threshold 500, but ses is unreachable "
                          "(email.eu-west-1.amazonaws.com:443: timed out); fallback queue_local -> smtp")),
    7: ("local", "smtp", "no company -> smtp"),
    8: ("local", "smtp", "company initech: cloud not enabled -> smtp"),
    9: ("cloud", "mailgun", "company globex: job forces cloud -> mailgun"),
}
# Sent recipients the provider later reported (job number -> {recipient index: status}).
FEEDBACK = {
    1: {**{i: "bounced" for i in range(7, 1200, 40)}, 13: "complained", 613: "complained"},
    6: {57: "bounced"},
    9: {**{i: "bounced" for i in range(2, 120, 5)}, 13: "complained", 88: "complained"},
}
FEEDBACK_ERRORS = {"bounced": "bounce: 550 5.1.1 mailbox does not exist", "complained": "complaint: abuse"}
# Seconds after the first attempt at which a delivery retries (backend.moodle.callbacks' schedule).
RETRY_AT = (0, 5, 35, 155, 755, 4355, 25955, 112355)


def _uuid(number: int) -> str:
    return f"{number:08x}-5eed-4a11-8c0d-{number:012x}"


def seed(*, session: Session, now: datetime = DEMO_NOW, batch_size: int = 200) -> list[int]:
    """Write the demo data into the caller's transaction; returns the job ids in JOBS order."""
    for company_id, name, settings in (
        ("acme", "Acme Training", {"enabled": True, "email_provider": "ses", "threshold": 500}),
        ("globex", "Globex Academy", {"enabled": True, "email_provider": "mailgun"}),
        ("initech", "Initech Learning", {"enabled": False}),
    ):
        session.add(Company(id=company_id, name=name, settings=settings, created_at=now - timedelta(days=30),
                            updated_at=now - timedelta(days=3)))
    session.flush()
    job_ids = []
    R = Recipient.__table__
    for number, spec in enumerate(JOBS, start=1):
        created = now - spec.created_ago
        started = created + timedelta(seconds=30) if spec.status not in ("queued",) else None
        finished = now - spec.progress_ago if spec.status in ("completed", "partial_failure", "failed",
                                                              "cancelled") else None
        job = Job(
            uuid=_uuid(number), type=spec.type, company_id=spec.company, status=spec.status, source="csv",
            source_name=spec.source, total=spec.total, batch_count=-(-spec.total // batch_size),
            sent_count=spec.sent, failed_count=spec.failed, created_at=created, updated_at=now, error=spec.error,
            enqueued_at=created, started_at=started, finished_at=finished, created_by="alice",
            last_progress_at=(now - spec.progress_ago) if spec.progress_ago else None,
            route=ROUTES[number][0], provider=ROUTES[number][1], route_reason=ROUTES[number][2],
            cloud_preference="force_cloud" if spec.company == "globex" else "auto",
            rejected_count=2 if number == 2 else 0,
            bounced_count=sum(1 for v in FEEDBACK.get(number, {}).values() if v == "bounced"),
            complained_count=sum(1 for v in FEEDBACK.get(number, {}).values() if v == "complained"),
            callback_url=f"https://moodle.{spec.company}.example.org/local/mani/callback.php"
            if number in CALLBACKS else None,
        )
        session.add(job)
        session.flush()
        job_ids.append(job.id)
        rows = []
        for batch_number, start in enumerate(range(0, spec.total, batch_size), start=1):
            size = min(batch_size, spec.total - start)
            indexes = range(start, start + size)
            sent = sum(1 for i in indexes if i < spec.sent)
            failed = sum(1 for i in indexes if spec.sent <= i < spec.sent + spec.failed)
            done = sent + failed == size
            status = {"cancelled": "cancelled", "queued": "queued"}.get(spec.status) or (
                ("completed" if not failed else "partial_failure" if sent else "failed") if done else
                "processing" if sent + failed else "queued")
            batch_id = session.execute(insert(Batch.__table__).values(
                job_id=job.id, number=batch_number, size=size, status=status, attempts=1 if sent + failed else 0,
                sent_count=sent, failed_count=failed, created_at=created,
                started_at=started if sent + failed else None,
                finished_at=(now - (spec.progress_ago or timedelta())) if done else None,
                last_error=ERRORS[0] if failed else None,
            ).returning(Batch.__table__.c.id)).scalar_one()
            for i in indexes:
                first, last = FIRST_NAMES[i % len(FIRST_NAMES)], LAST_NAMES[(i // 7) % len(LAST_NAMES)]
                email = f"{first}.{last}{i}@{spec.company or 'example'}.org"
                if i < spec.sent:
                    status_r, error, attempts = "sent", None, 1
                    if i in FEEDBACK.get(number, {}):
                        status_r = FEEDBACK[number][i]
                        error = FEEDBACK_ERRORS[status_r]
                    window = (spec.created_ago - (spec.progress_ago or timedelta())).total_seconds()
                    sent_at = (now - (spec.progress_ago or timedelta())) - timedelta(
                        seconds=window * (spec.sent - 1 - i) / max(spec.sent, 1))
                elif i < spec.sent + spec.failed:
                    k = i - spec.sent
                    status_r = "permanently_failed" if k < max(spec.failed // 3, 1) else "failed"
                    error, attempts, sent_at = ERRORS[k % len(ERRORS)], 3 if status_r == "failed" else 1, None
                else:
                    status_r = "cancelled" if spec.status == "cancelled" else "pending"
                    error, attempts, sent_at = None, 0, None
                rows.append({
                    "job_id": job.id, "batch_id": batch_id, "line": i + 2, "userid": str(1000 + i), "email": email,
                    "email_norm": email.lower(), "firstname": first.title(), "lastname": last.title(),
                    "username": f"{first}{i}", "variables": {}, "status": status_r, "attempts": attempts,
                    "last_error": error, "sent_at": sent_at, "updated_at": sent_at or created,
                    "certificate_url": f"https://certs.example.org/{_uuid(number)[:8]}/{i}.pdf"
                    if spec.type == "certificate" and status_r == "sent" else None,
                })
        for chunk in range(0, len(rows), 1000):
            session.execute(insert(R), rows[chunk:chunk + 1000])
        if number in CALLBACKS:
            _seed_callbacks(session, job, number, now)
        if number == 2:
            session.execute(insert(Rejection.__table__), [
                {"job_id": job.id, "line": 14, "email": "not-an-address", "reason": "invalid email address"},
                {"job_id": job.id, "line": 90, "email": None, "reason": "missing email"},
            ])
    for minutes, actor, action, target, details in (
        (400, "alice", "job.submit", _uuid(6), {"recipients": 1000, "file": "due-friday.csv"}),
        (120, "bob", "job.pause", _uuid(6), {"reason": "customer asked to hold"}),
        (90, "alice", "company.settings", "acme", {"changed": ["email_provider", "ses_secret_key"],
                                                   "ses_secret_key": "****"}),
        (45, "root", "deadletter.delete", "default/3f1e", {"actor": "send_batch"}),
        (8, "alice", "job.retry", _uuid(2), {"count": 40}),
    ):
        session.add(AuditEntry(at=now - timedelta(minutes=minutes), actor=actor, source="console", action=action,
                               target=target, details=details))
    session.flush()
    _seed_schedules(session, job_ids, now)
    return job_ids


def _seed_schedules(session: Session, job_ids: list[int], now: datetime) -> None:
    """Three schedules: a daily welcome whose last run made job 1, a re-engagement every 2 days
    whose last run could not reach Moodle, and weekly certificates, paused."""
    day = timedelta(days=1)
    welcome = Schedule(
        name="Daily welcome", company_id="acme", job_type="welcome_std", selection={"course_id": None}, since="24h",
        frequency="daily", time_of_day="09:00", timezone="Europe/Berlin", start_at=now - 30 * day,
        created_by="alice", created_at=now - 30 * day,
    )
    nudge = Schedule(
        name="Nudge inactive learners", company_id="initech", job_type="reengagement",
        selection={"course_id": 14, "inactive_for": 7 * 86400}, frequency="custom", custom_interval=2,
        time_of_day="10:00", timezone="Europe/Berlin", start_at=now - 20 * day, suppress_course_completion=True,
        suppresstarget=87, created_by="bob", created_at=now - 20 * day,
    )
    certificates = Schedule(
        name="Friday certificates", company_id="globex", job_type="certificate", selection={"course_id": None},
        action_type="both", cloud_preference="force_cloud", frequency="weekly", time_of_day="16:00",
        timezone="Europe/London", start_at=now - 60 * day, enabled=False, next_run_at=None, created_by="alice",
        created_at=now - 60 * day,
    )
    # The last occurrence before now and the next one, as the sweeper would have left them.
    for schedule, period in ((welcome, day), (nudge, 2 * day)):
        schedule.next_run_at = recurrence_of(schedule).next_at_or_after(now)
        schedule.last_run_at = recurrence_of(schedule).next_at_or_after(schedule.next_run_at - period - timedelta(hours=2))
    welcome.covered_until = int(welcome.last_run_at.timestamp())
    session.add_all([welcome, nudge, certificates])
    session.flush()
    session.add_all([
        ScheduleRun(schedule_id=welcome.id, scheduled_for=welcome.last_run_at, window_at=welcome.covered_until,
                    window_since=welcome.covered_until - 86400, status="created", attempts=1, job_id=job_ids[0],
                    finished_at=welcome.last_run_at + timedelta(minutes=1)),
        ScheduleRun(schedule_id=nudge.id, scheduled_for=nudge.last_run_at, window_at=int(nudge.last_run_at.timestamp()),
                    status="retrying", attempts=3, next_attempt_at=now + timedelta(seconds=40),
                    error="Moodle's database cannot be reached (moodle-db:3306: timed out)"),
    ])
    session.flush()


# Callback deliveries (job number -> one entry per delivery: batch number or None for the final one,
# seconds before `now` of the first attempt, and the answers of the attempts so far, oldest first).
OK, UNAVAILABLE = (200, None, '{"status":"ok"}'), (503, "HTTP 503", "Service Unavailable")
REFUSED = (422, "HTTP 422", '{"error":"recipient_updates[37]: unknown userid 1637 (deleted in Moodle?)"}')
DB_ERROR = (500, "HTTP 500", '{"exception":"dml_write_exception","message":"Error writing to database"}')
CALLBACKS = {
    1: [(n, 172800 - 60 * n, [REFUSED] * 8 if n == 4 else [OK]) for n in range(1, 7)] + [(None, 172400, [OK])],
    2: [(1, 93000, [OK]), (2, 92950, [UNAVAILABLE, OK]), (3, 92900, [DB_ERROR] * 7), (4, 90000, [OK]),
        (None, 90000, [OK])],
    3: [(n, 1170 - 110 * n, [OK]) for n in range(1, 9)] + [(9, 60, [UNAVAILABLE] * 3)],
    9: [(None, 86400, [OK])],
}


def _seed_callbacks(session: Session, job: Job, number: int, now: datetime) -> None:
    R, B = Recipient.__table__.c, Batch.__table__.c
    batches = dict(session.execute(select(B.number, B.id).where(B.job_id == job.id)).all())
    reported = [batches[n] for n, _, _ in CALLBACKS[number] if n]
    for batch_number, ago, answers in CALLBACKS[number]:
        batch_id = batches.get(batch_number)
        # The final delivery reports the recipients no batch delivery covers (as backend.moodle.callbacks does).
        where = R.batch_id == batch_id if batch_number else (R.job_id == job.id) & R.batch_id.not_in(reported)
        ids = list(session.execute(select(R.id).where(where).order_by(R.id)).scalars())
        first = now - timedelta(seconds=ago)
        ok = answers[-1] is OK
        retries = len(answers) - (1 if ok else 0)  # the schedule is used up after 8 failed attempts
        delivery = CallbackDelivery(
            job_id=job.id, batch_id=batch_id, kind="batch" if batch_number else "final", url=job.callback_url,
            recipient_ids=ids, include_job_status=batch_number is None, attempts=len(answers),
            status="delivered" if ok else "failed" if len(answers) >= len(RETRY_AT) else "pending",
            retry_index=min(retries, len(RETRY_AT) - 1), created_at=first,
            updated_at=first + timedelta(seconds=RETRY_AT[len(answers) - 1]),
            delivered_at=first + timedelta(seconds=RETRY_AT[len(answers) - 1]) if ok else None,
        )
        if not ok and len(answers) < len(RETRY_AT):
            delivery.next_attempt_at = first + timedelta(seconds=RETRY_AT[len(answers)])
        delivery.last_status_code, delivery.last_error = answers[-1][0], answers[-1][1]
        session.add(delivery)
        session.flush()
        for attempt, (code, error, response) in enumerate(answers, start=1):
            at = first + timedelta(seconds=RETRY_AT[attempt - 1])
            session.add(CallbackAttempt(
                delivery_id=delivery.id, number=attempt, started_at=at, status_code=code, error=error,
                response_excerpt=response, update_count=len(ids), body_timestamp=int(at.timestamp()),
                duration_ms=120 + (attempt * 37 + delivery.id * 11) % 200,
            ))


def demo_broker():
    """An in-process broker holding one dead letter with fixed ids and times (screenshots, snapshots)."""
    from dramatiq import Message
    from dramatiq.broker import MessageProxy
    from dramatiq.brokers.stub import StubBroker

    broker = StubBroker()
    broker.declare_queue("default")
    stamp = int(DEMO_NOW.timestamp() * 1000) - 600_000
    message = Message(queue_name="default", actor_name="send_batch", args=(17,), kwargs={},
                      options={"retries": 5, "requeue_timestamp": stamp,
                               "traceback": "Traceback...\nConnectionError: SMTP server closed the connection"},
                      message_id="3f1e9c2a-0000-4000-8000-000000000017", message_timestamp=stamp - 60_000)
    broker.dead_letters_by_queue["default"].append(MessageProxy(message))
    return broker


def main() -> int:
    from models.db import session_scope

    with session_scope() as session:
        if session.execute(select(func.count()).select_from(Job.__table__)).scalar_one():
            print("The store already has jobs: the demo only seeds an empty one.", file=sys.stderr)
            return 1
        ids = seed(session=session, now=datetime.now(timezone.utc))
    print(f"Seeded {len(ids)} demo jobs.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
