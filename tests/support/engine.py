"""Drive the engine in the test's own thread: the same functions the actors call, in order."""

from __future__ import annotations

import time
from pathlib import Path

from backend.delivery import engine
from backend.delivery.sending import run_batch
from backend.jobs.create import submit_csv
from models import JOB_FINAL, Job
from models.db import session_scope


def write_csv(path: Path, rows: list[dict], *, delimiter: str = ",") -> Path:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    lines = [delimiter.join(columns)] + [delimiter.join(str(row.get(c, "")) for c in columns) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def people(count: int, *, domain: str = "example.com", start: int = 0) -> list[dict]:
    return [
        {"email": f"user{i}@{domain}", "firstname": f"First{i}", "lastname": f"Last{i}",
         "username": f"user{i}", "password": f"Tmp-{i:05d}!x"}
        for i in range(start, start + count)
    ]


def submit(path: Path, job_type: str = "welcome_std", **options) -> int:
    with session_scope() as session:
        return submit_csv(session=session, path=path, job_type=job_type, **options).job.id


def run_inline(job_id: int, *, batch_ids: list[int] | None = None, max_rounds: int = 50) -> Job:
    """Dispatch (or take `batch_ids`), send every batch, retries included, and finish."""
    if batch_ids is None:
        with session_scope() as session:
            batch_ids = engine.dispatch_job(session=session, job_id=job_id).batch_ids
    pending = list(batch_ids)
    retry_at: dict[int, float] = {}
    for _ in range(max_rounds):
        for batch_id in pending:
            result = run_batch(batch_id=batch_id)
            for delayed_id, seconds in result.delayed_batches:
                retry_at[delayed_id] = time.monotonic() + seconds
            for finish_id in result.finish_job_ids:
                with session_scope() as session:
                    engine.finish_job(session=session, job_id=finish_id)
        with session_scope() as session:
            job = session.get(Job, job_id)
        if job.status in JOB_FINAL or not retry_at:
            return job
        wake = min(retry_at.values())
        time.sleep(max(0.0, wake - time.monotonic()))
        pending = [b for b, at in retry_at.items() if at <= time.monotonic() + 0.01]
        for b in pending:
            retry_at.pop(b)
    raise AssertionError(f"job {job_id} did not finish in {max_rounds} rounds")
