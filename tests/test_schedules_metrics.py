"""/metrics counts schedules due, overdue and failed, read from the store."""

from __future__ import annotations

from datetime import timedelta

from backend.ops.metrics import build_registry, render
from models import Company, Schedule, ScheduleRun, utcnow
from models.db import session_scope


def schedule(name: str, **fields) -> Schedule:
    values = dict(name=name, company_id="1", job_type="welcome_std", frequency="daily", time_of_day="09:00",
                  timezone="UTC", start_at=utcnow() - timedelta(days=3))
    values.update(fields)
    return Schedule(**values)


def samples(text: str) -> dict[str, float]:
    found = {}
    for line in text.splitlines():
        if line.startswith("mani_schedules{"):
            key, value = line.rsplit(" ", 1)
            found[key.split('"')[1]] = float(value)
    return found


def test_due_overdue_and_failed(sqlite_db):
    now = utcnow()
    with session_scope() as session:
        session.add(Company(id="1", name="Acme"))
        session.add_all([
            schedule("due now", next_run_at=now - timedelta(seconds=10)),
            schedule("overdue", next_run_at=now - timedelta(hours=2)),
            schedule("later", next_run_at=now + timedelta(hours=2)),
            schedule("paused", enabled=False, next_run_at=None),
            failing := schedule("failing", next_run_at=now + timedelta(hours=20)),
        ])
        session.flush()
        session.add_all([
            ScheduleRun(schedule_id=failing.id, scheduled_for=now - timedelta(days=1), window_at=1, status="created"),
            ScheduleRun(schedule_id=failing.id, scheduled_for=now - timedelta(minutes=30), window_at=2,
                        status="retrying", error="Moodle unreachable", next_attempt_at=now - timedelta(seconds=1)),
        ])
    values = samples(render(build_registry()).decode())
    # The retrying run is due again and half an hour late: its schedule is due, overdue and failed.
    assert values == {"due": 3, "overdue": 2, "failed": 1}
