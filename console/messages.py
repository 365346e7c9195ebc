"""Messages the console's workers hand back to the UI thread.

A worker (`@work(thread=True, exclusive=True, exit_on_error=False)`) returns one typed message;
`console.workers.WorkerResults` posts it to the node that started the worker, and turns an
exception into one `ActionFailed`. So no worker catches its own errors, and a worker that was
replaced by a newer one (exclusive) delivers nothing stale. The messages a single screen reads
are defined in that screen's file; the ones several screens share are here.
"""

from __future__ import annotations

from typing import Any

from textual.message import Message


class HealthReport(Message):
    """A worker's finding about a backing service: `error` None means it answered."""

    def __init__(self, service: str, error: str | None) -> None:
        super().__init__()
        self.service = service  # "database" or "broker"
        self.error = error


class CompanyChoicesLoaded(Message):
    """(company id, name) pairs for a company filter or picker."""

    def __init__(self, choices: list[tuple[str, str]]) -> None:
        super().__init__()
        self.choices = choices


class ActionDone(Message):
    """A change went through; `message` says what happened, for a notification."""

    def __init__(self, action: str, message: str, data: Any = None) -> None:
        super().__init__()
        self.action = action
        self.message = message
        self.data = data


class ActionFailed(Message):
    """A change or read failed; `message` says why, for a notification. `action` names the worker."""

    def __init__(self, action: str, message: str) -> None:
        super().__init__()
        self.action = action
        self.message = message
