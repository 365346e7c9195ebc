"""Finding jobs the one way: `resolve_job_ref` and the job search, on SQLite and PostgreSQL,
and the same answers from `mani jobs list --search` and `mani jobs show`."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import cli
from backend.core.errors import NotFound, UnusableInput
from backend.jobs import queries
from models import Job, Recipient
from models.db import session_scope

UUIDS = {
    "a": "a1b2c3d4-0000-4000-8000-000000000001",
    "b": "a1b2ffff-0000-4000-8000-000000000002",
    "c": "12345678-0000-4000-8000-000000000003",  # starts with digits, like a job number
}


def _add_job(session, uuid: str, emails: list[str], source_name: str = "users.csv") -> int:
    job = Job(uuid=uuid, type="welcome_std", total=len(emails), source_name=source_name, created_by="admin")
    session.add(job)
    session.flush()
    session.add_all(Recipient(job_id=job.id, email=e, email_norm=e.lower()) for e in emails)
    session.flush()
    return job.id


@pytest.fixture
def jobs(session) -> dict[str, int]:
    ids = {
        "a": _add_job(session, UUIDS["a"], ["ann@example.com", "bob@example.com"], source_name="C:\\in\\u.csv"),
        "b": _add_job(session, UUIDS["b"], ["ann@example.org"], source_name="100%_done.csv"),
        "c": _add_job(session, UUIDS["c"], ["carl_x@example.com"]),
    }
    session.commit()
    return ids


def test_resolve_job_ref_by_number_hash_uuid_and_unique_prefix(session, jobs):
    a = jobs["a"]
    assert queries.resolve_job_ref(session=session, job_ref=a) == a
    assert queries.resolve_job_ref(session=session, job_ref=str(a)) == a
    assert queries.resolve_job_ref(session=session, job_ref=f"#{a}") == a
    assert queries.resolve_job_ref(session=session, job_ref=f"  {UUIDS['a'].upper()} ") == a
    assert queries.resolve_job_ref(session=session, job_ref="a1b2c") == a
    # All digits but no such number: the uuid prefix is tried next.
    assert queries.resolve_job_ref(session=session, job_ref="1234") == jobs["c"]


def test_resolve_job_ref_refuses_an_ambiguous_prefix_and_a_missing_job(session, jobs):
    with pytest.raises(UnusableInput, match="2 job uuids start with it") as ambiguous:
        queries.resolve_job_ref(session=session, job_ref="a1b2")
    assert not isinstance(ambiguous.value, NotFound)
    for missing in ("424242", "#424242", "ffff", "a1b2c3d4-0000-4000-8000-000000000099", "%", "a1b2_"):
        with pytest.raises(NotFound):
            queries.resolve_job_ref(session=session, job_ref=missing)
    with pytest.raises(UnusableInput):
        queries.resolve_job_ref(session=session, job_ref="#")


def _found(session, search: str) -> list[int]:
    rows, total = queries.search_jobs(session=session, search=search)
    assert total == len(rows)
    return sorted(row.id for row in rows)


def test_search_by_number_uuid_prefix_and_address(session, jobs):
    a, b = jobs["a"], jobs["b"]
    assert _found(session, f"#{b}") == [b]
    assert b in _found(session, str(b))
    assert _found(session, "a1b2") == [a, b]
    assert _found(session, "A1B2C") == [a]
    assert _found(session, "ann@example.com") == [a]  # exact address
    assert _found(session, "ANN@example") == [a, b]  # the beginning of an address
    assert _found(session, "nobody@example.com") == []


def test_search_escapes_like_wildcards(session, jobs):
    # Only job b's source file ("100%_done.csv") holds a literal % or _.
    assert _found(session, "%") == [jobs["b"]]  # not "anything"
    assert _found(session, "_") == [jobs["b"]]  # not "any one character"
    assert _found(session, "0__d") == []
    assert _found(session, "a1b2_") == []
    assert _found(session, "\\") == [jobs["a"]]  # a backslash is no escape character either
    assert _found(session, "in\\u") == [jobs["a"]]
    assert _found(session, "100%_done") == [jobs["b"]]
    assert _found(session, "carl_x@") == [jobs["c"]]
    assert _found(session, "carl%x@") == []
    page = queries.recipients_page(session=session, job_id=jobs["c"], search="l_x")
    assert [r.email for r in page.rows] == ["carl_x@example.com"]
    assert queries.recipients_page(session=session, job_id=jobs["c"], search="l%x").rows == []


def test_the_cli_finds_the_same_job_as_the_console(sqlite_db):
    with session_scope() as session:
        jobs = {key: _add_job(session, uuid, [f"{key}@example.com"]) for key, uuid in UUIDS.items()}
    runner = CliRunner()
    for search, key in ((str(jobs["b"]), "b"), ("#" + str(jobs["b"]), "b"), ("a1b2c", "a"), ("c@example.com", "c")):
        listed = json.loads(runner.invoke(cli.app, ["jobs", "list", "--search", search, "--json"]).stdout)
        with session_scope() as session:
            console_rows, _ = queries.search_jobs(session=session, search=search)
        assert jobs[key] in [job["id"] for job in listed]
        assert [job["id"] for job in listed] == [row.id for row in console_rows]
        if "@" not in search:
            shown = json.loads(runner.invoke(cli.app, ["jobs", "show", search, "--json"]).stdout)
            assert (shown["id"], shown["job_id"]) == (jobs[key], UUIDS[key])


def test_the_cancel_question_counts_what_the_cancel_does(session, jobs):
    from backend.jobs.actions import cancel_job

    job_id = jobs["a"]
    session.add_all(Recipient(job_id=job_id, email=f"r{i}@example.com", email_norm=f"r{i}@example.com",
                              status=status)
                    for i, status in enumerate(["processing", "sent", "retry_pending", "failed"]))
    session.flush()
    detail = queries.job_detail(session=session, job_ref=job_id)
    # 2 pending + retry_pending + failed; the one `processing` is its worker's to settle.
    assert detail.cancellable == queries.count_cancellable(session=session, job_id=job_id) == 4
    assert detail.waiting == 5
    assert cancel_job(session=session, job_ref=job_id, actor="t", source="test").public.cancelled == 4
