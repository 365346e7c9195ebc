"""Dramatiq dead letters: list, requeue and delete messages that exhausted their retries.

Two brokers are understood:
- `RedisBroker`: dead letters live in the sorted set `<namespace>:<queue>.XQ` (score: when the
  message died, in ms) with their bodies in the hash `<namespace>:<queue>.XQ.msgs`. Requeueing
  moves a body back to `<namespace>:<queue>.msgs` + the list `<namespace>:<queue>` in one
  MULTI/EXEC, exactly as dramatiq's own `enqueue` command writes it (see dispatch.lua).
- `StubBroker` (the embedded default, in-process): `broker.dead_letters_by_queue`.

A requeued message starts with a fresh retry count. Requeueing is safe to repeat: the engine
claims a batch with a conditional UPDATE, so a message that is delivered twice does no harm.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import redis
from dramatiq import Message

from backend.core.errors import ManiError, NotFound
from backend.core.settings import get_settings

# Options that belong to the failed delivery, not to the message: dropped on requeue.
_DELIVERY_OPTIONS = ("eta", "retries", "requeue_timestamp", "redis_message_id", "traceback")
# A Redis broker that does not answer within this many seconds counts as down.
REDIS_TIMEOUT = 2.0


class BrokerUnavailable(ManiError):
    """The broker (Redis) cannot be reached."""


@dataclass(slots=True)
class DeadLetter:
    key: str  # "<queue>/<id>": what requeue() and delete() take
    queue: str
    message_id: str
    actor: str
    arguments: str
    error: str
    dead_at: datetime | None
    retries: int


@dataclass(slots=True)
class BrokerStats:
    kind: str  # "redis", "stub" or "none"
    ready: int = 0
    delayed: int = 0
    dead_letters: int = 0
    queues: dict[str, int] = field(default_factory=dict)  # queue -> ready + delayed

    @property
    def depth(self) -> int:
        return self.ready + self.delayed


def _canonical(queue: str) -> str:
    return queue[:-3] if queue.endswith(".DQ") else queue


def _error_text(options: dict, exception: BaseException | None = None) -> str:
    if exception is not None:
        return f"{type(exception).__name__}: {exception}"
    trace = (options or {}).get("traceback") or ""
    lines = [line.strip() for line in trace.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no error recorded (dead-lettered on its first try)"


def _arguments(args: Any, kwargs: Any) -> str:
    parts = [repr(a) for a in (args or ())] + [f"{k}={v!r}" for k, v in (kwargs or {}).items()]
    return ", ".join(parts)


def _fresh(message, *, queue: str):
    """The dead message as a new delivery on its canonical queue, with no retry history."""
    options = {k: v for k, v in message.options.items() if k not in _DELIVERY_OPTIONS}
    return Message(
        queue_name=queue, actor_name=message.actor_name, args=message.args, kwargs=message.kwargs,
        options=options, message_id=message.message_id, message_timestamp=message.message_timestamp,
    )


class _RedisDeadLetters:
    def __init__(self, client, namespace: str) -> None:
        self.client = client
        self.ns = namespace

    def _call(self, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError) as error:
            raise BrokerUnavailable(f"The broker (Redis) is unreachable: {error}") from error

    def _queues(self) -> tuple[set[str], set[str]]:
        """(queues with messages or delayed messages, queues with dead letters)."""
        prefix = f"{self.ns}:"
        live, dead = set(), set()
        for raw in self._call(lambda: list(self.client.scan_iter(match=f"{prefix}*", count=1000))):
            key = raw.decode() if isinstance(raw, bytes) else raw
            name = key[len(prefix):]
            if name.endswith(".XQ"):
                dead.add(name[:-3])
            elif name.endswith(".msgs") and not name.endswith(".XQ.msgs"):
                # Every ready, delayed or in-flight message has its body in "<queue>[.DQ].msgs".
                live.add(_canonical(name[:-5]))
        return live, dead

    def stats(self) -> BrokerStats:
        live, dead = self._queues()
        stats = BrokerStats(kind="redis")

        def read(pipe):
            for queue in sorted(live):
                pipe.llen(f"{self.ns}:{queue}")
                pipe.hlen(f"{self.ns}:{queue}.DQ.msgs")
            for queue in sorted(dead):
                pipe.zcard(f"{self.ns}:{queue}.XQ")
            return pipe.execute()

        results = self._call(lambda: read(self.client.pipeline(transaction=False)))
        for index, queue in enumerate(sorted(live)):
            ready, delayed = results[2 * index], results[2 * index + 1]
            stats.ready += ready
            stats.delayed += delayed
            stats.queues[queue] = ready + delayed
        stats.dead_letters = sum(results[2 * len(live):])
        return stats

    def list(self, limit: int) -> list[DeadLetter]:
        _, dead = self._queues()
        letters: list[DeadLetter] = []
        for queue in sorted(dead):
            entries = self._call(self.client.zrevrange, f"{self.ns}:{queue}.XQ", 0, limit - 1, withscores=True)
            ids = [member for member, _ in entries]
            bodies = self._call(self.client.hmget, f"{self.ns}:{queue}.XQ.msgs", ids) if ids else []
            for (member, score), body in zip(entries, bodies):
                redis_id = member.decode() if isinstance(member, bytes) else member
                dead_at = datetime.fromtimestamp(score / 1000, tz=timezone.utc)
                if body is None:
                    continue  # expired between the two reads
                try:
                    message = Message.decode(body)
                except Exception:  # noqa: BLE001 - an undecodable body is still listed, to be deleted
                    letters.append(DeadLetter(f"{queue}/{redis_id}", queue, redis_id, "?", "", "undecodable message",
                                              dead_at, 0))
                    continue
                letters.append(DeadLetter(
                    key=f"{queue}/{redis_id}", queue=queue, message_id=message.message_id, actor=message.actor_name,
                    arguments=_arguments(message.args, message.kwargs), error=_error_text(message.options),
                    dead_at=dead_at, retries=int(message.options.get("retries", 0)),
                ))
        letters.sort(key=lambda letter: letter.dead_at or datetime.min.replace(tzinfo=timezone.utc), reverse=True)
        return letters[:limit]

    def _all_keys(self) -> list[str]:
        _, dead = self._queues()
        keys = []
        for queue in sorted(dead):
            for member in self._call(self.client.zrange, f"{self.ns}:{queue}.XQ", 0, -1):
                keys.append(f"{queue}/{member.decode() if isinstance(member, bytes) else member}")
        return keys

    def move(self, keys: list[str] | None, *, requeue: bool) -> int:
        done = 0
        for key in self._all_keys() if keys is None else keys:
            queue, _, redis_id = key.partition("/")
            xq, xq_msgs = f"{self.ns}:{queue}.XQ", f"{self.ns}:{queue}.XQ.msgs"
            body = self._call(self.client.hget, xq_msgs, redis_id)
            if body is None:
                if keys is not None:
                    raise NotFound(f"dead letter {key} is gone (requeued, deleted or expired)")
                continue
            pipe = self.client.pipeline(transaction=True)
            if requeue:
                message = _fresh(Message.decode(body), queue=queue)
                new_id = str(uuid.uuid4())
                message = message.copy(options={"redis_message_id": new_id})
                pipe.hset(f"{self.ns}:{queue}.msgs", new_id, message.encode())
                pipe.rpush(f"{self.ns}:{queue}", new_id)
            pipe.zrem(xq, redis_id)
            pipe.hdel(xq_msgs, redis_id)
            self._call(pipe.execute)
            done += 1
        return done


class _StubDeadLetters:
    def __init__(self, broker) -> None:
        self.broker = broker

    def stats(self) -> BrokerStats:
        stats = BrokerStats(kind="stub")
        for name, queue in self.broker.queues.items():
            size = queue.qsize()
            if name.endswith(".DQ"):
                stats.delayed += size
            else:
                stats.ready += size
            stats.queues[_canonical(name)] = stats.queues.get(_canonical(name), 0) + size
        stats.dead_letters = len(self.broker.dead_letters)
        return stats

    def _entries(self):
        for queue, proxies in self.broker.dead_letters_by_queue.items():
            for proxy in list(proxies):
                yield _canonical(queue), proxies, proxy

    def list(self, limit: int) -> list[DeadLetter]:
        letters = []
        for queue, _, proxy in self._entries():
            stamp = proxy.options.get("requeue_timestamp")
            letters.append(DeadLetter(
                key=f"{queue}/{proxy.message_id}", queue=queue, message_id=proxy.message_id, actor=proxy.actor_name,
                arguments=_arguments(proxy.args, proxy.kwargs),
                error=_error_text(proxy.options, getattr(proxy, "_exception", None)),
                dead_at=datetime.fromtimestamp(stamp / 1000, tz=timezone.utc) if stamp else None,
                retries=int(proxy.options.get("retries", 0)),
            ))
        return letters[:limit]

    def move(self, keys: list[str] | None, *, requeue: bool) -> int:
        wanted = None if keys is None else set(keys)
        found = set()
        done = 0
        for queue, proxies, proxy in self._entries():
            key = f"{queue}/{proxy.message_id}"
            if wanted is not None and key not in wanted:
                continue
            found.add(key)
            proxies.remove(proxy)
            if requeue:
                self.broker.enqueue(_fresh(proxy._message, queue=queue))
            done += 1
        missing = (wanted or set()) - found
        if missing:
            raise NotFound(f"dead letter {sorted(missing)[0]} is gone (requeued or deleted)")
        return done


def _redis_client(url: str):
    return redis.Redis.from_url(url, socket_connect_timeout=REDIS_TIMEOUT, socket_timeout=REDIS_TIMEOUT)


_clients: dict[str, Any] = {}


def _adapter(broker=None):
    """The dead-letter view of `broker`, or of the configured broker when none is given."""
    if broker is None:
        settings = get_settings()
        if settings.redis_url:
            client = _clients.get(settings.redis_url)
            if client is None:
                client = _clients[settings.redis_url] = _redis_client(settings.redis_url)
            return _RedisDeadLetters(client, settings.redis_namespace)
        # The embedded default's broker lives inside each process: there is no shared
        # dead-letter queue to show (workers log their failures, the store keeps the state).
        return None
    if hasattr(broker, "dead_letters_by_queue"):
        return _StubDeadLetters(broker)
    if hasattr(broker, "client") and hasattr(broker, "namespace"):
        return _RedisDeadLetters(broker.client, broker.namespace)
    raise ManiError(f"dead letters are not supported for {type(broker).__name__}")


def broker_stats(*, broker=None) -> BrokerStats:
    """Queue depth and dead-letter count; raises BrokerUnavailable when Redis does not answer."""
    adapter = _adapter(broker)
    return adapter.stats() if adapter else BrokerStats(kind="none")


def list_dead_letters(*, broker=None, limit: int = 500) -> list[DeadLetter]:
    """Dead-lettered messages, newest first."""
    adapter = _adapter(broker)
    return adapter.list(limit) if adapter else []


def requeue(*, broker=None, keys: list[str] | None = None) -> int:
    """Put dead letters back on their queues (`keys=None`: all of them); returns how many."""
    adapter = _adapter(broker)
    return adapter.move(keys, requeue=True) if adapter else 0


def delete(*, broker=None, keys: list[str] | None = None) -> int:
    """Drop dead letters for good (`keys=None`: all of them); returns how many."""
    adapter = _adapter(broker)
    return adapter.move(keys, requeue=False) if adapter else 0


def describe(letter: DeadLetter) -> dict:
    """An audit-friendly summary (no message arguments: they may carry personal data)."""
    return {"queue": letter.queue, "actor": letter.actor, "message_id": letter.message_id}
