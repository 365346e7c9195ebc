"""The job actors: dispatch a job into batches, send a batch, finish a job."""

from __future__ import annotations

import dramatiq

import actors.broker  # noqa: F401
from backend.delivery import engine
from backend.dispatch import enqueue_followups
from backend.delivery.sending import run_batch
from models.db import session_scope


@dramatiq.actor(queue_name="jobs", max_retries=10)
def dispatch_job(job_id: int) -> None:
    with session_scope() as session:
        if engine.count_dispatch_attempt(session=session, job_id=job_id) is None:
            return
    with session_scope() as session:
        followups = engine.dispatch_job(session=session, job_id=job_id)
    enqueue_followups(followups)


@dramatiq.actor(queue_name="send", max_retries=5)
def send_batch(batch_id: int) -> None:
    enqueue_followups(run_batch(batch_id=batch_id), batch_id=batch_id)


@dramatiq.actor(queue_name="jobs", max_retries=10)
def finish_job(job_id: int) -> None:
    with session_scope() as session:
        followups = engine.finish_job(session=session, job_id=job_id)
    enqueue_followups(followups)
