"""backend.jobs.queries: the one read side (dashboard, history, job detail, recipients, audit), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest

from backend.core.errors import NotFound
from backend.jobs import queries as q
from docs.tools.demo import DEMO_NOW, seed


@pytest.fixture
def demo(session):
    ids = seed(session=session, now=DEMO_NOW)
    session.flush()
    return ids


def test_dashboard_snapshot_counts_and_flags_problems(session, demo):
    snap = q.dashboard(session=session, now=DEMO_NOW, stuck_after=300, failure_threshold=0.1)
    assert snap.active_jobs == 5
    assert (snap.queued_jobs, snap.processing_jobs) == (1, 3)
    by_id = {job.id: job for job in snap.jobs}
    assert set(by_id) == {demo[2], demo[3], demo[4], demo[5], demo[7]}
    assert by_id[demo[2]].sent == 1860 and by_id[demo[2]].total == 3000
    assert by_id[demo[3]].problems == ["stuck: no progress for 25m"]
    assert by_id[demo[7]].problems == ["failure rate 38%"]
    assert by_id[demo[2]].problems == []
    assert (by_id[demo[3]].flags, by_id[demo[7]].flags) == (["stuck 25m"], ["38% failed"])
    assert snap.sent_last_hour == 1860 + 400 + 150
    assert snap.rate_last_minute > 0 and snap.rate_since_start is not None
    assert len(snap.problems) == 2


def test_search_jobs_filters_and_finds_by_address(session, demo):
    rows, total = q.search_jobs(session=session)
    assert total == 9 and [r.id for r in rows][:2] == [demo[4], demo[7]]  # newest first
    assert q.search_jobs(session=session, status="processing")[1] == 3
    assert q.search_jobs(session=session, job_type="reminder", company_id="globex")[1] == 2
    assert q.search_jobs(session=session, since=DEMO_NOW - timedelta(hours=1))[1] == 4
    assert [r.id for r in q.search_jobs(session=session, search=str(demo[1]))[0]] == [demo[1]]
    assert [r.id for r in q.search_jobs(session=session, search="00000003-5e")[0]] == [demo[2]]
    found = q.search_jobs(session=session, search="KEN.TURING7@globex.org")[0]
    assert sorted(r.id for r in found) == sorted([demo[1], demo[4], demo[8]])
    assert q.search_jobs(session=session, search="nobody@nowhere.org")[1] == 0


def test_recipients_are_keyset_paged(session, demo):
    job_id = demo[2]
    first = q.recipients_page(session=session, job_id=job_id, limit=100)
    assert (first.start, first.total, len(first.rows), first.has_previous, first.has_next) == (0, 3000, 100, False, True)
    second = q.recipients_page(session=session, job_id=job_id, after_id=first.rows[-1].id, limit=100)
    assert second.start == 100 and second.rows[0].id > first.rows[-1].id
    back = q.recipients_page(session=session, job_id=job_id, before_id=second.rows[0].id, limit=100)
    assert [r.id for r in back.rows] == [r.id for r in first.rows]
    last = q.recipients_page(session=session, job_id=job_id, last=True, limit=100)
    assert last.start == 2900 and not last.has_next
    failed = q.recipients_page(session=session, job_id=job_id, status=["failed", "permanently_failed"])
    assert failed.total == 12 and {r.status for r in failed.rows} == {"failed", "permanently_failed"}
    assert all(r.error for r in failed.rows)
    searched = q.recipients_page(session=session, job_id=job_id, search="RADIA.turing8@")
    assert [r.email for r in searched.rows] == ["radia.turing8@acme.org"]
    assert q.count_recipients(session=session, job_id=job_id, status="sent") == 1860


def test_job_detail_and_log(session, demo):
    detail = q.job_detail(session=session, job_ref=demo[1])
    assert detail.company_name == "Globex Academy"
    assert detail.counts == {"sent": 760, "permanently_failed": 13, "failed": 27}
    assert detail.retryable == 40 and len(detail.batches) == 4 and detail.rejected == 2
    assert q.job_detail(session=session, job_ref="00000002").id == demo[1]
    with pytest.raises(NotFound):
        q.job_detail(session=session, job_ref="999999")
    rows = list(q.iter_recipient_log(session=session, job_id=demo[1], chunk=300))
    assert len(rows) == 800 and list(rows[0]) == list(q.LOG_COLUMNS)
    assert rows[0]["sent_at"] and "secret" not in rows[0]


def test_audit_entries_newest_first_and_searchable(session, demo):
    rows, total = q.audit_entries(session=session)
    assert total == 5 and rows[0].action == "job.retry"
    assert [r.actor for r in q.audit_entries(session=session, search="bob")[0]] == ["bob"]
    assert q.audit_entries(session=session, search="company.")[1] == 1
    assert q.company_choices(session=session)[0] == ("acme", "Acme Training")


def test_format_duration():
    assert [q.format_duration(s) for s in (5, 90, 3700, 90000)] == ["5s", "1m", "1h01m", "1d1h"]
