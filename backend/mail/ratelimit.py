"""A per-company sending rate shared by every worker on every host.

The algorithm is GCRA (a token bucket kept as one timestamp, the "theoretical arrival time"),
with reservations: `acquire(n)` books the next n slots and sleeps until the first is due, so
waiting callers are served in order and each call costs one Redis round trip. The clock is
Redis's own (`TIME`), so hosts with skewed clocks still share one schedule.

What it guarantees: over any window of W seconds, at most `rate * W + max(burst, n)` messages
are let through, where n is the largest single request. A request bigger than the burst goes
out at once and the following callers pay for it (so a batch API call of n recipients is not
held back n/rate seconds before it starts).

Without Redis (the embedded default) the same algorithm runs in process memory, shared by the
threads of one process. A configured Redis that cannot be reached also falls back to memory,
with a warning: limits then hold per process, not across hosts.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

from backend.core.errors import ManiError
from backend.core.settings import get_settings

log = logging.getLogger(__name__)

_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local n = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local max_wait = tonumber(ARGV[4])
local pause = tonumber(ARGV[5])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
if pause > 0 then
  if now + pause > tat then tat = now + pause end
  redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1000)
  return {0, 0}
end
local new_tat = tat + n * interval
local wait = new_tat - math.max(burst, n) * interval - now
if wait < 0 then wait = 0 end
if max_wait >= 0 and wait > max_wait then return {1, string.format('%.0f', wait)} end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1000)
return {0, string.format('%.0f', wait)}
"""


class RateLimitTimeout(ManiError):
    """The rate limit would make the caller wait longer than it allowed (`wait` seconds)."""

    def __init__(self, message: str, *, wait: float = 0.0):
        super().__init__(message)
        self.wait = wait


class RateLimiter(Protocol):
    rate: float

    def acquire(self, n: int = 1, *, timeout: float | None = None) -> float:
        """Block until `n` messages may go; returns the seconds waited. RateLimitTimeout past `timeout`."""
        ...

    def reserve(self, n: int = 1, *, timeout: float | None = None) -> float:
        """Book `n` slots without sleeping; the seconds until they are due (n=0: just look)."""
        ...

    def backoff(self, seconds: float) -> None:
        """Hold every sender of this key for `seconds` (the provider said to slow down)."""
        ...


class Unlimited:
    rate = 0.0

    def reserve(self, n: int = 1, *, timeout: float | None = None) -> float:
        return 0.0

    def acquire(self, n: int = 1, *, timeout: float | None = None) -> float:
        return 0.0

    def backoff(self, seconds: float) -> None:
        return None


@dataclass
class _Bucket:
    tat: float = 0.0
    lock: threading.Lock = None  # type: ignore[assignment]


_local_lock = threading.Lock()
_local_buckets: dict[str, _Bucket] = {}


def _bucket(key: str) -> _Bucket:
    with _local_lock:
        bucket = _local_buckets.get(key)
        if bucket is None:
            bucket = _local_buckets[key] = _Bucket(lock=threading.Lock())
        return bucket


def _sleep(seconds: float) -> float:
    if seconds > 0:
        time.sleep(seconds)
    return max(seconds, 0.0)


class LocalRateLimiter:
    """GCRA in process memory: one schedule per key for all threads of this process."""

    def __init__(self, *, key: str, rate: float, burst: int = 1):
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.key, self.rate, self.burst = key, float(rate), max(1, int(burst))

    def reserve(self, n: int = 1, *, timeout: float | None = None) -> float:
        """Book `n` slots; the seconds until they are due (no sleeping)."""
        interval = 1.0 / self.rate
        bucket = _bucket(self.key)
        with bucket.lock:
            now = time.monotonic()
            tat = max(bucket.tat, now)
            new_tat = tat + n * interval
            wait = max(0.0, new_tat - max(self.burst, n) * interval - now)
            if timeout is not None and wait > timeout:
                raise RateLimitTimeout(f"sending for {self.key} would wait {wait:.1f}s (more than {timeout:g}s)", wait=wait)
            bucket.tat = new_tat
            return wait

    def acquire(self, n: int = 1, *, timeout: float | None = None) -> float:
        return _sleep(self.reserve(n, timeout=timeout))

    def backoff(self, seconds: float) -> None:
        bucket = _bucket(self.key)
        with bucket.lock:
            bucket.tat = max(bucket.tat, time.monotonic() + seconds)


