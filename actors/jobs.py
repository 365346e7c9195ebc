"""The job actors: dispatch a job into batches, send a batch, finish a job.

Each runs one backend step and enqueues its follow-ups itself. A follow-up the broker does not
take is left to the sweeper, not retried here: a Dramatiq retry would re-run an idempotent step
that finds nothing left to do (the job is dispatched, the batch settled), so it could never send
the lost messages again, and it needs the very broker that just failed.
"""

from __future__ import annotations

import dramatiq

from actors import broker as _placeholder  # noqa: F401  (the placeholder broker, before the actors are declared)
from actors.enqueue import DISPATCH_JOB, FINISH_JOB, SEND_BATCH, enqueue_after_commit
from backend.delivery import engine
from backend.delivery.sending import run_batch
from models.db import session_scope


@dramatiq.actor(actor_name=DISPATCH_JOB, queue_name="jobs", max_retries=10)
def dispatch_job(job_id: int) -> None:
    with session_scope() as session:
        if engine.count_dispatch_attempt(session=session, job_id=job_id) is None:
            return
    with session_scope() as session:
        followups = engine.dispatch_job(session=session, job_id=job_id)
    enqueue_after_commit(followups)


@dramatiq.actor(actor_name=SEND_BATCH, queue_name="send", max_retries=5)
def send_batch(batch_id: int) -> None:
    enqueue_after_commit(run_batch(batch_id=batch_id))


@dramatiq.actor(actor_name=FINISH_JOB, queue_name="jobs", max_retries=10)
def finish_job(job_id: int) -> None:
    with session_scope() as session:
        followups = engine.finish_job(session=session, job_id=job_id)
    enqueue_after_commit(followups)
