"""Broker set-up: Redis when `MANI_REDIS_URL` is set, else the in-process embedded broker.

Actors are declared at import on a placeholder broker, and `configure()` moves them onto the
real one. (Left alone, Dramatiq would pick a RabbitMQ broker on 127.0.0.1 by itself.)
"""

from __future__ import annotations

import threading

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import AgeLimit, Callbacks, Pipelines, Retries, ShutdownNotifications, TimeLimit

from backend.core.settings import Settings, get_settings

# Seven days, Dramatiq's default: dead letters stay visible in the console for a week.
DEAD_MESSAGE_TTL_MS = 7 * 24 * 3600 * 1000


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
_configured: dramatiq.Broker | None = None


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


def configure(broker: dramatiq.Broker | None = None, *, settings: Settings | None = None) -> dramatiq.Broker:
    """Make `broker` (default: one built from settings) the broker every mani actor uses."""
    global _configured
    import actors.jobs  # noqa: F401  (declare every actor before moving them)
    from actors import _load_optional_actors

    _load_optional_actors()
    with _lock:
        broker = broker or build_broker(settings or get_settings())
        previous = _configured or _placeholder
        for actor in list(previous.actors.values()):
            actor.broker = broker
            broker.declare_actor(actor)
        dramatiq.set_broker(broker)
        _configured = broker
        return broker


def get_broker() -> dramatiq.Broker:
    """The configured broker, configuring it from settings on first use."""
    return _configured or configure()


def reset() -> None:
    """Forget the configured broker (tests switch between brokers)."""
    global _configured
    with _lock:
        if _configured is not None:
            for actor in list(_configured.actors.values()):
                actor.broker = _placeholder
                _placeholder.declare_actor(actor)
            dramatiq.set_broker(_placeholder)
            try:
                _configured.close()
            except Exception:  # noqa: BLE001 - closing a dead connection is not worth failing over
                pass
        _configured = None
