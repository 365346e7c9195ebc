"""Two real `mani worker` processes on a real Redis and PostgreSQL: a due schedule fires once."""

from __future__ import annotations

import time
from collections import Counter

import pytest
from sqlmodel import select

from backend.core.settings import reset_settings_cache
from backend.schedules.definition import ScheduleInput
from backend.schedules.service import add_schedule
from models import Company, Job, Schedule, ScheduleRun, utcnow
from models.db import session_scope
from tests.support.workers import WorkerProcess, wait_for_job

pytestmark = [pytest.mark.redis, pytest.mark.slow, pytest.mark.mariadb, pytest.mark.xdist_group("workers")]


@pytest.mark.parametrize("moodle_site", ["mariadb"], indirect=True)
def test_two_workers_fire_a_due_schedule_exactly_once(postgres_db, redis_smtp, moodle_site, tmp_path, monkeypatch):
    monkeypatch.setenv("MANI_MOODLE_DATABASE_URL", moodle_site.readonly_url)
    monkeypatch.setenv("MANI_MOODLE_TABLE_PREFIX", moodle_site.prefix)
    reset_settings_cache()
    with session_scope() as session:
        session.add(Company(id="1", name="Acme Training"))
    workers = [WorkerProcess(processes=2, threads=2, log=tmp_path / f"worker{n}.log") for n in range(2)]
    try:
        time.sleep(4)  # four sweepers up and sweeping before the schedule is due
        with session_scope() as session:
            schedule = add_schedule(
                session=session, actor="admin", source="cli",
                spec=ScheduleInput(name="Welcome", company_id="1", job_type="welcome_std", frequency="daily",
                                   timezone="Europe/Berlin", since="3650d"),
            )
        assert schedule.next_run_at <= utcnow()  # without --start and --time: due now
        deadline = time.monotonic() + 60
        run = None
        while time.monotonic() < deadline:
            with session_scope(read_only=True) as session:
                run = session.exec(select(ScheduleRun)).first()
                if run is not None and run.job_id is not None:
                    break
            time.sleep(0.2)
        assert run is not None and run.job_id is not None, (tmp_path / "worker0.log").read_text()[-2000:]
        job = wait_for_job(run.job_id, log=workers[0].log)
        time.sleep(3)  # several more sweeps on every process
        with session_scope(read_only=True) as session:
            runs = session.exec(select(ScheduleRun)).all()
            jobs = session.exec(select(Job)).all()
            stored = session.get(Schedule, schedule.id)
    finally:
        for worker in workers:
            worker.stop()
    assert len(runs) == 1 and len(jobs) == 1
    assert (job.status, job.sent_count) == ("completed", job.total) and job.total > 0
    assert stored.next_run_at > utcnow() and stored.last_run_at == schedule.next_run_at
    sent = Counter(redis_smtp.received_addresses())
    assert len(sent) == job.total and set(sent.values()) == {1}
