"""The broker: Redis when `MANI_REDIS_URL` is set, else the in-process embedded broker.

Actors are declared at import on a placeholder broker, and `use()` (or `configure()`, which
builds one from the settings) moves them onto the real one. Left alone, Dramatiq would pick a
RabbitMQ broker on 127.0.0.1 by itself.

The questions only the broker can answer live here too: is a worker listening, is the send
queue empty, and which errors mean "the broker is down".
"""

from __future__ import annotations

import threading
import time

import dramatiq
import dramatiq.errors
import redis.exceptions
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import AgeLimit, Callbacks, Pipelines, Retries, ShutdownNotifications, TimeLimit

from backend.core.settings import Settings, get_settings

# Seven days, Dramatiq's default: dead letters stay visible in the console for a week.
DEAD_MESSAGE_TTL_MS = 7 * 24 * 3600 * 1000
# What a send raises when the broker cannot be reached.
BROKER_ERRORS: tuple[type[BaseException], ...] = (
    dramatiq.errors.ConnectionError, redis.exceptions.RedisError, OSError,
)


def _middleware() -> list:
    return [
        AgeLimit(),
        # A batch of slow SMTP can take minutes; nothing we run should take half an hour.
        TimeLimit(time_limit=30 * 60 * 1000),
        ShutdownNotifications(),
        Callbacks(),
        Pipelines(),
        Retries(max_retries=5, min_backoff=1000, max_backoff=5 * 60 * 1000),
    ]


_placeholder = StubBroker(middleware=_middleware())
dramatiq.set_broker(_placeholder)
_lock = threading.Lock()
_current: dramatiq.Broker | None = None
_chosen = False  # `use()` was given a broker explicitly (the console's own, a test's)
_local_workers = 0  # workers consuming from the current broker in this process


def build_broker(settings: Settings) -> dramatiq.Broker:
    if settings.redis_url:
        return RedisBroker(
            url=settings.redis_url,
            namespace=settings.redis_namespace,
            middleware=_middleware(),
            heartbeat_timeout=settings.broker_heartbeat_timeout_ms,
            dead_message_ttl=DEAD_MESSAGE_TTL_MS,
        )
    return StubBroker(middleware=_middleware())


def _switch(broker: dramatiq.Broker, *, chosen: bool) -> dramatiq.Broker:
    global _current, _chosen
    with _lock:
        previous = _current or _placeholder
        if previous is not broker:
            for actor in list(previous.actors.values()):
                actor.broker = broker
                broker.declare_actor(actor)
        dramatiq.set_broker(broker)
        _current, _chosen = broker, chosen
        return broker


def use(broker: dramatiq.Broker) -> dramatiq.Broker:
    """Make `broker` the one every mani actor sends to and consumes from (the console's own, a test's)."""
    return _switch(broker, chosen=True)


def configure(*, settings: Settings | None = None) -> dramatiq.Broker:
    """Build the broker the settings describe and use it."""
    return _switch(build_broker(settings or get_settings()), chosen=False)


def current() -> dramatiq.Broker:
    """The broker in use, built from the settings on first use."""
    return _current or configure()


def reset() -> None:
    """Forget the broker in use (tests switch between brokers)."""
    global _current, _chosen, _local_workers
    with _lock:
        if _current is not None:
            for actor in list(_current.actors.values()):
                actor.broker = _placeholder
                _placeholder.declare_actor(actor)
            dramatiq.set_broker(_placeholder)
            try:
                _current.close()
            except Exception:  # noqa: BLE001 - closing a dead connection is not worth failing over
                pass
        _current, _chosen, _local_workers = None, False, 0


def note_local_worker(*, running: bool) -> None:
    """A worker of this process started (or stopped) consuming from the current broker."""
    global _local_workers
    with _lock:
        _local_workers = max(0, _local_workers + (1 if running else -1))


def reaches_workers() -> bool:
    """Does a message sent now reach a worker?

    Yes on Redis, which every worker reads; on a broker chosen with `use()`; and on the embedded
    broker while a worker of this process consumes it (`mani submit --wait`). Otherwise a message
    would sit in this process's memory and die with it: the stored work waits for the sweeper of
    `mani worker` instead, and must not be stamped as enqueued.
    """
    broker = current()
    return isinstance(broker, RedisBroker) or _chosen or _local_workers > 0


def live_workers(*, heartbeat_seconds: float = 60.0) -> int | None:
    """How many other processes consume from Redis right now; None on the embedded broker.

    Every Redis broker stamps a heartbeat in `<namespace>:__heartbeats__` on each command, and
    a worker's consumers poll every few seconds, so a fresh stamp means a live worker.
    """
    broker = current()
    if not isinstance(broker, RedisBroker):
        return None
    now_ms = int(time.time() * 1000)
    fresh = broker.client.zrangebyscore(f"{broker.namespace}:__heartbeats__", now_ms - heartbeat_seconds * 1000, "+inf")
    return len({member.decode() if isinstance(member, bytes) else member for member in fresh} - {broker.broker_id})


def send_queue_empty() -> bool | None:
    """Whether the broker holds no batch message right now; None when it cannot tell."""
    broker = current()
    if isinstance(broker, RedisBroker):
        return broker.client.llen(f"{broker.namespace}:send") == 0
    return None


# A worker whose heartbeat is older than this is dead: the messages it had fetched are lost
# until someone sends them again (Dramatiq's own maintenance does so only now and then).
DEAD_WORKER_SECONDS = 10.0


def held_messages(queues: tuple[str, ...] = ("send", "jobs")) -> dict[str, set[int]] | None:
    """What the broker still holds: actor name -> the ids its messages carry; None when it cannot tell.

    A message counts when it waits in a queue or its delay queue, or a live worker has fetched
    it. One fetched by a dead worker (heartbeat older than DEAD_WORKER_SECONDS) does not: it
    sits in that worker's ack set and nobody will run it. This is how the sweeper tells, within
    seconds, a batch waiting its turn from one whose message died with a worker or with Redis.
    """
    broker = current()
    if not isinstance(broker, RedisBroker):
        return None
    client, namespace = broker.client, broker.namespace
    now_ms = int(time.time() * 1000)
    dead = [member.decode() if isinstance(member, bytes) else member for member in client.zrangebyscore(
        f"{namespace}:__heartbeats__", 0, now_ms - DEAD_WORKER_SECONDS * 1000)]
    held: dict[str, set[int]] = {}
    for queue in queues:
        for name in (queue, f"{queue}.DQ"):
            lost = set()
            for worker_id in dead:
                lost |= {m.decode() if isinstance(m, bytes) else m
                         for m in client.smembers(f"{namespace}:__acks__.{worker_id}.{name}")}
            # Keyed by the broker's own id (options["redis_message_id"]), as the ack sets are.
            for key, data in client.hgetall(f"{namespace}:{name}.msgs").items():
                if (key.decode() if isinstance(key, bytes) else key) in lost:
                    continue
                try:
                    message = dramatiq.Message.decode(data)
                except Exception:  # noqa: BLE001 - a message we cannot read holds nothing of ours
                    continue
                if not message.args:
                    continue
                held.setdefault(message.actor_name, set()).add(message.args[0])
    return held