_clients_lock = threading.Lock()
_clients: dict[str, Any] = {}


def _redis_script(url: str):
    with _clients_lock:
        entry = _clients.get(url)
        if entry is None:
            # Deferred (here and in RedisRateLimiter._call): the Lambda worker (cloud_workers/aws)
            # paces SES with the memory limiter and its zip carries no redis.
            import redis

            client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5, health_check_interval=30)
            entry = _clients[url] = client.register_script(_GCRA)
        return entry


class RedisRateLimiter:
    """GCRA in Redis under `<namespace>:ratelimit:<key>`: one schedule for every worker on every host."""

    def __init__(self, *, url: str, namespace: str, key: str, rate: float, burst: int = 1):
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.url, self.key, self.rate, self.burst = url, key, float(rate), max(1, int(burst))
        self.redis_key = f"{namespace}:ratelimit:{key}"
        self._fallback = LocalRateLimiter(key=f"{namespace}:{key}", rate=rate, burst=burst)

    def _call(self, n: int, max_wait_us: int, pause_us: int) -> list | None:
        import redis  # deferred: see _redis_script

        interval_us = max(1, round(1_000_000 / self.rate))
        try:
            return _redis_script(self.url)(keys=[self.redis_key], args=[interval_us, n, self.burst, max_wait_us, pause_us])
        except redis.RedisError as error:
            log.warning("rate limit for %s kept in this process only: Redis is unreachable (%s)", self.key, error)
            return None

    def reserve(self, n: int = 1, *, timeout: float | None = None) -> float:
        max_wait_us = -1 if timeout is None else int(timeout * 1_000_000)
        reply = self._call(n, max_wait_us, 0)
        if reply is None:
            return self._fallback.reserve(n, timeout=timeout)
        refused, wait_us = int(reply[0]), int(reply[1])
        if refused:
            raise RateLimitTimeout(f"sending for {self.key} would wait {wait_us / 1e6:.1f}s (more than {timeout:g}s)",
                                   wait=wait_us / 1e6)
        return wait_us / 1_000_000

    def acquire(self, n: int = 1, *, timeout: float | None = None) -> float:
        return _sleep(self.reserve(n, timeout=timeout))

    def backoff(self, seconds: float) -> None:
        if seconds > 0 and self._call(1, -1, int(seconds * 1_000_000)) is None:
            self._fallback.backoff(seconds)


def get_limiter(*, key: str | None, rate: float | None, settings: Any | None = None, burst: int = 1) -> RateLimiter:
    """The shared limiter for `key` (a company id; None = the system's local path) at `rate` messages/s.

    Redis-backed when MANI_REDIS_URL is set, else in process memory; `rate` 0 or None = no limit.
    """
    if not rate or rate <= 0:
        return Unlimited()
    settings = settings or get_settings()
    name = key or "_system"
    if settings.redis_url:
        return RedisRateLimiter(url=settings.redis_url, namespace=settings.redis_namespace, key=name, rate=rate, burst=burst)
    return LocalRateLimiter(key=name, rate=rate, burst=burst)


def limiter_for(company_settings: Any, *, settings: Any | None = None) -> RateLimiter:
    """The limiter a provider paces itself with, from the resolved settings it was built with."""
    get = getattr(company_settings, "get", None)
    rate = float(get("rate_limit") or 0) if get else 0.0
    return get_limiter(key=get("company_id") if get else None, rate=rate, settings=settings)
