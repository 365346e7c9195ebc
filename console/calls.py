"""How console workers reach the backend: one session per call, health reported to the app.

These run on worker threads (`@work(thread=True)`), never on the UI thread. Each opens its
own `session_scope()`, so no widget ever holds a session, and each tells the app whether the
database or the broker answered, which drives the banner and lets it clear by itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import redis
from sqlalchemy import exc

from actors import broker as broker_setup
from actors.enqueue import enqueue_after_commit
from backend.core.audit import record
from backend.core.errors import ManiError, ReadOnly
from backend.core.followups import Followups
from backend.moodle import callbacks
from backend.ops.deadletters import BrokerUnavailable
from console.messages import HealthReport
from models.db import DatabaseNotMigrated, session_scope

if TYPE_CHECKING:
    from textual.dom import DOMNode

T = TypeVar("T")

READ_ONLY_MESSAGE = "Read-only mode: this console was started with --read-only, so changes are refused."


class Unavailable(ManiError):
    """The database or the broker did not answer; the banner already says so."""


def _database_errors() -> tuple[type[BaseException], ...]:
    return (exc.OperationalError, exc.InterfaceError, exc.DisconnectionError, exc.TimeoutError, DatabaseNotMigrated)


def _broker_errors() -> tuple[type[BaseException], ...]:
    return (BrokerUnavailable, redis.ConnectionError, redis.TimeoutError)


def explain(error: BaseException) -> str:
    """One sentence for a person."""
    if isinstance(error, ManiError):
        return str(error)
    if isinstance(error, _database_errors()):
        text = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        return f"The database is unreachable: {text}"
    if isinstance(error, _broker_errors()):
        return f"The broker (Redis) is unreachable: {error}"
    return f"{type(error).__name__}: {error}"


def _report(node: DOMNode, service: str, error: str | None) -> None:
    node.app.post_message(HealthReport(service, error))


def _with_session(node: DOMNode, fn: Callable[..., T], *, read_only: bool, **kwargs: Any) -> T:
    try:
        with session_scope(read_only=read_only) as session:
            result = fn(session=session, **kwargs)
    except _database_errors() as error:
        _report(node, "database", explain(error))
        raise Unavailable(explain(error)) from error
    _report(node, "database", None)
    return result


def read(node: DOMNode, fn: Callable[..., T], **kwargs: Any) -> T:
    """`fn(session=..., **kwargs)` in a read-only session."""
    return _with_session(node, fn, read_only=True, **kwargs)


def write(node: DOMNode, fn: Callable[..., T], **kwargs: Any) -> T:
    """`fn(session=..., **kwargs)` in a session that commits; refused in read-only mode."""
    if getattr(node.app, "read_only", True):
        raise ReadOnly(READ_ONLY_MESSAGE)
    return _with_session(node, fn, read_only=False, **kwargs)


def broker(node: DOMNode, fn: Callable[..., T], *, change: bool = False, **kwargs: Any) -> T:
    """`fn(broker=..., **kwargs)` against the configured broker; `change` ones are refused read-only."""
    if change and getattr(node.app, "read_only", True):
        raise ReadOnly(READ_ONLY_MESSAGE)
    try:
        result = fn(broker=node.app.config.broker, **kwargs)
    except _broker_errors() as error:
        _report(node, "broker", explain(error))
        raise Unavailable(explain(error)) from error
    _report(node, "broker", None)
    return result


def audit(node: DOMNode, *, session, action: str, target: str | None = None, details: dict | None = None) -> None:
    """Record a console action in the caller's transaction, as the OS user at the keyboard."""
    record(session=session, actor=node.app.config.actor, source="console", action=action, target=target,
           details=details)


def _use_broker(node: DOMNode) -> None:
    """Point the actors at the console's broker when it has one of its own (tests, the demo)."""
    explicit = node.app.config.broker
    if explicit is not None and broker_setup.current() is not explicit:
        broker_setup.use(explicit)


def hand_over(node: DOMNode, followups: Followups, *, what: str = "it") -> str:
    """After the commit: enqueue what an action stored. Returns a few words for the notification.

    On the embedded default (no Redis) there is no worker in this process: the sweeper of
    `mani worker` picks the work up from the store, so nothing is sent to a broker here.
    A broker that is down loses nothing either: the sweeper re-sends once it is back.
    """
    if not followups:
        return ""
    _use_broker(node)
    if not broker_setup.reaches_workers():
        return f"`mani worker` picks {what} up from the store"
    if not enqueue_after_commit(followups):
        _report(node, "broker", "The broker (Redis) is unreachable: queued work waits in the store")
        return f"the broker is down: the sweeper sends {what} when the broker is back"
    return "queued for the workers"


def redeliver_callbacks(node: DOMNode, *, delivery_ids: list[int] = (), failed_of_job: int | None = None,
                        every_failed: bool = False) -> tuple[list[int], str]:
    """Make callback deliveries due now with a fresh retry schedule (audited), then enqueue them.

    `failed_of_job` / `every_failed` add the failed deliveries of one job / of every job, as
    found at commit time. Returns (the deliveries made due, a few words for the notification).
    """
    def run(*, session) -> list[int]:
        ids = set(delivery_ids)
        if failed_of_job is not None or every_failed:
            ids.update(callbacks.failed_delivery_ids(session=session, job_id=failed_of_job))
        if not ids:
            return []
        return callbacks.redeliver(session=session, delivery_ids=sorted(ids), actor=node.app.config.actor,
                                   source="console")

    done = write(node, run)
    return done, hand_over(node, Followups(callback_ids=done), what="them")
