"""`mani submit --moodle` on Redis: the job goes to a real `mani worker` process through Redis and
its mail to a real SMTP server, for the fixture site on MariaDB and PostgreSQL."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import cli
from backend.core.settings import reset_settings_cache
from tests.support.moodle_fixture import COMPANY, EXPECTED
from tests.support.workers import WorkerProcess, wait_for_job

pytestmark = [pytest.mark.redis, pytest.mark.mariadb, pytest.mark.postgres, pytest.mark.slow,
              pytest.mark.xdist_group("workers")]


def test_submit_moodle_job_runs_on_a_redis_worker(sqlite_db, redis_smtp, moodle_site, monkeypatch, tmp_path):
    monkeypatch.setenv("MANI_MOODLE_DATABASE_URL", moodle_site.readonly_url)
    monkeypatch.setenv("MANI_MOODLE_TABLE_PREFIX", moodle_site.prefix)
    reset_settings_cache()
    result = CliRunner().invoke(cli.app, ["submit", "--moodle", "--company", str(COMPANY), "--type", "welcome_std",
                                          "--since", "24h", "--at", "2027-01-15T08:00:00Z", "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["accepted"] == len(EXPECTED["welcome_std"])
    worker = WorkerProcess(log=tmp_path / "worker.log")
    try:
        job = wait_for_job(document["id"], log=tmp_path / "worker.log")
    finally:
        worker.stop()
    assert (job.status, job.sent_count) == ("completed", len(EXPECTED["welcome_std"]))
    assert sorted(redis_smtp.received_addresses()) == sorted(f"user{uid}@example.com" for uid in EXPECTED["welcome_std"])
