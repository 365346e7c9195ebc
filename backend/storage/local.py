"""Local file storage: the embedded default. Objects are files under `<data_dir>/certificates`."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote

from backend.storage.base import ObjectNotFound, StorageError, check_key, setting_value


class LocalStorage:
    name = "local"

    def __init__(self, root: Path, *, public_base_url: str | None = None):
        self.root = Path(root)
        self.public_base_url = public_base_url.rstrip("/") if public_base_url else None

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put(self, key: str, data: bytes, *, content_type: str = "application/octet-stream") -> None:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Write beside the target and rename: a reader never sees half a file, a rewrite replaces.
            handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".part-")
            try:
                with os.fdopen(handle, "wb") as out:
                    out.write(data)
                os.replace(temporary, path)
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise
        except OSError as error:
            raise StorageError(f"cannot write {path}: {error.strerror or error}") from error

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError as error:
            raise ObjectNotFound(f"no stored file {key}") from error
        except OSError as error:
            raise StorageError(f"cannot read {key}: {error.strerror or error}") from error

    def open_stream(self, key: str) -> BinaryIO:
        try:
            return open(self._path(key), "rb")  # noqa: SIM115 - the caller closes it
        except FileNotFoundError as error:
            raise ObjectNotFound(f"no stored file {key}") from error

    def url(self, key: str, *, ttl: int | None = None) -> str:
        """An http URL under `public_base_url` when set, else a file:// URL (ttl does not apply)."""
        if self.public_base_url:
            return f"{self.public_base_url}/{quote(check_key(key))}"
        return self._path(key).resolve().as_uri()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)


def local_storage(*, settings, company_settings: dict | None = None) -> LocalStorage:
    root = setting_value(settings, "storage_dir", None, company_settings) or Path(settings.data_dir) / "certificates"
    base = setting_value(settings, "public_base_url", None, company_settings)
    return LocalStorage(Path(root).expanduser(), public_base_url=base)
