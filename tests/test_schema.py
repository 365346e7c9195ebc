"""The migrations build exactly the schema the models describe (status enums stay VARCHAR)."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel

from models import Job, JobStatus, Recipient, RecipientStatus
from models.db import get_engine, session_scope


def test_the_models_and_the_migrations_agree(any_db):
    with get_engine().connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection, opts={"compare_type": True}),
                                       SQLModel.metadata)
    assert differences == []


def test_status_columns_read_back_as_their_enums(any_db):
    with session_scope() as session:
        job = Job(uuid="00000000-0000-4000-8000-00000000000a", type="welcome_std")
        session.add(job)
        session.flush()
        session.add(Recipient(job_id=job.id, email="a@example.com", email_norm="a@example.com", status="sent"))
    with session_scope() as session:
        recipient = session.query(Recipient).one()
        assert session.get(Job, job.id).status is JobStatus.PENDING
        assert recipient.status is RecipientStatus.SENT
