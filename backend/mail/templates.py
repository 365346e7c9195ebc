"""Email templates: sandboxed jinja2, one subject, text body and HTML body per job type.

Defaults live in `backend/mail/email_templates/<type>/`; `settings.template_dir` (same layout)
overrides any file, the shared `_layout.html.j2` and `_footer.txt.j2` included. Templates are
compiled once per (type, template_dir) and rendered with `StrictUndefined`, so a variable no
recipient provides is caught by `check_variables` at submit time, not half-way through a job.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import (
    ChoiceLoader,
    FileSystemLoader,
    StrictUndefined,
    TemplateError,
    TemplateNotFound,
    TemplateSyntaxError,
    UndefinedError,
    meta,
)
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from backend.core.errors import UnusableInput
from backend.core.settings import JOB_TYPES, Settings, get_settings

DEFAULT_TEMPLATE_DIR = Path(__file__).parent / "email_templates"
TEMPLATE_FILES = ("subject.txt.j2", "body.txt.j2", "body.html.j2")

# build_context sets these for every recipient, whatever the CSV holds.
ALWAYS_PROVIDED = frozenset({"email", "fullname", "site_name", "login_url"})
# What the certificate step hands to the template when a job generates certificates.
CERTIFICATE_VARIABLES = frozenset({"certificate_url", "certificate_code", "certificate_verify_url"})

# Variables a template may use without any CSV column or template data providing them.
COMMON_DEFAULTS: dict[str, Any] = {"firstname": None, "lastname": None, "userid": None}
OPTIONAL_DEFAULTS: dict[str, dict[str, Any]] = {
    # No password column: the mail points to the login page's password reset instead.
    # No username column: the mail says to log in with the email address (Moodle's
    # "Allow log in via email", authloginviaemail).
    "welcome_std": {"password": None, "username": None},
    "welcome_lic": {"course_url": None},
    "reengagement": {"course_url": None},
    # A course without an end date has no due date: the mail then asks to finish it, without a date.
    "reminder": {"course_url": None, "due_date": None},
    "certificate": {"certificate_verify_url": None, "grade": None},
}


@dataclass(frozen=True, slots=True)
class RenderedMessage:
    subject: str
    text: str
    html: str


class UnknownJobType(UnusableInput):
    """A job type that has no templates."""


class RenderError(UnusableInput):
    """A template could not be rendered for one recipient (missing variable, unsafe access)."""


def _check_type(job_type: str) -> None:
    if job_type not in JOB_TYPES:
        raise UnknownJobType(f"unknown job type '{job_type}'; the known types are: {', '.join(JOB_TYPES)}.")


def defaults_for(job_type: str) -> dict[str, Any]:
    """The optional variables of a type and the value they take when nobody provides them."""
    _check_type(job_type)
    return {**COMMON_DEFAULTS, **OPTIONAL_DEFAULTS.get(job_type, {})}


def _percent(value: Any) -> int | None:
    """'45', '45%', 45.4 -> 45, clamped to 0..100; None when the value is not a number."""
    try:
        number = float(str(value).strip().rstrip("%").strip())
    except ValueError:
        return None
    if number != number:  # NaN
        return None
    return round(min(max(number, 0.0), 100.0))


def _autoescape(name: str | None) -> bool:
    return bool(name) and name.endswith(".html.j2")


@lru_cache(maxsize=16)
def _environment(template_dir: Path | None) -> ImmutableSandboxedEnvironment:
    if template_dir and not Path(template_dir).is_dir():
        # A mistyped folder would otherwise send the defaults without a word.
        raise UnusableInput(f"the template folder {template_dir} (MANI_TEMPLATE_DIR) is not a directory.")
    loaders = [FileSystemLoader(str(template_dir))] if template_dir else []
    loaders.append(FileSystemLoader(str(DEFAULT_TEMPLATE_DIR)))
    environment = ImmutableSandboxedEnvironment(
        loader=ChoiceLoader(loaders),
        undefined=StrictUndefined,
        autoescape=_autoescape,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        # Workers restart to pick up edited templates; no stat() per render.
        auto_reload=False,
        # An absent optional field (None) prints as nothing, not "None".
        finalize=lambda value: "" if value is None else value,
    )
    environment.filters["percent"] = _percent
    return environment


def _template_dir(settings: Settings | None) -> Path | None:
    settings = settings or get_settings()
    return settings.template_dir or None


def _syntax_error(error: TemplateSyntaxError) -> UnusableInput:
    where = error.filename or error.name or "a template"
    return UnusableInput(f"template {where} has an error on line {error.lineno}: {error.message}.")


@lru_cache(maxsize=64)
def _compiled(job_type: str, template_dir: Path | None):
    environment = _environment(template_dir)
    try:
        return tuple(environment.get_template(f"{job_type}/{name}") for name in TEMPLATE_FILES)
    except TemplateSyntaxError as error:
        raise _syntax_error(error) from None
    except TemplateNotFound as error:
        raise UnusableInput(f"template {error.name} does not exist in the template folders.") from None


def clear_template_cache() -> None:
    """Forget compiled templates (after editing files in the override folder)."""
    _compiled.cache_clear()
    _environment.cache_clear()


def _undeclared(environment: ImmutableSandboxedEnvironment, name: str, visited: set[str]) -> set[str]:
    """Variables a template and the templates it extends, includes or imports read from the context."""
    if name in visited:
        return set()
    visited.add(name)
    try:
        source, filename, _ = environment.loader.get_source(environment, name)
        tree = environment.parse(source, name, filename)
    except TemplateSyntaxError as error:
        raise _syntax_error(error) from None
    except TemplateNotFound:
        raise UnusableInput(f"template {name} does not exist in the template folders.") from None
    found = set(meta.find_undeclared_variables(tree))
    for referenced in meta.find_referenced_templates(tree):
        if referenced is not None:
            found |= _undeclared(environment, referenced, visited)
    return found


def template_variables(job_type: str, *, settings: Settings | None = None) -> set[str]:
    """Every variable the type's three templates read, optional ones included."""
    _check_type(job_type)
    environment = _environment(_template_dir(settings))
    visited: set[str] = set()
    found: set[str] = set()
    for name in TEMPLATE_FILES:
        found |= _undeclared(environment, f"{job_type}/{name}", visited)
    return found


