"""The SQLModel store: every table, plus engine and session set-up in `models.db`."""

from models.audit import AuditEntry
from models.base import (
    BATCH_FINAL,
    JOB_ACTIVE,
    JOB_FINAL,
    RECIPIENT_DELIVERED,
    RECIPIENT_FINAL,
    RECIPIENT_OPEN,
    BatchStatus,
    JobStatus,
    RecipientStatus,
    utcnow,
)
from models.companies import Company, GlobalSetting
from models.jobs import Batch, Job, Recipient, Rejection

# Tables owned by the certificate and callback parts register themselves on import.
import importlib.util as _importlib_util

for _optional in ("models.certificates", "models.callbacks"):
    if _importlib_util.find_spec(_optional) is not None:
        __import__(_optional)

__all__ = [
    "AuditEntry",
    "BATCH_FINAL",
    "Batch",
    "BatchStatus",
    "Company",
    "GlobalSetting",
    "JOB_ACTIVE",
    "JOB_FINAL",
    "Job",
    "JobStatus",
    "RECIPIENT_DELIVERED",
    "RECIPIENT_FINAL",
    "RECIPIENT_OPEN",
    "Recipient",
    "RecipientStatus",
    "Rejection",
    "utcnow",
]
