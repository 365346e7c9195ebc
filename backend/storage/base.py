"""The storage contract certificates (and any other artefact) are written through."""

from __future__ import annotations

import os
import re
from typing import Any, BinaryIO, Protocol, runtime_checkable

from backend.core.errors import ManiError, NotFound, UnusableInput

_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-/]*$")


class StorageError(ManiError):
    """The storage backend failed (disk full, bucket unreachable). Usually worth a retry."""


class ObjectNotFound(NotFound):
    """No stored object under that key."""


@runtime_checkable
class Storage(Protocol):
    """A flat key -> bytes store. Keys look like `certificates/<job uuid>/<id>-<code>.pdf`."""

    name: str

    def put(self, key: str, data: bytes, *, content_type: str = "application/octet-stream") -> None:
        """Store `data` under `key`; the same key again overwrites (idempotent)."""

    def exists(self, key: str) -> bool: ...

    def get(self, key: str) -> bytes:
        """The whole object; ObjectNotFound when absent."""

    def open_stream(self, key: str) -> BinaryIO:
        """A readable binary file object for large reads (close it, or use `with`)."""

    def url(self, key: str, *, ttl: int | None = None) -> str:
        """A link a person can open; presigned backends make it expire after `ttl` seconds."""

    def delete(self, key: str) -> None:
        """Remove the object; absent is fine."""


def check_key(key: str) -> str:
    """Reject keys that could escape a directory or confuse a bucket."""
    if not key or len(key) > 1024 or not _KEY.match(key) or ".." in key.split("/") or "//" in key:
        raise UnusableInput(f"storage key {key!r} is not usable (letters, digits, . _ - / only)")
    return key


def setting_value(settings: Any, name: str, default: Any = None, company_settings: dict | None = None) -> Any:
    """A setting by name: the company's override, the Settings field, then MANI_<NAME>, then default.

    The environment step covers settings this package reads before they are declared on
    `backend.core.settings.Settings` (which ignores unknown MANI_* variables).
    """
    if company_settings and company_settings.get(name) not in (None, ""):
        return company_settings[name]
    value = getattr(settings, name, None)
    if value not in (None, ""):
        return value
    env = os.environ.get(f"MANI_{name.upper()}")
    if env not in (None, ""):
        return env
    return default
