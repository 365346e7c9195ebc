"""Sending what the backend asked for, once the transaction that produced it has committed.

Every caller uses `enqueue_after_commit`: the CLI, the console, the HTTP API, the actors for
their own follow-ups, and the sweeper. Messages are sent by actor name through the broker in
use, so this module needs no actor module (they import it).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from actors import broker as broker_setup
from backend.core.followups import Followups
from backend.delivery.engine import mark_jobs_enqueued
from models.db import session_scope

log = logging.getLogger(__name__)

# The actors' names, shared with their declarations in `actors.jobs` and `actors.callbacks`.
DISPATCH_JOB = "dispatch_job"
SEND_BATCH = "send_batch"
FINISH_JOB = "finish_job"
DELIVER_CALLBACK = "deliver_callback"
# A delayed message is sent this much after its due time, so that it never arrives early.
DELAY_MARGIN_MS = 50


def enqueue_after_commit(followups: Followups) -> bool:
    """Send the messages `followups` asks for; True when every one was sent (or none was needed).

    False, with nothing raised, when the messages could not go out: the broker is down (one
    log line), or no worker can receive them from this process (the embedded broker with no
    worker here). Nothing is lost either way: the work is in the store, and the sweeper of
    `mani worker` sends it. A job's `enqueued_at` is stamped only once its message was sent.
    """
    if not followups:
        return True
    if not broker_setup.reaches_workers():
        return False
    broker = broker_setup.current()
    try:
        for actor_name, object_id, delay_ms in _messages(followups):
            broker.get_actor(actor_name).send_with_options(args=(object_id,), delay=delay_ms)
    except broker_setup.BROKER_ERRORS as error:
        log.warning("the broker is unreachable (%s): %s wait in the store for the sweeper",
                    error, followups.describe())
        return False
    if followups.dispatch_job_ids:
        with session_scope() as session:
            mark_jobs_enqueued(session=session, job_ids=followups.dispatch_job_ids)
    return True


def _messages(followups: Followups) -> Iterator[tuple[str, int, int | None]]:
    """(actor name, id, delay in ms or None) for every message `followups` asks for."""
    now = [(DISPATCH_JOB, followups.dispatch_job_ids), (SEND_BATCH, followups.batch_ids),
           (FINISH_JOB, followups.finish_job_ids), (DELIVER_CALLBACK, followups.callback_ids)]
    later = [(SEND_BATCH, followups.delayed_batches), (DELIVER_CALLBACK, followups.delayed_callbacks)]
    for actor_name, ids in now:
        yield from ((actor_name, object_id, None) for object_id in ids)
    for actor_name, delayed in later:
        yield from ((actor_name, object_id, _delay_ms(seconds)) for object_id, seconds in delayed)


def _delay_ms(seconds: float) -> int:
    return int(max(0.0, seconds) * 1000) + DELAY_MARGIN_MS
