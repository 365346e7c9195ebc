"""Certificates on every core: a process pool whose workers keep fonts and renderers warm.

The backend calls one function:

    render_many(template, items, *, fallback_fonts=(), processes=None) -> [bytes | CertificateError, ...]

It cuts `items` (RenderItems, in order) into runs shared by the worker processes and the calling
thread, and returns one result per item, in order. Small lists, and `processes=1`, render in this
process: sending a handful of certificates to another process costs more than it saves.

`processes` defaults to `certificate_render_processes` (0, the default, means one per core).
`warm_up()` starts the workers ahead of the first batch (`mani submit --wait` does, while the job
is being written); otherwise they start on first use and stay for the life of the process. Until
they are up (a second or two: each imports fpdf2 and parses fonts), the calling thread renders.
Workers never fork from the caller, which has threads (Dramatiq's, the lease keeper's): forking a
process with threads can deadlock the child. They fork from a fork server that imported the
renderer and parsed the fonts first (`certificates/warm.py`), so they are up in milliseconds.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import multiprocessing
import os
import pickle
import threading
from collections.abc import Iterable, Sequence
from collections import deque
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from backend.core.settings import get_settings
from certificates.errors import CertificateError
from certificates.loader import load_template
from certificates.renderer import RenderItem, Renderer, get_renderer
from certificates.template import Template

log = logging.getLogger(__name__)

# Runs of certificates are at least this long: each run is one batch document, with its fixed
# layer and font subsets, and a round trip to a worker costs about what two certificates do.
MIN_PER_WORKER = 16

_lock = threading.RLock()  # re-entrant: a ping that is already done runs its callback at once
_executor: ProcessPoolExecutor | None = None
_executor_size = 0
_ready = threading.Event()  # every worker has started and parsed its fonts
_starting = 0  # the size of a pool being started in the background


def configured_processes() -> int:
    """`certificate_render_processes`, with 0 meaning one per core."""
    wanted = int(getattr(get_settings(), "certificate_render_processes", 0) or 0)
    return wanted if wanted > 0 else (os.cpu_count() or 1)


def _pool(processes: int) -> ProcessPoolExecutor:
    global _executor, _executor_size
    with _lock:
        if _executor is not None and _executor_size == processes:
            return _executor
        if _executor is not None:
            _executor.shutdown(wait=False, cancel_futures=True)
        _ready.clear()
        executor = _executor = ProcessPoolExecutor(max_workers=processes, mp_context=_context(),
                                                   initializer=_warm_worker)
        _executor_size = processes
        pings = [executor.submit(_ping) for _ in range(processes)]
    pending = set(pings)

    def started(done) -> None:
        failed = done.cancelled() or done.exception() is not None
        with _lock:
            pending.discard(done)
            if not pending and not failed and all(not p.cancelled() and p.exception() is None for p in pings):
                if _executor is executor:  # not a pool forgotten meanwhile
                    _ready.set()
        if failed:  # a worker could not start: forget this pool, the next batch starts another
            log.warning("a certificate render process did not start: %r",
                        None if done.cancelled() else done.exception())
            _forget_pool(executor)

    # Outside the lock: a ping that is already done runs `started` in this thread, at once.
    for ping in pings:
        ping.add_done_callback(started)
    return executor


def _context() -> multiprocessing.context.BaseContext:
    """A fork server that imported the renderer and parsed the default fonts, where possible.

    The fork server is a fresh single-threaded process, so forking it is safe even though this
    process has threads; its children start in milliseconds with everything loaded. Where there
    is no fork server (not POSIX), workers are spawned and import everything themselves.
    """
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["certificates.warm"])
        return context
    return multiprocessing.get_context("spawn")


def warm_up(processes: int | None = None) -> int:
    """Start the worker processes in the background (starting the fork server takes a second);
    returns how many. Until they are up, `render_many` renders in the calling thread."""
    processes = processes or configured_processes()
    if processes > 1:
        _start(processes)
    return processes


def _start(processes: int) -> None:
    """`_pool(processes)` in a background thread, unless a pool of that size exists or is starting."""
    global _starting
    with _lock:
        if (_executor is not None and _executor_size == processes) or _starting == processes:
            return
        _starting = processes

    def build() -> None:
        global _starting
        try:
            _pool(processes)
        except Exception as error:  # noqa: BLE001 - no pool: everything renders in-process
            log.warning("certificate render processes could not start (%s); rendering in-process", error)
        finally:
            with _lock:
                _starting = 0

    threading.Thread(target=build, name="mani-render-pool-start", daemon=True).start()


def wait_ready(timeout: float) -> bool:
    """Whether the workers are up, waiting at most `timeout` seconds for them."""
    return _ready.wait(timeout)


def shutdown() -> None:
    global _executor, _executor_size
    with _lock:
        executor, _executor, _executor_size = _executor, None, 0
        _ready.clear()
    if executor is not None:
        executor.shutdown(wait=True, cancel_futures=True)


def _forget_pool(executor: ProcessPoolExecutor | None = None) -> None:
    """Forget the pool (only `executor`, if given, so a late failure cannot forget its successor)."""
    global _executor, _executor_size
    with _lock:
        if executor is not None and _executor is not executor:
            return
        _executor, _executor_size = None, 0
        _ready.clear()


atexit.register(shutdown)


def render_many(template: Template, items: Sequence[RenderItem], *, fallback_fonts: Iterable[str | Path] = (),
                processes: int | None = None) -> list[bytes | CertificateError]:
    """One PDF (or the CertificateError that stopped it) per item, in order, on every core.

    The items are cut into runs. The worker processes take runs from the front, at most one
    each at a time, once they are up; this thread renders runs from the back meanwhile. So no run
    waits for a worker that is still starting, and the calling process's core works too.
    """
    fallbacks = tuple(str(p) for p in fallback_fonts if p)
    processes = processes or configured_processes()
    renderer = get_renderer(template, fallback_fonts=fallbacks)
    if processes <= 1 or len(items) < 2 * MIN_PER_WORKER:
        return renderer.render_batch(items)
    _start(processes)  # on first use, in the background
    size = max(MIN_PER_WORKER, min(64, -(-len(items) // (2 * processes + 1))))
    pending = deque((start, list(items[start : start + size])) for start in range(0, len(items), size))
    results: list[bytes | CertificateError | None] = [None] * len(items)
    in_flight: dict = {}
    key = hashlib.sha1(pickle.dumps((template, fallbacks))).hexdigest()
    try:
        while pending or in_flight:
            pool = _executor if _ready.is_set() and _executor_size == processes else None
            while pool is not None and pending and len(in_flight) < processes:
                start, chunk = pending.popleft()
                in_flight[pool.submit(_render_chunk, key, template, fallbacks, chunk)] = (start, chunk)
            if pending:
                start, chunk = pending.pop()
                results[start : start + len(chunk)] = renderer.render_batch(chunk)
            elif in_flight:
                wait(in_flight, return_when=FIRST_COMPLETED)
            for future in [f for f in in_flight if f.done()]:
                start, chunk = in_flight.pop(future)
                results[start : start + len(chunk)] = future.result()
    except BrokenProcessPool as error:  # a worker died (out of memory, killed): start afresh next time
        log.warning("certificate render pool broke (%s); rendering the rest of this batch in-process", error)
        _forget_pool()
        for start, chunk in [*in_flight.values(), *pending]:
            if results[start] is None:
                results[start : start + len(chunk)] = renderer.render_batch(chunk)
    return results  # type: ignore[return-value] - every slot is filled


# In the worker processes ------------------------------------------------------------------------

_worker_renderers: dict[str, Renderer] = {}


def _warm_worker() -> None:
    get_renderer(load_template("default"))  # imports everything and parses the default template's fonts


def _ping() -> int:
    return os.getpid()


def _render_chunk(key: str, template: Template, fallbacks: tuple[str, ...],
                  items: list[RenderItem]) -> list[bytes | CertificateError]:
    renderer = _worker_renderers.get(key)
    if renderer is None:
        renderer = _worker_renderers[key] = Renderer(template, fallback_fonts=fallbacks)
    return renderer.render_batch(items)
