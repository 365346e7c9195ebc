"""Issuing one certificate without a database: template, fonts, values, PDF, storage key.

mani's certificate service (`backend.certificates`, which records each issue in the database)
and the cloud worker (which keeps no database) both issue through these functions, so a
certificate looks the same whichever of them made it.
"""

from __future__ import annotations

import hmac
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from hashlib import sha256
from pathlib import Path
from typing import Any

from backend.core.errors import UnusableInput
from backend.core.settings import get_settings
from backend.storage.base import setting_value
from certificates import get_renderer, load_template, prepare_values
from certificates.codes import code_from_int
from certificates.renderer import Renderer
from certificates.template import Template

DEFAULT_VERIFY_URL = "http://localhost:8080/verify/{code}"  # `mani serve`'s default address
ACTIONS_WITH_CERTIFICATES = ("certificate", "both")
_TRUE = {"1", "true", "yes", "on", "y"}


def verify_url(code: str, *, settings=None, base: str | None = None) -> str:
    """The public verification link for a code (`certificate_verify_url`, with or without {code})."""
    base = base or str(setting_value(settings or get_settings(), "certificate_verify_url", DEFAULT_VERIFY_URL))
    return base.replace("{code}", code) if "{code}" in base else f"{base.rstrip('/')}/{code}"


def fallback_fonts(settings=None) -> list[str]:
    """`certificate_fallback_font`: one path, or several separated by commas or the path separator."""
    raw = setting_value(settings or get_settings(), "certificate_fallback_font", "")
    items = raw if isinstance(raw, (list, tuple)) else re.split(rf"[,{re.escape(os.pathsep)}]", str(raw))
    return [str(item).strip() for item in items if str(item).strip()]


def template_dirs(settings=None) -> tuple[Path, ...]:
    settings = settings or get_settings()
    dirs = [setting_value(settings, "certificate_template_dir", None), Path(settings.data_dir) / "certificate_templates"]
    return tuple(Path(d).expanduser() for d in dirs if d)


def job_template(template_data: dict, *, settings=None) -> Template:
    name = (template_data or {}).get("certificate_template") or "default"
    return load_template(str(name), search_dirs=template_dirs(settings))


def expiry_days(template_data: dict) -> int | None:
    raw = (template_data or {}).get("certificate_expiry_days")
    if raw in (None, "", 0, "0"):
        return None
    try:
        days = int(raw)
    except (TypeError, ValueError):
        raise UnusableInput(f"certificate_expiry_days must be a whole number of days, got {raw!r}") from None
    if days < 1:
        raise UnusableInput(f"certificate_expiry_days must be at least 1, got {days}")
    return days


def attach_pdf(template_data: dict) -> bool:
    value = (template_data or {}).get("attach_pdf", (template_data or {}).get("certificate_attach_pdf", False))
    return value is True or str(value).strip().lower() in _TRUE


def placeholder_values(*, template_data: Mapping[str, Any] | None, variables: Mapping[str, Any] | None,
                       fields: Mapping[str, Any]) -> dict:
    """Placeholder values for one recipient: job template data, then CSV columns, then its own fields."""
    data = {k: v for k, v in (template_data or {}).items() if not isinstance(v, (dict, list))}
    data.update({k: v for k, v in (variables or {}).items() if v not in (None, "")})
    for name in ("email", "firstname", "lastname", "username", "userid"):
        value = fields.get(name)
        if value not in (None, ""):
            data[name] = value
    return data


def storage_key(job_uuid: str, recipient_id: int, code: str) -> str:
    return f"{job_uuid}/{recipient_id}-{code}.pdf"


def derived_code(key: bytes, job_uuid: str, recipient_id: int) -> str:
    """A verification code fixed by (key, job, recipient): a retried issue gets the same code,
    so it renders to the same storage key instead of leaving a second certificate behind.
    Unguessable without the key (60 bits of HMAC-SHA256)."""
    digest = hmac.new(key, f"certificate\x1f{job_uuid}\x1f{recipient_id}".encode("utf-8"), sha256).digest()
    return code_from_int(int.from_bytes(digest[:8], "big"))


@dataclass(frozen=True, slots=True)
class CertificateKit:
    """What a batch's certificates need, loaded once: the template, its renderer, the rules."""

    template: Template
    renderer: Renderer
    expiry_days: int | None
    attach: bool

    @classmethod
    def for_job(cls, template_data: dict, *, settings=None) -> "CertificateKit":
        """UnusableInput when the template or its fonts cannot be loaded (every recipient fails alike)."""
        settings = settings or get_settings()
        template = job_template(template_data, settings=settings)
        renderer = get_renderer(template, fallback_fonts=fallback_fonts(settings))
        return cls(template, renderer, expiry_days(template_data), attach_pdf(template_data))

    def render(self, data: dict, *, code: str, verify_link: str, issued_at: datetime) -> tuple[dict, bytes]:
        """(values, PDF) of one certificate; CertificateError when this recipient's data cannot make one."""
        expires_at = issued_at + timedelta(days=self.expiry_days) if self.expiry_days else None
        values = prepare_values(self.template, data, code=code, verify_url=verify_link,
                                issued_at=issued_at, expires_at=expires_at)
        return values, self.renderer.render(values, created_at=issued_at)

    def expires_at(self, issued_at: datetime) -> datetime | None:
        return issued_at + timedelta(days=self.expiry_days) if self.expiry_days else None
