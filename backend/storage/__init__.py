"""Storage backends by name: `local` here; S3/R2 register themselves with `register_storage`."""

from __future__ import annotations

from collections.abc import Callable

from backend.core.errors import UnusableInput
from backend.storage.base import ObjectNotFound, Storage, StorageError, check_key, setting_value
from backend.storage.local import LocalStorage, local_storage

StorageFactory = Callable[..., Storage]  # factory(*, settings, company_settings) -> Storage

_factories: dict[str, StorageFactory] = {"local": local_storage}


def register_storage(name: str, factory: StorageFactory) -> None:
    """Make `storage_backend = name` usable; the factory is called as factory(*, settings, company_settings)."""
    _factories[name] = factory


def storage_names() -> list[str]:
    _load_optional_backends()
    return sorted(_factories)


def _load_optional_backends() -> None:
    try:  # backend/storage/s3.py registers "s3" and "r2" when it exists
        import backend.storage.s3  # noqa: F401
    except ModuleNotFoundError as error:
        if error.name != "backend.storage.s3":
            raise


def get_storage(*, settings, company_settings=None, name: str | None = None) -> Storage:
    """The storage named `name`, else the company's `storage` setting, else `local`.

    `company_settings` is a mapping of resolved settings (backend.companies.catalogue.resolve) or
    a company's plain overrides; factories read their bucket, keys and endpoint from it.
    """
    company_settings = dict(company_settings or {})
    name = name or company_settings.get("storage") or setting_value(settings, "storage_backend", "local")
    if name not in _factories:
        _load_optional_backends()
    factory = _factories.get(name)
    if factory is None:
        raise UnusableInput(f"storage backend '{name}' is not one of {', '.join(sorted(_factories))}")
    return factory(settings=settings, company_settings=company_settings)


__all__ = [
    "LocalStorage",
    "ObjectNotFound",
    "Storage",
    "StorageError",
    "check_key",
    "get_storage",
    "register_storage",
    "setting_value",
    "storage_names",
]
