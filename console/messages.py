"""Messages the console's workers post back to the UI thread."""

from __future__ import annotations

from typing import Any

from textual.message import Message


class HealthReport(Message):
    """A worker's finding about a backing service: `error` None means it answered."""

    def __init__(self, service: str, error: str | None) -> None:
        super().__init__()
        self.service = service  # "database" or "broker"
        self.error = error


class Loaded(Message):
    """A screen's data, read by a worker. `what` names the part (e.g. "page", "detail")."""

    def __init__(self, what: str, data: Any) -> None:
        super().__init__()
        self.what = what
        self.data = data


class ActionDone(Message):
    """A change went through; `message` says what happened, for a notification."""

    def __init__(self, action: str, message: str, data: Any = None) -> None:
        super().__init__()
        self.action = action
        self.message = message
        self.data = data


class ActionFailed(Message):
    """A change or read failed; `message` says why, for a notification."""

    def __init__(self, action: str, message: str) -> None:
        super().__init__()
        self.action = action
        self.message = message
