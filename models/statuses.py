"""The status vocabularies (BRIEF.md's machines) and their groups, each defined once.

A group is a frozenset, for `status in GROUP`; in SQL, `column.in_(sorted(GROUP))`.
"""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    PENDING = "pending"
    QUEUED = "queued"
    PROCESSING = "processing"
    COMPLETED = "completed"
    PARTIAL_FAILURE = "partial_failure"
    FAILED = "failed"
    RETRY_PENDING = "retry_pending"
    PAUSED = "paused"
    CANCELLED = "cancelled"


# Final: nothing more happens to the job unless an admin retries it.
JOB_FINAL = frozenset({JobStatus.COMPLETED, JobStatus.PARTIAL_FAILURE, JobStatus.FAILED, JobStatus.CANCELLED})
# Open: not final (the dashboard's active jobs).
JOB_OPEN = frozenset(set(JobStatus) - JOB_FINAL)
# Running: dispatched and not final; its batches are the sweeper's to watch.
JOB_RUNNING = frozenset({JobStatus.QUEUED, JobStatus.PROCESSING, JobStatus.RETRY_PENDING})
# Waiting to run (the dashboard's "queued" counter).
JOB_WAITING = frozenset({JobStatus.PENDING, JobStatus.QUEUED, JobStatus.RETRY_PENDING})
# What an admin may pause: a waiting or running job.
JOB_PAUSABLE = JOB_WAITING | JOB_RUNNING


class BatchStatus(StrEnum):
    QUEUED = "queued"
    PROCESSING = "processing"
    RETRY_PENDING = "retry_pending"
    COMPLETED = "completed"
    PARTIAL_FAILURE = "partial_failure"
    FAILED = "failed"
    CANCELLED = "cancelled"


BATCH_FINAL = frozenset({BatchStatus.COMPLETED, BatchStatus.PARTIAL_FAILURE, BatchStatus.FAILED, BatchStatus.CANCELLED})
# Waiting for its next run (what resume hands out again).
BATCH_WAITING = frozenset({BatchStatus.QUEUED, BatchStatus.RETRY_PENDING})


class RecipientStatus(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    SENT = "sent"
    FAILED = "failed"
    RETRY_PENDING = "retry_pending"
    PERMANENTLY_FAILED = "permanently_failed"
    BOUNCED = "bounced"
    COMPLAINED = "complained"
    # Skipped as a duplicate of a recent send (seed 003, duplicate prevention).
    SKIPPED = "skipped"
    # On the company's suppression list when the job was created (a past hard bounce or
    # complaint, or added by an admin); `last_error` says why. Never sent, never retried.
    SUPPRESSED = "suppressed"
    CANCELLED = "cancelled"


# Open: a worker may still act on it ("not yet sent": what pause holds back and resume sends).
RECIPIENT_OPEN = frozenset(
    {RecipientStatus.PENDING, RecipientStatus.PROCESSING, RecipientStatus.FAILED, RecipientStatus.RETRY_PENDING}
)
# Final for the current run; a callback never moves a final status back to an open one.
RECIPIENT_FINAL = frozenset(set(RecipientStatus) - RECIPIENT_OPEN)
# What a cancel ends `cancelled` at once. A recipient `processing` right now is settled by the
# worker that holds its batch, when the current chunk ends.
RECIPIENT_CANCELLABLE = RECIPIENT_OPEN - {RecipientStatus.PROCESSING}
# What "retry all failed" sends again.
RECIPIENT_RETRYABLE = frozenset({RecipientStatus.FAILED, RecipientStatus.PERMANENTLY_FAILED})
# What an admin reads as "went wrong" (the job detail's "problems" filter).
RECIPIENT_PROBLEM = RECIPIENT_RETRYABLE | {RecipientStatus.RETRY_PENDING, RecipientStatus.BOUNCED,
                                          RecipientStatus.COMPLAINED}
# Left out when the job was created: never sent, and not a failure of this job.
RECIPIENT_LEFT_OUT = frozenset({RecipientStatus.SKIPPED, RecipientStatus.SUPPRESSED})
# Reached the provider (a later bounce does not un-send it).
RECIPIENT_DELIVERED = frozenset({RecipientStatus.SENT, RecipientStatus.BOUNCED, RecipientStatus.COMPLAINED})


class DeliveryStatus(StrEnum):
    """A callback delivery to Moodle."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"  # its retry schedule is used up
