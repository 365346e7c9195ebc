"""Shared fixtures: an isolated mani environment per test, and the real servers.

Redis, PostgreSQL and MariaDB tests skip when the server is not reachable, unless
MANI_REQUIRE_SERVICES=1 (as `.ci/run` sets), which turns the skip into a failure.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text

from actors import broker as broker_setup
from backend.core.settings import reset_settings_cache
from models.db import dispose_engines, get_engine, session_scope, upgrade

pytest_plugins = ["tests.support.smtp", "tests.support.cloud", "tests.support.callbacks", "tests.support.moodle_db",
                  "tests.support.pdfs", "tests.support.redis_server"]

REDIS_URL = os.environ.get("MANI_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get("MANI_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REQUIRE_SERVICES = os.environ.get("MANI_REQUIRE_SERVICES") == "1"


def pytest_collection_modifyitems(items) -> None:
    """Mark what a test needs from the fixtures it uses: `redis`, `postgres` (`-m "not redis"` runs
    without them); `slow` is set by hand on the tests that take more than a few seconds."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        params = set(map(str, getattr(getattr(item, "callspec", None), "params", {}).values()))
        if fixtures & {"redis_url", "redis_smtp", "redis_broker"} or "redis" in params:
            item.add_marker(pytest.mark.redis)
        if "postgres_database" in fixtures or params & {"postgres", "postgres_db"}:
            item.add_marker(pytest.mark.postgres)


def _unavailable(what: str, why: Exception) -> None:
    reason = (str(why).splitlines() or [type(why).__name__])[0]
    message = f"{what} is not reachable ({reason}); set MANI_TEST_{what.upper()}_URL or start it"
    if REQUIRE_SERVICES:
        pytest.fail(message + " (MANI_REQUIRE_SERVICES=1 makes this a failure)")
    pytest.skip(message)


@pytest.fixture(autouse=True)
def mani_env(tmp_path, monkeypatch) -> Iterator[dict]:
    """Every test gets its own data dir, SQLite file and outbox, and no ambient MANI_* config."""
    for name in list(os.environ):
        if name.startswith("MANI_") and not name.startswith(("MANI_TEST_", "MANI_REQUIRE")):
            monkeypatch.delenv(name, raising=False)
    data_dir = tmp_path / "mani-data"
    # No MANI_SECRET_KEY (removed above): the tests that need secrets set one of their own.
    # Local test servers (receivers, moto, provider fakes) are loopback addresses, which the SSRF
    # guard refuses unless allowed; tests of the guard itself delete this.
    env = {"MANI_DATA_DIR": str(data_dir), "MANI_CONFIG": str(tmp_path / "no-config.toml"),
           "MANI_ALLOWED_CALLBACK_HOSTS": "127.0.0.1,localhost,::1"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    reset_settings_cache()
    dispose_engines()
    yield env
    broker_setup.reset()  # a broker chosen by one test (`use`, `configure`) never leaks into the next
    dispose_engines()
    reset_settings_cache()


@pytest.fixture
def sqlite_db(mani_env) -> str:
    """The embedded default database, migrated."""
    engine = get_engine()
    upgrade(engine)
    return str(engine.url)


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A throwaway PostgreSQL database for this test session, migrated once."""
    try:
        admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text("select 1"))
    except Exception as error:  # noqa: BLE001 - any failure to connect means "not here"
        _unavailable("postgres", error)
    name = f"mani_test_{uuid.uuid4().hex[:10]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = admin.url.set(database=name).render_as_string(hide_password=False)
    upgrade(create_engine(url))
    yield url
    dispose_engines()
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def postgres_db(postgres_database, monkeypatch) -> str:
    """PostgreSQL as the configured store, emptied before the test."""
    engine = create_engine(postgres_database)
    with engine.begin() as connection:
        tables = connection.execute(
            text("select tablename from pg_tables where schemaname='public' and tablename <> 'alembic_version'")
        ).scalars().all()
        if tables:
            connection.execute(text("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE"))
    engine.dispose()
    monkeypatch.setenv("MANI_DATABASE_URL", postgres_database)
    # A shared database means several hosts: they need a configured key, never a made-up one.
    from cryptography.fernet import Fernet

    monkeypatch.setenv("MANI_SECRET_KEY", Fernet.generate_key().decode())
    reset_settings_cache()
    dispose_engines()
    return postgres_database


@pytest.fixture(params=["sqlite", "postgres"])
def any_db(request) -> str:
    """Runs the test once on SQLite and once on PostgreSQL."""
    return request.getfixturevalue(f"{request.param}_db")


@pytest.fixture
def session(any_db):
    with session_scope() as db_session:
        yield db_session


@pytest.fixture
def redis_url(monkeypatch) -> str:
    """A reachable Redis, with a namespace of this test's own, set as the broker."""
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except Exception as error:  # noqa: BLE001
        _unavailable("redis", error)
    namespace = f"mani-test-{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("MANI_REDIS_URL", REDIS_URL)
    monkeypatch.setenv("MANI_REDIS_NAMESPACE", namespace)
    reset_settings_cache()
    yield REDIS_URL
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(f"{namespace}*", count=1000))
    if keys:
        client.delete(*keys)


@pytest.fixture
def redis_smtp(redis_url, smtp_sink, monkeypatch):
    """Redis as the broker of this process, and a real SMTP server as the provider."""
    import actors.broker

    monkeypatch.setenv("MANI_EMAIL_PROVIDER", "smtp")
    monkeypatch.setenv("MANI_SMTP_URL", smtp_sink.url)
    reset_settings_cache()
    actors.broker.reset()
    actors.broker.configure()
    yield smtp_sink
    actors.broker.reset()
