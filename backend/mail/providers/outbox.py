"""The `outbox` provider: every message becomes an `.eml` file a person can open.

Files go to `<outbox>/<job uuid>/<message id>.eml` (or `<outbox>/<YYYY-MM-DD>/` for a message
id that does not name a job). Each is written to a temporary file and renamed over the final
name, so a reader never sees half a message and a resend replaces the earlier copy instead of
adding a second one.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from backend.mail.mime import MessageError, compose, split_sender
from backend.mail.providers.base import Outcome, OutgoingMessage, ProviderError, SendResult

_JOB_IN_MESSAGE_ID = re.compile(r"mani\.([0-9A-Za-z-]{1,64})\.\d+@")
_UNSAFE_FILENAME_CHARS = re.compile(r"[^A-Za-z0-9._@+=-]")


def eml_filename(message_id: str) -> str:
    """The file name for a message id: the id itself with unsafe characters replaced."""
    safe = _UNSAFE_FILENAME_CHARS.sub("_", message_id.strip().strip("<>")).lstrip(".")
    return (safe[:200] or "message") + ".eml"


class OutboxProvider:
    name = "outbox"
    max_batch = 10_000

    def __init__(self, directory: str | os.PathLike, sender: str):
        self.directory = Path(directory)
        self.sender = sender
        try:
            split_sender(sender)  # a bad sender is a configuration error: fail now, not per message
        except MessageError as error:
            raise ProviderError(str(error)) from None
        self._made: set[Path] = set()

    def __enter__(self) -> "OutboxProvider":
        return self

    def __exit__(self, *exc_info) -> None:
        return None

    def folder_for(self, message_id: str) -> Path:
        match = _JOB_IN_MESSAGE_ID.match(message_id)
        name = match.group(1) if match else datetime.now(timezone.utc).strftime("%Y-%m-%d")
        return self.directory / name

    def send(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        return [self._write(message) for message in messages]

    def _write(self, message: OutgoingMessage) -> SendResult:
        try:
            data = compose(message, sender=self.sender)
        except MessageError as error:
            return SendResult(message.recipient_id, Outcome.PERMANENT, error=str(error))
        folder = self.folder_for(message.message_id)
        filename = eml_filename(message.message_id)
        # Unique per process and thread: two workers writing the same message never share a temp file.
        temporary = folder / f".{filename}.{os.getpid()}.{threading.get_ident()}.tmp"
        try:
            if folder not in self._made:
                folder.mkdir(parents=True, exist_ok=True)
                self._made.add(folder)
            with open(temporary, "wb") as handle:
                handle.write(data)
            os.replace(temporary, folder / filename)
        except OSError as error:
            temporary.unlink(missing_ok=True)
            return SendResult(message.recipient_id, Outcome.TRANSIENT, error=f"Cannot write {folder / filename}: {error}")
        return SendResult(message.recipient_id, Outcome.SENT, external_id=filename)


def from_settings(*, settings: Any, company_settings: Mapping | None = None) -> OutboxProvider:
    company_settings = company_settings or {}
    return OutboxProvider(
        company_settings.get("outbox_dir") or settings.effective_outbox_dir,
        company_settings.get("sender") or settings.sender,
    )