def required_variables(job_type: str, *, settings: Settings | None = None) -> set[str]:
    """The variables the type's three templates need that have no default."""
    return template_variables(job_type, settings=settings) - defaults_for(job_type).keys()


def check_variables(
    job_type: str, available: Iterable[str], *, settings: Settings | None = None, generates_certificates: bool = False
) -> None:
    """Raise `UnusableInput` naming a template variable that no CSV column or template data provides.

    `available` is the CSV's columns plus the template data's keys; the fields build_context
    always sets are added here, and the certificate fields when the job generates certificates.
    """
    provided = set(available) | ALWAYS_PROVIDED
    if generates_certificates:
        provided |= CERTIFICATE_VARIABLES
    missing = sorted(required_variables(job_type, settings=settings) - provided)
    if len(missing) == 1:
        raise UnusableInput(
            f"template variable '{missing[0]}' of {job_type} is not provided by any CSV column or template data."
        )
    if missing:
        names = ", ".join(f"'{name}'" for name in missing)
        raise UnusableInput(
            f"template variables {names} of {job_type} are not provided by any CSV column or template data."
        )


def build_context(
    *, row_fields: Mapping[str, Any], variables: Mapping[str, Any], template_data: Mapping[str, Any], settings: Settings
) -> dict[str, Any]:
    """One recipient's template context: settings, then template data, then the row's own values.

    A row value wins unless it is empty, so an empty CSV cell falls back to the job's template data.
    """
    context: dict[str, Any] = {"site_name": settings.site_name, "login_url": settings.login_url}
    context.update(template_data)
    for source in (variables, row_fields):
        for name, value in source.items():
            if value is not None and value != "":
                context[name] = value
            else:
                context.setdefault(name, value)
    if not context.get("fullname"):
        names = (context.get("firstname"), context.get("lastname"))
        context["fullname"] = " ".join(str(part).strip() for part in names if part) or None
    return context


def render(job_type: str, context: Mapping[str, Any], *, settings: Settings | None = None) -> RenderedMessage:
    """Render subject, text and HTML for one recipient; raises `RenderError` naming what went wrong."""
    _check_type(job_type)
    subject_template, text_template, html_template = _compiled(job_type, _template_dir(settings))
    values = {**COMMON_DEFAULTS, **OPTIONAL_DEFAULTS.get(job_type, {}), **context}
    try:
        subject = subject_template.render(values)
        text = text_template.render(values)
        html = html_template.render(values)
    except UndefinedError as error:
        raise RenderError(f"cannot render the {job_type} templates: {error.message}.") from None
    except SecurityError as error:
        raise RenderError(f"a {job_type} template tried an unsafe operation: {error}.") from None
    except TemplateError as error:
        raise RenderError(f"cannot render the {job_type} templates: {error}.") from None
    # One line, so no value can break out of the Subject header.
    return RenderedMessage(subject=" ".join(subject.split()), text=text, html=html)


def render_recipient(
    *, job_type: str, fields: dict, variables: dict, template_data: dict, settings: Settings
) -> tuple[dict, RenderedMessage]:
    """The template context and the rendered message for one recipient (sending and preview share it)."""
    context = build_context(
        row_fields=fields, variables=variables or {}, template_data=template_data or {}, settings=settings
    )
    return context, render(job_type, context, settings=settings)
