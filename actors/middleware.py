"""The sweeper as Dramatiq middleware: it runs beside a worker, from boot to shutdown.

In the manner of Dramatiq's own middleware that keep a thread (`TimeLimit`, `Prometheus`): the
thread starts in a boot hook and stops in a shutdown hook, so a worker never runs without its
sweeper and a stopped worker leaves no sweeper behind. The sweep itself is
`backend.delivery.sweeper.sweep`, which returns the messages to send as `Followups`. Each sweep
then fires the schedules that are due (`backend.schedules.runs.run_due`): no extra daemon.
"""

from __future__ import annotations

import logging
import threading

import dramatiq

from actors import broker as broker_setup
from actors.enqueue import enqueue_after_commit
from backend.core.settings import Settings
from backend.delivery.sweeper import sweep
from backend.schedules.runs import run_due
from models.db import session_scope

log = logging.getLogger(__name__)
# After repeated failures the sweeper waits longer, up to this many intervals.
MAX_BACKOFF_INTERVALS = 15


def sweep_once(*, settings: Settings) -> bool:
    """One sweep: find stored work whose message is missing and send it; False if it was not sent."""
    with session_scope() as session:
        followups = sweep(session=session, settings=settings, send_queue_empty=broker_setup.send_queue_empty(),
                          held=broker_setup.held_messages())
    if not followups:
        return True
    log.info("sweep: %s", followups.describe())
    return enqueue_after_commit(followups)


def run_schedules_once(*, settings: Settings) -> int:
    """Fire due schedules: claim them (once, whichever process gets there first), run their runs,
    and send the new jobs' messages. The number of runs that made a job."""
    made = 0
    for outcome in run_due(settings=settings):
        if outcome.followups:
            enqueue_after_commit(outcome.followups)
        made += outcome.job_id is not None
    return made


class SweeperMiddleware(dramatiq.Middleware):
    """Sweeps every `sweep_interval_seconds` while its worker runs (backing off while the store
    or the broker is down). Sweeps are idempotent, so every worker process runs its own."""

    def __init__(self, *, settings: Settings) -> None:
        self.settings = settings
        self.logger = log
        self._worker: dramatiq.Worker | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.failures = 0

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if self._thread is not None:
            return  # this middleware sweeps for the first worker that booted only
        self._worker = worker
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="mani-sweeper", daemon=True)
        self._thread.start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if worker is not self._worker or self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout=5)
        self._thread = self._worker = None

    def _run(self) -> None:
        while not self._stop.wait(self.settings.sweep_interval_seconds * min(2**self.failures, MAX_BACKOFF_INTERVALS)):
            try:
                sent = sweep_once(settings=self.settings)
            except Exception as error:  # noqa: BLE001 - database or broker down: try again later
                self.failures += 1
                log.warning("sweep failed (%s: %s); retrying", type(error).__name__, error)
                continue
            self.failures = 0 if sent else self.failures + 1
            try:
                run_schedules_once(settings=self.settings)
            except Exception as error:  # noqa: BLE001 - the store is down: the next sweep tries again
                log.warning("schedules: the sweep could not run them (%s: %s)", type(error).__name__, error)
