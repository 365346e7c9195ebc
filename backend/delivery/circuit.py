"""Per-route circuit breaker: an outage is the provider's, not the recipients'.

A route is a company's path to one provider (`key`). When a send finds the provider unreachable
or failing for everyone (`Outcome.UNAVAILABLE`: connection refused or timed out before a message
was accepted, SMTP 421, HTTP 5xx, or a run of temporary failures on consecutive recipients), the
route's circuit opens (`trip`): the recipients in flight go back to waiting with no attempt
counted, and every batch of the route waits until `retry_at` (5 s, doubling, capped at 5 min).

When `retry_at` comes, one batch claims the probe (`gate`); the others keep waiting a short
while. The first message the route sends closes the circuit (`close`). Stored in the database,
so every worker on every host sees the same circuit and the read side can say "provider down
since ...". An outage longer than `max_outage_hours` fails the jobs that wait on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlmodel import Session

from backend.core.settings import Settings
from models import Job, ProviderCircuit, utcnow

CIRCUITS = ProviderCircuit.__table__
# How long the other batches wait while one batch probes a route whose wait is over.
PROBE_SECONDS = 5.0


def route_key(job: Job) -> str:
    return f"{job.company_id or '-'}/{job.route or 'local'}/{job.provider or '-'}"


@dataclass(frozen=True, slots=True)
class Wait:
    """The route is down: wait until `until`; `expired` when it has been down too long."""

    until: datetime
    down_since: datetime
    last_error: str | None
    expired: bool


def backoff(failures: int, settings: Settings) -> float:
    return min(settings.outage_backoff_seconds * 2 ** max(0, failures - 1), settings.outage_backoff_max_seconds)


def _expired(down_since: datetime, now: datetime, settings: Settings) -> bool:
    return now - down_since >= timedelta(hours=settings.max_outage_hours)


def gate(*, session: Session, key: str, settings: Settings, now: datetime | None = None) -> Wait | None:
    """None: the route may send (closed, or this caller is the probe). Else how long to wait."""
    now = now or utcnow()
    row = session.execute(select(CIRCUITS).where(CIRCUITS.c.key == key)).first()
    if row is None:
        return None
    if _expired(row.down_since, now, settings):
        return Wait(until=now, down_since=row.down_since, last_error=row.last_error, expired=True)
    if row.retry_at <= now:
        probe_until = now + timedelta(seconds=PROBE_SECONDS)
        taken = session.execute(
            update(CIRCUITS).where(CIRCUITS.c.key == key, CIRCUITS.c.retry_at <= now).values(retry_at=probe_until)
        ).rowcount
        if taken == 1:
            return None
        return Wait(until=probe_until, down_since=row.down_since, last_error=row.last_error, expired=False)
    return Wait(until=row.retry_at, down_since=row.down_since, last_error=row.last_error, expired=False)


def trip(*, session: Session, job: Job, error: str, settings: Settings, now: datetime | None = None) -> Wait:
    """Open (or keep open) the job's route circuit after an outage answer; when to try again."""
    now = now or utcnow()
    key = route_key(job)
    row = session.execute(select(CIRCUITS).where(CIRCUITS.c.key == key).with_for_update()).first()
    if row is None:
        retry_at = now + timedelta(seconds=backoff(1, settings))
        inserted = _insert(session, key=key, job=job, error=error, retry_at=retry_at, now=now)
        if inserted:
            return Wait(until=retry_at, down_since=now, last_error=error, expired=False)
        row = session.execute(select(CIRCUITS).where(CIRCUITS.c.key == key).with_for_update()).first()
    # Batches failing together in one outage count once: only a failed probe (its wait was over)
    # makes the next wait longer.
    failures = row.failures + 1 if row.retry_at <= now + timedelta(seconds=PROBE_SECONDS) else row.failures
    retry_at = max(row.retry_at, now + timedelta(seconds=backoff(failures, settings)))
    session.execute(
        update(CIRCUITS).where(CIRCUITS.c.key == key)
        .values(failures=failures, retry_at=retry_at, last_error=error[:2000], updated_at=now)
    )
    return Wait(until=retry_at, down_since=row.down_since, last_error=error,
                expired=_expired(row.down_since, now, settings))


def _insert(session: Session, *, key: str, job: Job, error: str, retry_at: datetime, now: datetime) -> bool:
    """Insert the open circuit; False when another worker opened it first."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    statement = insert(CIRCUITS).values(
        key=key, company_id=job.company_id, provider=job.provider or "-", down_since=now, retry_at=retry_at,
        failures=1, last_error=error[:2000], updated_at=now,
    ).on_conflict_do_nothing(index_elements=["key"])
    return session.execute(statement).rowcount == 1


def close(*, session: Session, key: str) -> None:
    """The route sent a message: it is up again."""
    session.execute(delete(CIRCUITS).where(CIRCUITS.c.key == key))


def open_circuits(*, session: Session) -> list[ProviderCircuit]:
    return list(session.execute(select(ProviderCircuit).order_by(ProviderCircuit.down_since)).scalars())


def outage_reason(*, job: Job, wait: Wait, settings: Settings) -> str:
    since = wait.down_since.strftime("%Y-%m-%d %H:%M:%S UTC")
    return (f"provider {job.provider or '?'} down since {since}, longer than the {settings.max_outage_hours:g} h "
            f"MANI_MAX_OUTAGE_HOURS allows: {wait.last_error or 'unreachable'}")
