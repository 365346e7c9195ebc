"""The callback actor: one delivery attempt per message; the schedule lives in the database."""

from __future__ import annotations

import threading

import dramatiq
import httpx

from actors import broker as _placeholder  # noqa: F401  (the placeholder broker, before the actor is declared)
from actors.enqueue import DELIVER_CALLBACK, enqueue_after_commit
from backend.core.followups import Followups
from backend.core.settings import get_settings
from backend.moodle import callbacks
from models import utcnow
from models.db import session_scope

_local = threading.local()


def _client() -> httpx.Client:
    # One connection pool per worker thread: Moodle sees kept-alive connections, not a storm.
    client = getattr(_local, "client", None)
    if client is None:
        # A Moodle that accepts and never answers costs a callback thread at most the total
        # timeout (`deliver` passes it per request); one that does not accept, the connect timeout.
        settings = get_settings()
        timeout = httpx.Timeout(settings.callback_timeout, connect=min(settings.callback_connect_timeout,
                                                                       settings.callback_timeout))
        client = _local.client = httpx.Client(follow_redirects=False, timeout=timeout)
    return client


@dramatiq.actor(actor_name=DELIVER_CALLBACK, queue_name="callbacks", max_retries=0)
def deliver_callback(delivery_id: int) -> None:
    with session_scope() as session:
        outcome = callbacks.deliver(session=session, delivery_id=delivery_id, http_client=_client())
    if outcome.next_attempt_at is not None:
        # The sweeper re-sends it too if this delayed message is lost; a duplicate is skipped.
        wait = (outcome.next_attempt_at - utcnow()).total_seconds()
        enqueue_after_commit(Followups(delayed_callbacks=[(delivery_id, wait)]))
