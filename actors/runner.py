"""Running workers: Dramatiq worker threads plus the sweeper, in one process or several.

`mani worker` and `mani submit --wait` (embedded broker) both use `start_worker`. Every
worker process runs its own sweeper (`SweeperMiddleware`): sweeps are idempotent, and with the
embedded broker a process can only hand work to its own threads.

Two lanes, each a Dramatiq worker with threads of its own: `send` (the `send` and `jobs`
queues: batches, dispatch, finish) and `callbacks` (deliveries to Moodle). A Moodle that
answers slowly, or never, holds callback threads only: mail keeps going at full speed.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import dramatiq

import actors  # noqa: F401  (declares every actor: a worker consumes all their queues)
from actors import broker as broker_setup
from actors.middleware import SweeperMiddleware
from backend.core.logs import configure_logging
from backend.core.settings import Settings, get_settings

log = logging.getLogger(__name__)
STOP_TIMEOUT_MS = 30_000
# Lane -> the queues its threads consume.
LANES: dict[str, frozenset[str]] = {"send": frozenset({"send", "jobs"}), "callbacks": frozenset({"callbacks"})}


@dataclass
class RunningWorker:
    broker: dramatiq.Broker
    workers: list[dramatiq.Worker]
    sweeper: SweeperMiddleware | None
    stop_event: threading.Event

    @property
    def worker(self) -> dramatiq.Worker:
        return self.workers[0]

    def stop(self, timeout_ms: int = STOP_TIMEOUT_MS) -> None:
        self.stop_event.set()
        for worker in reversed(self.workers):  # the first one's shutdown stops the sweeper, last
            worker.stop(timeout=timeout_ms)
        if self.sweeper is not None and self.sweeper in self.broker.middleware:
            self.broker.middleware.remove(self.sweeper)
        broker_setup.note_local_worker(running=False)


def start_worker(*, threads: int = 8, settings: Settings | None = None, sweep: bool = True,
                 poll_ms: int | None = None, lanes: Sequence[str] = tuple(LANES)) -> RunningWorker:
    """Worker threads on the broker in use, with a sweeper beside them unless `sweep` is False.

    `threads` send; the callbacks lane has `settings.callback_threads` of its own. `lanes`
    picks which run here (`mani worker --queues`).
    `poll_ms`: how often idle worker threads look up (Dramatiq's 1 s by default); stopping waits
    for that, so `--wait` polls every 100 ms and returns as soon as the job is done."""
    settings = settings or get_settings()
    broker = broker_setup.current()
    broker.emit_after("process_boot")
    sweeper = SweeperMiddleware(settings=settings) if sweep else None
    if sweeper is not None:
        broker.add_middleware(sweeper)
    broker_setup.note_local_worker(running=True)
    options = {"worker_timeout": poll_ms} if poll_ms else {}
    unknown = set(lanes) - set(LANES)
    if unknown or not lanes:
        raise ValueError(f"unknown lane(s) {sorted(unknown)}: choose among {sorted(LANES)}")
    sizes = {"send": threads, "callbacks": settings.callback_threads}
    workers = []
    for lane in (name for name in LANES if name in lanes):
        worker = dramatiq.Worker(broker, queues=set(LANES[lane]), worker_threads=sizes[lane], **options)
        worker.start()  # the sweeper starts in the first one's `after_worker_boot`
        workers.append(worker)
    return RunningWorker(broker=broker, workers=workers, sweeper=sweeper, stop_event=threading.Event())


def _wait_for_signal(stop: threading.Event, *, parent_pid: int | None = None) -> None:
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    while not stop.wait(1.0):
        if parent_pid is not None and os.getppid() != parent_pid:
            log.warning("parent process gone; stopping")
            stop.set()


def _child_main(threads: int, parent_pid: int, lanes: tuple[str, ...] = tuple(LANES)) -> None:
    configure_logging(get_settings().log_level, with_pid=True)
    running = start_worker(threads=threads, lanes=lanes)
    _wait_for_signal(running.stop_event, parent_pid=parent_pid)
    running.stop()


def run_forever(*, processes: int, threads: int, settings: Settings | None = None,
                lanes: Sequence[str] = tuple(LANES)) -> None:
    """Run until SIGTERM or SIGINT; restart a worker process that dies."""
    settings = settings or get_settings()
    lanes = tuple(lanes)
    if processes <= 1:
        running = start_worker(threads=threads, settings=settings, lanes=lanes)
        _wait_for_signal(running.stop_event)
        running.stop()
        return
    context = multiprocessing.get_context("spawn")
    parent = os.getpid()
    # Each worker process renders certificates in a pool of its own: share the cores among them.
    os.environ.setdefault("MANI_CERTIFICATE_RENDER_PROCESSES", str(max(1, (os.cpu_count() or 1) // processes)))

    def spawn() -> multiprocessing.Process:
        process = context.Process(target=_child_main, args=(threads, parent, lanes), name="mani-worker")
        process.start()
        return process

    children = [spawn() for _ in range(processes)]
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    while not stop.wait(1.0):
        for index, child in enumerate(children):
            if not child.is_alive():
                log.warning("worker process %s exited with %s; starting another", child.pid, child.exitcode)
                children[index] = spawn()
    for child in children:
        if child.is_alive():
            os.kill(child.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_MS / 1000 + 5
    for child in children:
        child.join(timeout=max(0.1, deadline - time.monotonic()))
        if child.is_alive():
            child.kill()
