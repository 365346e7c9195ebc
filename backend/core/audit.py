"""Writing the audit log. Callers pass masked values: nothing secret is ever written here."""

from __future__ import annotations

from sqlmodel import Session

from models import AuditEntry


def record(
    *,
    session: Session,
    actor: str,
    source: str,
    action: str,
    target: str | None = None,
    details: dict | None = None,
    address: str | None = None,
) -> AuditEntry:
    """Add one audit entry to the caller's transaction."""
    entry = AuditEntry(
        actor=actor[:128], source=source, action=action, target=target, details=details or {}, address=address
    )
    session.add(entry)
    return entry
