"""Engines, sessions and migrations for SQLite (the embedded default) and PostgreSQL."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlmodel import Session

from backend.core.settings import get_settings

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

_lock = threading.Lock()


def json_text(value) -> str:
    """JSON columns (audit details, Job JSON) keep Unicode as is: "Nëw Co", not "N\\u00ebw Co"."""
    return json.dumps(value, ensure_ascii=False)


_engines: dict[tuple[str, bool], Engine] = {}
_migrated: set[str] = set()


class DatabaseNotMigrated(RuntimeError):
    """The schema is behind the code; `mani db upgrade` fixes it."""


def _configure_sqlite(engine: Engine, *, immediate: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        # Let SQLAlchemy, not the driver, decide when transactions begin (see "begin" below).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        # Writers take the write lock up front: a deferred transaction that reads and then
        # writes fails at once with SQLITE_BUSY when another connection committed meanwhile.
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def get_engine(url: str | None = None, *, read_only: bool = False) -> Engine:
    """The process-wide engine for `url` (default: the settings' database)."""
    if url is None:
        url = get_settings().effective_database_url
    key = (url, read_only)
    with _lock:
        engine = _engines.get(key)
        if engine is not None:
            return engine
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(
                url, connect_args={"check_same_thread": False, "timeout": 30}, pool_size=10, max_overflow=20,
                json_serializer=json_text,
            )
            _configure_sqlite(engine, immediate=not read_only)
        else:
            if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
                parsed = parsed.set(drivername="postgresql+psycopg")
            engine = create_engine(parsed, pool_pre_ping=True, pool_size=10, max_overflow=20,
                                   json_serializer=json_text)
        _engines[key] = engine
        return engine


def dispose_engines() -> None:
    """Close every pooled connection (after fork, and between tests)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
        _migrated.clear()


def _alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    return config


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision(engine: Engine) -> str | None:
    return ScriptDirectory.from_config(_alembic_config(engine)).get_current_head()


def upgrade(engine: Engine | None = None) -> tuple[str | None, str | None]:
    """Migrate to the newest schema; returns (before, after) revisions."""
    engine = engine or get_engine()
    before = current_revision(engine)
    config = _alembic_config(engine)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    after = current_revision(engine)
    _migrated.add(str(engine.url))
    return before, after


def ensure_schema(engine: Engine | None = None) -> None:
    """Migrate SQLite by itself on first use; ask for `mani db upgrade` anywhere else."""
    engine = engine or get_engine()
    key = str(engine.url)
    if key in _migrated:
        return
    with _lock:
        if key in _migrated:
            return
        current, head = current_revision(engine), head_revision(engine)
        if current == head:
            _migrated.add(key)
            return
    if engine.dialect.name == "sqlite":
        upgrade(engine)
        return
    raise DatabaseNotMigrated(
        f"The database schema is at {current or 'nothing'}, the code needs {head}: run `mani db upgrade`."
    )


@contextmanager
def session_scope(*, read_only: bool = False) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    engine = get_engine(read_only=read_only)
    ensure_schema(get_engine())
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
