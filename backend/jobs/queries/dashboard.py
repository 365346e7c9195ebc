"""The dashboard: active jobs with their progress and problems, counters, provider outages."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import func, or_, select
from sqlmodel import Session

from backend.jobs.public import (
    ActiveJobPublic,
    DashboardPublic,
)
from models import (
    JOB_OPEN,
    JOB_WAITING,
    JobStatus,
    utcnow,
)

from backend.jobs.queries.jobs import JOB_COLUMNS, _job_fields, provider_outages
from backend.jobs.queries.tables import B, J, R, _in


# The dashboard ---------------------------------------------------------------------------------------


def _as_utc(value: datetime | str | None) -> datetime | None:
    """Aggregates (max/min) skip the column type: SQLite hands them back as naive or text."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def dashboard(
    *,
    session: Session,
    now: datetime | None = None,
    stuck_after: float = 300.0,
    failure_threshold: float = 0.10,
    failure_min_sample: int = 20,
    limit: int = 200,
) -> DashboardPublic:
    """Counters and the active jobs with their progress, rates and problems.

    Progress comes from the batches' counters (the engine updates them on every commit), or
    the job's own counters when those are ahead; rates from `recipients.sent_at`. It touches the
    jobs and batches tables plus a range of `recipients.sent_at` (`bench/console.py`)."""
    now = now or utcnow()
    open_jobs = _in(J.status, JOB_OPEN)
    job_rows = session.execute(
        select(*JOB_COLUMNS).where(open_jobs).order_by(J.created_at.desc(), J.id.desc()).limit(limit)
    ).all()
    by_status = {str(status): n for status, n in session.execute(
        select(J.status, func.count()).where(open_jobs).group_by(J.status))}
    ids = [row.id for row in job_rows]
    progress: dict[int, tuple[int, int, datetime | None]] = {}
    if ids:
        for job_id, sent, failed, last_finished in session.execute(
            select(B.job_id, func.sum(B.sent_count), func.sum(B.failed_count), func.max(B.finished_at))
            .where(B.job_id.in_(ids)).group_by(B.job_id)
        ):
            progress[job_id] = (int(sent or 0), int(failed or 0), _as_utc(last_finished))
    minute_ago, hour_ago = now - timedelta(minutes=1), now - timedelta(hours=1)
    recent = dict(session.execute(
        select(R.job_id, func.count()).where(R.sent_at >= minute_ago, R.sent_at <= now).group_by(R.job_id)
    ).all())
    sent_last_hour = session.execute(select(func.count()).where(R.sent_at >= hour_ago, R.sent_at <= now)).scalar_one()
    failed_recent = session.execute(
        select(func.coalesce(func.sum(J.failed_count), 0)).where(or_(open_jobs, J.finished_at >= hour_ago))
    ).scalar_one()

    outages = provider_outages(session=session)
    jobs: list[ActiveJobPublic] = []
    since_start_sent, since_start_seconds = 0, 0.0
    for row in job_rows:
        sent, failed, last_batch = progress.get(row.id, (0, 0, None))
        last_progress = max(filter(None, (row.last_progress_at, last_batch)), default=None)
        fields = _job_fields(row, sent=sent, failed=failed, last_progress_at=last_progress)
        rate = None
        if row.started_at and row.status == JobStatus.PROCESSING:
            elapsed = max((now - row.started_at).total_seconds(), 1.0)
            rate = fields["sent"] * 60.0 / elapsed
            since_start_sent += fields["sent"]
            since_start_seconds = max(since_start_seconds, elapsed)
        issues = job_issues(fields, now=now, stuck_after=stuck_after, failure_threshold=failure_threshold,
                            failure_min_sample=failure_min_sample)
        jobs.append(ActiveJobPublic(**fields, rate_per_minute=rate, recent_per_minute=float(recent.get(row.id, 0)),
                                    problems=[long for long, _ in issues], flags=[short for _, short in issues]))
    return DashboardPublic(
        now=now,
        active_jobs=sum(by_status.values()),
        queued_jobs=sum(by_status.get(s, 0) for s in JOB_WAITING),
        queued_recipients=sum(max(job.total - job.done, 0) for job in jobs),
        processing_jobs=by_status.get(JobStatus.PROCESSING, 0),
        sent_last_hour=sent_last_hour,
        failed_recent=int(failed_recent or 0),
        rate_last_minute=float(sum(recent.values())),
        rate_since_start=(since_start_sent * 60.0 / since_start_seconds) if since_start_seconds else None,
        jobs=jobs,
        problems=[outage.describe() for outage in outages]
        + [f"job {job.id}: {problem}" for job in jobs for problem in job.problems],
        outages=outages,
    )


def job_issues(job: dict, *, now: datetime, stuck_after: float, failure_threshold: float,
               failure_min_sample: int) -> list[tuple[str, str]]:
    """(in words, in a few characters) for each thing wrong with one job (`_job_fields`)."""
    found = []
    if job["status"] == JobStatus.PROCESSING:
        since = job["last_progress_at"] or job["started_at"] or job["created_at"]
        idle = (now - since).total_seconds()
        if idle > stuck_after:
            found.append((f"stuck: no progress for {format_duration(idle)}", f"stuck {format_duration(idle)}"))
    done = job["sent"] + job["failed"]
    if done >= failure_min_sample and job["failed"] / done > failure_threshold:
        share = f"{job['failed'] / done:.0%}"
        found.append((f"failure rate {share}", f"{share} failed"))
    return found


def format_duration(seconds: float) -> str:
    """25m, 1h01m, 1d1h: a duration as the dashboard shows it."""
    seconds = int(max(seconds, 0))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86400:
        return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"
    return f"{seconds // 86400}d{(seconds % 86400) // 3600}h"
