"""Storage backends by name: `local`, `s3` and `r2`; more can be registered (`register_storage`)."""

from __future__ import annotations

from collections.abc import Callable

from backend.core.errors import UnusableInput
from backend.storage.base import Storage, setting_value
from backend.storage.local import local_storage
from backend.storage.s3 import r2_storage, s3_storage

StorageFactory = Callable[..., Storage]  # factory(*, settings, company_settings) -> Storage

_factories: dict[str, StorageFactory] = {"local": local_storage, "s3": s3_storage, "r2": r2_storage}


def register_storage(name: str, factory: StorageFactory) -> None:
    """Make `storage_backend = name` usable; the factory is called as factory(*, settings, company_settings)."""
    _factories[name] = factory


def get_storage(*, settings, company_settings=None, name: str | None = None) -> Storage:
    """The storage named `name`, else the company's `storage` setting, else `local`.

    `company_settings` is a mapping of resolved settings (backend.companies.resolution.resolve)
    or a company's plain overrides; factories read their bucket, keys and endpoint from it.
    """
    company_settings = dict(company_settings or {})
    name = name or company_settings.get("storage") or setting_value(settings, "storage_backend", "local")
    factory = _factories.get(name)
    if factory is None:
        raise UnusableInput(f"storage backend '{name}' is not one of {', '.join(sorted(_factories))}")
    return factory(settings=settings, company_settings=company_settings)
