"""Running workers: Dramatiq worker threads plus the sweeper, in one process or several.

`mani worker` and `mani submit --wait` (embedded broker) both use `start_worker`. Every
worker process runs its own sweeper: sweeps are idempotent, and with the embedded broker a
process can only hand work to its own threads.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from dataclasses import dataclass

import dramatiq

from backend.core.settings import Settings, get_settings

log = logging.getLogger(__name__)
STOP_TIMEOUT_MS = 30_000


class SweeperThread(threading.Thread):
    def __init__(self, *, settings: Settings, stop: threading.Event) -> None:
        super().__init__(name="mani-sweeper", daemon=True)
        self.settings = settings
        self.stop_event = stop
        self.failures = 0

    def run(self) -> None:
        while not self.stop_event.wait(self.settings.sweep_interval_seconds * min(2**self.failures, 15)):
            try:
                sweep_once(settings=self.settings)
                self.failures = 0
            except Exception as error:  # noqa: BLE001 - database or broker down: try again later
                self.failures += 1
                log.warning("sweep failed (%s: %s); retrying", type(error).__name__, error)


def sweep_once(*, settings: Settings) -> None:
    from actors import jobs as job_actors
    from backend.delivery.sweeper import sweep
    from models.db import session_scope

    with session_scope() as session:
        found = sweep(session=session, settings=settings, send_queue_empty=_send_queue_empty())
    if found.empty:
        return
    log.info(
        "sweep: dispatching %d jobs, re-sending %d batches, finishing %d jobs, %d callbacks",
        len(found.dispatch_job_ids), len(found.batch_ids), len(found.finish_job_ids), len(found.callback_ids),
    )
    for job_id in found.dispatch_job_ids:
        job_actors.dispatch_job.send(job_id)
    for batch_id in found.batch_ids:
        job_actors.send_batch.send(batch_id)
    for job_id in found.finish_job_ids:
        job_actors.finish_job.send(job_id)
    if found.callback_ids:
        from actors import callbacks as callback_actors

        for delivery_id in found.callback_ids:
            callback_actors.deliver_callback.send(delivery_id)


def _send_queue_empty() -> bool | None:
    """Whether the broker holds no batch message right now; None when it cannot tell."""
    from dramatiq.brokers.redis import RedisBroker

    from actors.broker import get_broker

    broker = get_broker()
    if isinstance(broker, RedisBroker):
        return broker.client.llen(f"{broker.namespace}:send") == 0
    return None


@dataclass
class RunningWorker:
    worker: dramatiq.Worker
    sweeper: SweeperThread | None
    stop_event: threading.Event

    def stop(self, timeout_ms: int = STOP_TIMEOUT_MS) -> None:
        self.stop_event.set()
        self.worker.stop(timeout=timeout_ms)
        if self.sweeper is not None:
            self.sweeper.join(timeout=5)


def start_worker(*, threads: int = 8, settings: Settings | None = None, sweep: bool = True) -> RunningWorker:
    from actors.broker import get_broker

    settings = settings or get_settings()
    broker = get_broker()
    broker.emit_after("process_boot")
    worker = dramatiq.Worker(broker, worker_threads=threads)
    worker.start()
    stop = threading.Event()
    sweeper = SweeperThread(settings=settings, stop=stop) if sweep else None
    if sweeper is not None:
        sweeper.start()
    return RunningWorker(worker=worker, sweeper=sweeper, stop_event=stop)


def _wait_for_signal(stop: threading.Event, *, parent_pid: int | None = None) -> None:
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    while not stop.wait(1.0):
        if parent_pid is not None and os.getppid() != parent_pid:
            log.warning("parent process gone; stopping")
            stop.set()


def _child_main(threads: int, parent_pid: int) -> None:
    logging.basicConfig(level=get_settings().log_level, format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s")
    running = start_worker(threads=threads)
    _wait_for_signal(running.stop_event, parent_pid=parent_pid)
    running.stop()


def run_forever(*, processes: int, threads: int, settings: Settings | None = None) -> None:
    """Run until SIGTERM or SIGINT; restart a worker process that dies."""
    settings = settings or get_settings()
    if processes <= 1:
        running = start_worker(threads=threads, settings=settings)
        _wait_for_signal(running.stop_event)
        running.stop()
        return
    context = multiprocessing.get_context("spawn")
    parent = os.getpid()

    def spawn() -> multiprocessing.Process:
        process = context.Process(target=_child_main, args=(threads, parent), name="mani-worker")
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
