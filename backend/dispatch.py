"""Handing work to the broker. A broker that is down never loses work: the sweeper re-sends it.

This is the one place `backend/` reaches into `actors/`, and it does so lazily, so that the
domain code imports without a broker.
"""

from __future__ import annotations

import logging

from sqlalchemy import update

from backend.delivery.engine import Followups
from models import Job, utcnow
from models.db import session_scope

log = logging.getLogger(__name__)


def broker_errors() -> tuple[type[BaseException], ...]:
    import dramatiq.errors
    import redis.exceptions

    return (dramatiq.errors.ConnectionError, redis.exceptions.RedisError, OSError)


def _job_actors():
    """The job actors, bound to the configured broker (configured from settings on first use)."""
    from actors import jobs as job_actors
    from actors.broker import get_broker

    get_broker()
    return job_actors


def enqueue_job(job_id: int) -> bool:
    """Ask a worker to dispatch a stored job; False (and a log line) when the broker is down."""
    job_actors = _job_actors()
    try:
        job_actors.dispatch_job.send(job_id)
    except broker_errors() as error:
        log.warning("job %s is stored; the broker is unreachable (%s), the sweeper will dispatch it", job_id, error)
        return False
    with session_scope() as session:
        session.execute(update(Job.__table__).where(Job.__table__.c.id == job_id).values(enqueued_at=utcnow()))
    return True


def enqueue_batches(batch_ids: list[int]) -> bool:
    job_actors = _job_actors()

    try:
        for batch_id in batch_ids:
            job_actors.send_batch.send(batch_id)
    except broker_errors() as error:
        log.warning("%d batches wait for the sweeper; the broker is unreachable (%s)", len(batch_ids), error)
        return False
    return True


def enqueue_followups(followups: Followups, *, batch_id: int | None = None) -> None:
    """Send what a committed transaction asked for. Errors propagate: the actor is retried."""
    job_actors = _job_actors()

    for next_batch in followups.batch_ids:
        job_actors.send_batch.send(next_batch)
    if followups.retry_batch_in is not None and batch_id is not None:
        job_actors.send_batch.send_with_options(args=(batch_id,), delay=int(followups.retry_batch_in * 1000) + 50)
    for job_id in followups.finish_job_ids:
        job_actors.finish_job.send(job_id)
    if followups.callback_ids:
        from actors import callbacks as callback_actors

        for delivery_id in followups.callback_ids:
            callback_actors.deliver_callback.send(delivery_id)


def live_workers(*, heartbeat_seconds: float = 60.0) -> int | None:
    """How many other processes consume from Redis right now; None on the embedded broker.

    Every Redis broker stamps a heartbeat in `<namespace>:__heartbeats__` on each command, and
    a worker's consumers poll every few seconds, so a fresh stamp means a live worker.
    """
    import time

    from actors.broker import get_broker
    from dramatiq.brokers.redis import RedisBroker

    broker = get_broker()
    if not isinstance(broker, RedisBroker):
        return None
    now_ms = int(time.time() * 1000)
    fresh = broker.client.zrangebyscore(f"{broker.namespace}:__heartbeats__", now_ms - heartbeat_seconds * 1000, "+inf")
    return len({member.decode() if isinstance(member, bytes) else member for member in fresh} - {broker.broker_id})
