"""The email provider registry: a name (`MANI_EMAIL_PROVIDER`, a company's `email_provider`)
to a factory that builds a provider for one batch.

A factory is called as `factory(settings=..., company_settings=...)` and returns an object
keeping the contract in `backend.mail.providers.base`. It may be registered as a callable or as a
"package.module:function" string, imported on first use, so that a provider's client library
(boto3 for SES, say) is only imported by the processes that send through it:

    register_provider("ses", "backend.mail.providers.ses:from_settings")
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Mapping
from typing import Any

from backend.core import outbound
from backend.core.errors import UnusableInput
from backend.mail.providers.base import (
    Attachment,
    Outcome,
    OutgoingMessage,
    Provider,
    ProviderError,
    SendResult,
)

ProviderFactory = Callable[..., Provider]
# Provider API URLs a company may set: each is checked by the SSRF guard before a batch is sent.
PROVIDER_URL_SETTINGS = ("mailgun_api_url", "sendgrid_api_url", "ses_endpoint_url")

_lock = threading.Lock()
_factories: dict[str, ProviderFactory | str] = {
    "outbox": "backend.mail.providers.outbox:from_settings",
    "smtp": "backend.mail.providers.smtp:from_settings",
    "ses": "backend.mail.providers.ses:from_settings",
    "mailgun": "backend.mail.providers.mailgun:from_settings",
    "sendgrid": "backend.mail.providers.sendgrid:from_settings",
}


def register_provider(name: str, factory: ProviderFactory | str) -> None:
    """Make `name` usable in `get_provider`; a later registration of the same name replaces it."""
    with _lock:
        _factories[name.strip().lower()] = factory


def known_providers() -> list[str]:
    with _lock:
        return sorted(_factories)


def _resolve(name: str) -> ProviderFactory:
    with _lock:
        factory = _factories.get(name)
    if factory is None:
        raise UnusableInput(f"Unknown email provider {name!r}; known providers: {', '.join(known_providers())}.")
    if isinstance(factory, str):
        module_name, _, attribute = factory.partition(":")
        factory = getattr(importlib.import_module(module_name), attribute)
        with _lock:
            _factories[name] = factory
    return factory


def get_provider(name: str, *, settings: Any, company_settings: Mapping | None = None) -> Provider:
    """A new provider for one batch (use it as `with provider:`); UnusableInput for an unknown name,
    UnsafeUrl for a company's API URL that is not a public address (checked now, at send time)."""
    company_settings = company_settings or {}
    for key in PROVIDER_URL_SETTINGS:
        if company_settings.get(key):
            outbound.check_url(str(company_settings[key]), what=key)
    return _resolve((name or "").strip().lower())(settings=settings, company_settings=company_settings)


__all__ = [
    "Attachment",
    "Outcome",
    "OutgoingMessage",
    "Provider",
    "ProviderError",
    "ProviderFactory",
    "SendResult",
    "get_provider",
    "known_providers",
    "register_provider",
]
