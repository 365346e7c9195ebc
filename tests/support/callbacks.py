"""A pytest plugin (see `pytest_plugins` in conftest.py): fixtures for the callback, API and
webhook tests (`cb_db`, `sqlite_cb_db`, `serve_app`), and factories they import (`add_company`,
`make_job`, `set_recipients`, `SECRET`, `WORKER_SECRET`)."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime

import pytest
from sqlalchemy import insert

from backend.core.settings import reset_settings_cache
from models import Batch, Company, Job, Recipient
from models.db import session_scope

SECRET = "hmac_secret_key"
# What external workers sign their callbacks to mani with: never the key of mani's callbacks to Moodle.
WORKER_SECRET = "worker_secret_key_0123456789"


def _with_secret_key(monkeypatch) -> None:
    """Callback secrets are stored encrypted: every callback test needs a key."""
    from cryptography.fernet import Fernet

    monkeypatch.setenv("MANI_SECRET_KEY", Fernet.generate_key().decode())
    reset_settings_cache()


@pytest.fixture
def cb_db(any_db, monkeypatch) -> str:
    """SQLite or PostgreSQL, with a secret key."""
    _with_secret_key(monkeypatch)
    return any_db


@pytest.fixture
def sqlite_cb_db(sqlite_db, monkeypatch) -> str:
    """Like `cb_db`, SQLite only (for tests about HTTP, where the store does not matter)."""
    _with_secret_key(monkeypatch)
    return sqlite_db


def add_company(company_id: str, *, callback_url: str | None = None, secret: str | None = SECRET,
                worker_secret: str | None = WORKER_SECRET) -> None:
    from backend.companies.store import set_company_settings

    with session_scope() as session:
        session.add(Company(id=company_id, name=f"Company {company_id}"))
        session.flush()
        values = {}
        if callback_url:
            values["callback_url"] = callback_url
        if secret:
            values["callback_secret"] = secret
        if worker_secret:
            values["cloud_callback_secret"] = worker_secret
        if values:
            set_company_settings(session=session, company_id=company_id, values=values, actor="test", source="cli")


def make_job(*, company_id: str | None, recipients: int = 5, batch_size: int = 200, callback_url: str | None = None,
             status: str = "processing", recipient_status: str = "pending", userids: bool = True) -> int:
    """A job with batches and recipients written straight into the store; returns its id."""
    with session_scope() as session:
        job = Job(uuid=str(uuid.uuid4()), type="reminder", company_id=company_id, status=status, source="api",
                  callback_url=callback_url, total=recipients)
        session.add(job)
        session.flush()
        for number, start in enumerate(range(0, recipients, batch_size), start=1):
            size = min(batch_size, recipients - start)
            batch = Batch(job_id=job.id, number=number, size=size, status="processing")
            session.add(batch)
            session.flush()
            session.execute(insert(Recipient.__table__), [
                {"job_id": job.id, "batch_id": batch.id, "line": i, "userid": str(1000 + i) if userids else None,
                 "email": f"user{i}@example.com", "email_norm": f"user{i}@example.com", "variables": {},
                 "status": recipient_status, "attempts": 0}
                for i in range(start, start + size)
            ])
        job.batch_count = -(-recipients // batch_size)
        session.add(job)
        return job.id


def set_recipients(job_id: int, *, status: str, sent_at: datetime | None = None, error: str | None = None,
                   attempts: int = 1, external_id: bool = False) -> None:
    from sqlalchemy import update

    with session_scope() as session:
        values = {"status": status, "sent_at": sent_at, "last_error": error, "attempts": attempts}
        session.execute(update(Recipient).where(Recipient.job_id == job_id).values(**values))
        if external_id:
            for row in session.query(Recipient).filter(Recipient.job_id == job_id):
                row.external_id = f"<provider-{row.id}@mg.example.com>"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ServerThread:
    """uvicorn serving an ASGI app on a free local port, in a thread."""

    def __init__(self, app) -> None:
        import uvicorn

        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "ServerThread":
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc_info) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def serve_app() -> Iterator:
    """`serve_app(app)` starts a real server and returns its base URL; all stop after the test."""
    servers: list[ServerThread] = []

    def start(app) -> str:
        server = ServerThread(app).__enter__()
        servers.append(server)
        return server.url

    yield start
    for server in servers:
        server.__exit__(None, None, None)
