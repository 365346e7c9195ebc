"""What every read shares: the tables' columns and the status filter."""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy.sql import ColumnElement

from models import (
    AuditEntry,
    Batch,
    CallbackAttempt,
    CallbackDelivery,
    Job,
    Recipient,
)


J, B, R = Job.__table__.c, Batch.__table__.c, Recipient.__table__.c
A, D, T = AuditEntry.__table__.c, CallbackDelivery.__table__.c, CallbackAttempt.__table__.c
Statuses = str | Collection[str] | None


def _in(column, statuses: Statuses) -> ColumnElement:
    return column.in_([statuses] if isinstance(statuses, str) else sorted(statuses))
