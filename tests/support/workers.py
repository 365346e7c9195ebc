"""Real `mani worker` processes for tests, on the test's Redis namespace and database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from actors.enqueue import enqueue_after_commit
from backend.core.followups import Followups
from models import JOB_FINAL, Job
from models.db import session_scope

ROOT = Path(__file__).resolve().parents[2]


def worker_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()}
    env.update({
        "MANI_BATCH_LEASE_SECONDS": "5",
        "MANI_REQUEUE_AFTER_SECONDS": "5",
        "MANI_SWEEP_INTERVAL_SECONDS": "0.5",
        "MANI_BROKER_HEARTBEAT_TIMEOUT_MS": "5000",
        "MANI_LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
    })
    env.update(overrides)
    return env


class WorkerProcess:
    def __init__(self, *, processes: int = 1, threads: int = 4, log: Path, **env: str) -> None:
        self.log = log
        self._log_file = open(log, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cli", "worker", "--processes", str(processes), "--threads", str(threads)],
            cwd=ROOT, env=worker_env(**env), stdout=self._log_file, stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill(self) -> None:
        """SIGKILL, as the kernel's OOM killer or a pulled plug would."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log_file.close()


def wait_for_job(job_id: int, *, timeout: float = 90.0, log: Path | None = None) -> Job:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with session_scope(read_only=True) as session:
            job = session.get(Job, job_id)
            if job.status in JOB_FINAL:
                return job
        time.sleep(0.2)
    detail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
    raise AssertionError(f"job {job_id} is {job.status} after {timeout}s\n{detail}")


def run_on_worker(job_id: int, *, log: Path, **options) -> Job:
    """Enqueue a stored job, let one real `mani worker` run it to the end, and stop the worker."""
    worker = WorkerProcess(log=log, **options)
    try:
        assert enqueue_after_commit(Followups(dispatch_job_ids=[job_id]))
        return wait_for_job(job_id, log=log)
    finally:
        worker.stop()
