"""The callback actor: one delivery attempt per message; the schedule lives in the database."""

from __future__ import annotations

import actors.broker  # noqa: F401  (the placeholder broker, before the actor is declared)

import logging
import threading

import dramatiq
import httpx

from backend.moodle import callbacks
from backend.dispatch import broker_errors
from models import utcnow
from models.db import session_scope

log = logging.getLogger(__name__)
_local = threading.local()


def _client() -> httpx.Client:
    # One connection pool per worker thread: Moodle sees kept-alive connections, not a storm.
    client = getattr(_local, "client", None)
    if client is None:
        client = _local.client = httpx.Client(follow_redirects=False)
    return client


@dramatiq.actor(queue_name="callbacks", max_retries=0)
def deliver_callback(delivery_id: int) -> None:
    with session_scope() as session:
        outcome = callbacks.deliver(session=session, delivery_id=delivery_id, http_client=_client())
    if outcome.next_attempt_at is not None:
        # The sweeper re-sends it too if this delayed message is lost; a duplicate is skipped.
        delay_ms = max(0, int((outcome.next_attempt_at - utcnow()).total_seconds() * 1000))
        try:
            deliver_callback.send_with_options(args=(delivery_id,), delay=delay_ms)
        except broker_errors() as error:
            log.warning("callback %s: retry left to the sweeper (%s)", delivery_id, error)
