"""Certificate rendering: templates as data, bundled Unicode fonts, QR codes, verification codes.

Public API:
    load_template(ref=None, *, search_dirs=()) -> Template
    validate_template(data, *, base_dir=None, name="template") -> Template
    required_fields(template) -> set[str];  missing_fields(required, available) -> list[str]
    get_renderer(template, *, fallback_fonts=()) -> Renderer;  Renderer.render(values) -> bytes
    Renderer.render_batch([RenderItem, ...]) -> [bytes | CertificateError, ...]
    render_many(template, items, *, fallback_fonts=(), processes=None): the same on every core
    prepare_values(template, data, *, code, verify_url, issued_at, expires_at=None) -> dict
    new_code() -> str;  normalize_code(text) -> str | None
    CertificateError (per recipient), TemplateError (UnusableInput)
"""

from certificates.codes import new_code, normalize_code
from certificates.errors import CertificateError, TemplateError
from certificates.loader import load_template
from certificates.pool import render_many
from certificates.renderer import RenderItem, Renderer, get_renderer, prepare_values
from certificates.template import Template, missing_fields, required_fields
from certificates.validate import validate_template

__all__ = [
    "CertificateError",
    "RenderItem",
    "Renderer",
    "Template",
    "TemplateError",
    "get_renderer",
    "load_template",
    "missing_fields",
    "new_code",
    "normalize_code",
    "prepare_values",
    "render_many",
    "required_fields",
    "validate_template",
]
