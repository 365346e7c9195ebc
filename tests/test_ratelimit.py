"""The shared sending rate: GCRA with reservations, in Redis (all hosts) or in process memory.

Most checks read the schedule the limiter books (`reserve` answers the wait without sleeping),
so they do not depend on how fast this machine is.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from backend.core.settings import Settings, get_settings
from backend.mail.ratelimit import (
    LocalRateLimiter,
    RateLimitTimeout,
    RedisRateLimiter,
    Unlimited,
    get_limiter,
    limiter_for,
)
from tests.support.cloud import max_excess

ROOT = Path(__file__).resolve().parents[1]
# The schedules are read against this process's clock: these tests share one xdist worker with the
# other timed tests, so at least they never run beside each other.
pytestmark = pytest.mark.xdist_group("timing")


def due_times(limiter, count: int, n: int = 1) -> list[float]:
    """When each of `count` reservations may go, on this process's clock."""
    return [time.monotonic() + limiter.reserve(n) for _ in range(count)]


def assert_spacing(dues: list[float], interval: float) -> None:
    """Never closer than the interval (a stall of this process may only make gaps longer)."""
    dues = sorted(dues)
    assert min(b - a for a, b in zip(dues, dues[1:])) >= interval - 0.005
    assert dues[-1] - dues[0] <= (len(dues) - 1) * interval + 0.1


def test_get_limiter_picks_the_backend(redis_url):
    assert isinstance(get_limiter(key="acme", rate=0, settings=Settings()), Unlimited)
    assert isinstance(get_limiter(key="acme", rate=None, settings=Settings()), Unlimited)
    assert isinstance(get_limiter(key="acme", rate=5, settings=Settings(redis_url=None)), LocalRateLimiter)
    limiter = get_limiter(key="acme", rate=5, settings=get_settings())
    assert isinstance(limiter, RedisRateLimiter)
    assert limiter.redis_key == f"{get_settings().redis_namespace}:ratelimit:acme"
    assert get_limiter(key=None, rate=5, settings=get_settings()).redis_key.endswith(":ratelimit:_system")
    assert isinstance(limiter_for({"company_id": "acme", "rate_limit": 0}), Unlimited)
    assert limiter_for({"company_id": "acme", "rate_limit": 7.5}, settings=get_settings()).rate == 7.5


@pytest.mark.parametrize("backend", ["local", "redis"])
def test_single_messages_are_spaced_at_the_rate(backend, request):
    limiter = _make(backend, request, key="spacing", rate=20)
    assert_spacing(due_times(limiter, 10), 0.05)


@pytest.mark.parametrize("backend", ["local", "redis"])
def test_a_batch_goes_at_once_and_the_next_caller_pays_for_it(backend, request):
    limiter = _make(backend, request, key="batch", rate=10)
    start = time.monotonic()
    assert limiter.reserve(10) <= 0.02  # a 10-recipient API call is not held back
    dues = [d - start for d in due_times(limiter, 1) + due_times(limiter, 1, n=5) + due_times(limiter, 1)]
    assert dues == pytest.approx([1.0, 1.1, 1.6], abs=0.03)  # the next callers pay for it


@pytest.mark.parametrize("backend", ["local", "redis"])
def test_timeout_refuses_without_booking(backend, request):
    limiter = _make(backend, request, key="timeout", rate=2)
    start = time.monotonic()
    limiter.reserve(4)  # two seconds of backlog
    with pytest.raises(RateLimitTimeout, match="would wait"):
        limiter.reserve(1, timeout=0.5)
    due = time.monotonic() + limiter.reserve(1, timeout=5)
    assert due - start == pytest.approx(2.0, abs=0.05)  # the refused call booked nothing


@pytest.mark.parametrize("backend", ["local", "redis"])
def test_backoff_holds_every_sender(backend, request):
    first = _make(backend, request, key="backoff", rate=100)
    second = _make(backend, request, key="backoff", rate=100)  # another worker, same company
    start = time.monotonic()
    first.backoff(1.5)
    assert time.monotonic() + second.reserve(1) - start == pytest.approx(1.5, abs=0.05)


def test_redis_schedule_is_shared_by_threads_and_limiters(redis_url):
    """Five workers book 50 slots: each booking moves the one shared schedule by exactly one slot."""
    import redis

    settings = get_settings()
    first = get_limiter(key="shared", rate=50, settings=settings)
    first.reserve(50)  # a second of backlog: the schedule runs ahead of the clock, so slots chain
    client = redis.Redis.from_url(redis_url)
    before = int(client.get(first.redis_key))
    waits: list[float] = []
    lock = threading.Lock()

    def worker():
        limiter = get_limiter(key="shared", rate=50, settings=settings)
        for _ in range(10):
            wait = limiter.reserve(1)
            with lock:
                waits.append(wait)

    threads = [threading.Thread(target=worker) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(waits) == 50
    assert int(client.get(first.redis_key)) - before == 50 * 20_000  # microseconds: no slot lost or shared


def test_redis_rate_holds_across_processes(redis_url):
    """Three processes (as on three hosts) acquire for the same company: together they stay at the rate."""
    settings = get_settings()
    code = (
        "import sys, time\n"
        "from backend.mail.ratelimit import get_limiter\n"
        "from backend.core.settings import Settings\n"
        f"limiter = get_limiter(key='hosts', rate=30, settings=Settings(redis_url={redis_url!r}, "
        f"redis_namespace={settings.redis_namespace!r}))\n"
        "for _ in range(10):\n"
        "    limiter.acquire(1)\n"
        "    print(time.time(), flush=True)\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True) for _ in range(3)]
    stamps = []
    for proc in procs:
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0
        stamps += [float(line) for line in out.split()]
    assert len(stamps) == 30
    assert max_excess([(t, 1) for t in stamps], rate=30) <= 1 + 30 * 0.1


def test_unreachable_redis_falls_back_to_this_process(caplog):
    limiter = RedisRateLimiter(url="redis://127.0.0.1:1/0", namespace="nowhere", key="acme", rate=10)
    with caplog.at_level(logging.WARNING, logger="backend.mail.ratelimit"):
        dues = due_times(limiter, 3)
    assert_spacing(dues, 0.1)
    assert "Redis is unreachable" in caplog.text


def test_acquire_sleeps_until_due():
    limiter = LocalRateLimiter(key="sleepy", rate=50)
    limiter.acquire(1)
    assert limiter.acquire(1) > 0  # the second call had to wait its turn


def _make(backend: str, request, *, key: str, rate: float):
    if backend == "local":
        return LocalRateLimiter(key=f"{request.node.name}-{key}", rate=rate)
    request.getfixturevalue("redis_url")
    return get_limiter(key=key, rate=rate, settings=get_settings())
