"""The SQLModel store: every table, plus engine and session set-up in `models.db`."""

from models.audit import AuditEntry
from models.base import utcnow
from models.callbacks import ApiToken, CallbackAttempt, CallbackDelivery, SeenCallback, WebhookEvent
from models.certificates import Certificate, MoodleCertificateClaim
from models.circuits import ProviderCircuit
from models.companies import Company, GlobalSetting
from models.jobs import Batch, Job, Recipient, Rejection
from models.schedules import SCHEDULE_RUN_OPEN, Schedule, ScheduleRun, ScheduleRunStatus
from models.suppressions import NO_COMPANY, Suppression
from models.statuses import (
    BATCH_FINAL,
    BATCH_WAITING,
    JOB_FINAL,
    JOB_OPEN,
    JOB_PAUSABLE,
    JOB_RUNNING,
    JOB_WAITING,
    RECIPIENT_CANCELLABLE,
    RECIPIENT_DELIVERED,
    RECIPIENT_FINAL,
    RECIPIENT_LEFT_OUT,
    RECIPIENT_OPEN,
    RECIPIENT_PROBLEM,
    RECIPIENT_RETRYABLE,
    BatchStatus,
    DeliveryStatus,
    JobStatus,
    RecipientStatus,
)

__all__ = [
    "ApiToken",
    "AuditEntry",
    "BATCH_FINAL",
    "BATCH_WAITING",
    "Batch",
    "BatchStatus",
    "CallbackAttempt",
    "CallbackDelivery",
    "Certificate",
    "DeliveryStatus",
    "Company",
    "GlobalSetting",
    "JOB_FINAL",
    "JOB_OPEN",
    "JOB_PAUSABLE",
    "JOB_RUNNING",
    "JOB_WAITING",
    "Job",
    "MoodleCertificateClaim",
    "JobStatus",
    "RECIPIENT_CANCELLABLE",
    "RECIPIENT_DELIVERED",
    "RECIPIENT_FINAL",
    "RECIPIENT_LEFT_OUT",
    "RECIPIENT_OPEN",
    "RECIPIENT_PROBLEM",
    "RECIPIENT_RETRYABLE",
    "ProviderCircuit",
    "Recipient",
    "RecipientStatus",
    "NO_COMPANY",
    "Rejection",
    "SCHEDULE_RUN_OPEN",
    "Schedule",
    "ScheduleRun",
    "ScheduleRunStatus",
    "SeenCallback",
    "Suppression",
    "WebhookEvent",
    "utcnow",
]
