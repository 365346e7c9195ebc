"""What must be enqueued once a transaction has committed.

`backend/` never talks to the broker. A function that changes the store returns `Followups`:
the messages the change calls for. The caller commits, then hands them to
`actors.enqueue.enqueue_after_commit`. A message that is never sent (the broker is down, or no
worker can receive it here) loses nothing: the sweeper finds the stored work again.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class Followups:
    # Stored jobs to route and hand out (the `dispatch_job` actor).
    dispatch_job_ids: list[int] = field(default_factory=list)
    # Batches to send now (the `send_batch` actor).
    batch_ids: list[int] = field(default_factory=list)
    # (batch id, seconds): run the batch again after a delay (retries, throttling).
    delayed_batches: list[tuple[int, float]] = field(default_factory=list)
    # Jobs whose batches may all be final (the `finish_job` actor; idempotent).
    finish_job_ids: list[int] = field(default_factory=list)
    # Callback deliveries to Moodle to attempt now (the `deliver_callback` actor).
    callback_ids: list[int] = field(default_factory=list)
    # (delivery id, seconds): a delivery's next attempt, on its retry schedule.
    delayed_callbacks: list[tuple[int, float]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.dispatch_job_ids or self.batch_ids or self.delayed_batches or self.finish_job_ids
                    or self.callback_ids or self.delayed_callbacks)

    def __add__(self, other: Followups) -> Followups:
        return Followups(
            dispatch_job_ids=self.dispatch_job_ids + other.dispatch_job_ids,
            batch_ids=self.batch_ids + other.batch_ids,
            delayed_batches=self.delayed_batches + other.delayed_batches,
            finish_job_ids=self.finish_job_ids + other.finish_job_ids,
            callback_ids=self.callback_ids + other.callback_ids,
            delayed_callbacks=self.delayed_callbacks + other.delayed_callbacks,
        )

    def describe(self) -> str:
        """In words, for a log line: "2 jobs to dispatch, 5 batches, 1 callback"."""
        parts = [
            (len(self.dispatch_job_ids), "job to dispatch", "jobs to dispatch"),
            (len(self.batch_ids) + len(self.delayed_batches), "batch", "batches"),
            (len(self.finish_job_ids), "job to finish", "jobs to finish"),
            (len(self.callback_ids) + len(self.delayed_callbacks), "callback", "callbacks"),
        ]
        return ", ".join(f"{n} {one if n == 1 else many}" for n, one, many in parts if n) or "nothing"
