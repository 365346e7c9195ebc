"""Template validation: every problem found is reported at once, each as
"element 3: unknown placeholder 'foo'", so a template author fixes them in one go.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from certificates.errors import TemplateError
from certificates.faces import BUNDLED_FAMILIES
from certificates.template import (
    BUILTIN_FIELDS,
    PAGE_SIZES,
    Color,
    Element,
    ImageElement,
    LineElement,
    QRElement,
    RectElement,
    Template,
    Text,
    TextElement,
)

_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
_BRACES = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
_COLOR = re.compile(r"^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})$")


def compile_text(source: str, known: set[str] | frozenset[str], where: str, errors: list[str]) -> Text:
    parts: list[tuple[bool, str]] = []
    position = 0
    for match in _BRACES.finditer(source):
        if match.start() > position:
            parts.append((False, source[position : match.start()]))
        token = match.group(0)
        if token in ("{{", "}}"):
            parts.append((False, token[0]))
        elif token in ("{", "}"):
            errors.append(f"{where}: unbalanced '{token}' in {source!r} (write {token * 2} for a literal brace)")
        else:
            name = match.group(1).strip()
            if not _NAME.match(name):
                errors.append(f"{where}: bad placeholder '{{{match.group(1)}}}' (names are lower_case_words)")
            elif name not in known:
                errors.append(f"{where}: unknown placeholder '{name}' (declare custom ones under [fields])")
            else:
                parts.append((True, name))
        position = match.end()
    if position < len(source):
        parts.append((False, source[position:]))
    return Text(source, tuple(parts))


class _Reader:
    """Typed access to one table of the template, collecting errors instead of raising."""

    def __init__(self, table: Any, where: str, errors: list[str]):
        self.where, self.errors = where, errors
        if not isinstance(table, dict):
            errors.append(f"{where}: expected a table, got {type(table).__name__}")
            table = {}
        self.table = table
        self.used: set[str] = set()

    def get(self, key: str, kind: type | tuple, default: Any = None, *, required: bool = False) -> Any:
        self.used.add(key)
        if key not in self.table:
            if required:
                self.errors.append(f"{self.where}: '{key}' is required")
            return default
        value = self.table[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            expected = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            self.errors.append(f"{self.where}: '{key}' must be a {expected}, got {value!r}")
            return default
        return value

    def number(self, key: str, default: float | None = None, *, required: bool = False, minimum: float = 0.0) -> float:
        value = self.get(key, float, default, required=required)
        if value is not None and value < minimum:
            self.errors.append(f"{self.where}: '{key}' must be at least {minimum:g}, got {value:g}")
            return default if default is not None else minimum
        return value if value is not None else 0.0

    def color(self, key: str, default: Color | None) -> Color | None:
        value = self.get(key, (str, list), None)
        if value is None:
            return default
        return parse_color(value, f"{self.where}: '{key}'", self.errors) or default

    def finish(self) -> None:
        for key in sorted(set(self.table) - self.used):
            self.errors.append(f"{self.where}: unknown key '{key}'")


def parse_color(value: Any, where: str, errors: list[str]) -> Color | None:
    if isinstance(value, str) and _COLOR.match(value):
        digits = value[1:]
        if len(digits) == 3:
            digits = "".join(ch * 2 for ch in digits)
        return (int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16))
    if isinstance(value, list) and len(value) == 3 and all(isinstance(v, int) and 0 <= v <= 255 for v in value):
        return (value[0], value[1], value[2])
    errors.append(f"{where} must be a colour like '#1f3a5f' or [31, 58, 95], got {value!r}")
    return None


def _resolve_file(value: str, base: Path | None, where: str, errors: list[str]) -> Path | None:
    path = Path(value).expanduser()
    if not path.is_absolute() and base is not None:
        path = base / path
    if not path.is_file():
        errors.append(f"{where}: file '{value}' not found" + (f" (looked in {base})" if base else ""))
        return None
    return path


def _page(reader: _Reader) -> tuple[float, float]:
    size = reader.get("size", (str, list), "A4")
    orientation = reader.get("orientation", str, "landscape")
    if isinstance(size, str):
        if size.upper() not in PAGE_SIZES:
            reader.errors.append(f"page: size '{size}' is not one of {', '.join(PAGE_SIZES)} (or [width, height] in mm)")
            size = "A4"
        width, height = PAGE_SIZES[size.upper()]
    elif len(size) == 2 and all(isinstance(v, (int, float)) and 20 <= v <= 2000 for v in size):
        width, height = sorted(float(v) for v in size)
    else:
        reader.errors.append(f"page: size must be a name or [width, height] in mm (20 to 2000), got {size!r}")
        width, height = PAGE_SIZES["A4"]
    if orientation not in ("landscape", "portrait"):
        reader.errors.append(f"page: orientation '{orientation}' is not landscape or portrait")
    return (height, width) if orientation == "landscape" else (width, height)


def _text_element(r: _Reader, number: int, known: set[str], page_w: float, base: Path | None) -> TextElement:
    where = r.where
    text = compile_text(r.get("text", str, "", required=True), known, where, r.errors)
    size = r.number("size", 12.0, minimum=1.0)
    x = r.number("x", 0.0)
    w = r.number("w", max(page_w - 2 * x, 1.0), minimum=1.0)
    align = r.get("align", str, "C").upper()[:1]
    if align not in ("L", "C", "R"):
        r.errors.append(f"{where}: align must be left, center or right")
        align = "C"
    font = r.get("font", str, "sans")
    style = "".join(sorted(r.get("style", str, "").upper()))
    if any(ch not in "BI" for ch in style):
        r.errors.append(f"{where}: style must be '', 'B', 'I' or 'BI', got {style!r}")
        style = ""
    if font not in BUNDLED_FAMILIES:
        if font.lower().endswith((".ttf", ".otf", ".ttc")):
            resolved = _resolve_file(font, base, f"{where}: font", r.errors)
            font = str(resolved) if resolved else "sans"
        else:
            r.errors.append(f"{where}: font '{font}' is not one of {', '.join(sorted(BUNDLED_FAMILIES))} or a .ttf file")
            font = "sans"
    return TextElement(
        number=number, text=text, x=x, y=r.number("y", required=True), w=w,
        h=r.number("h", size * 0.3528 * 1.35, minimum=0.1), align=align, font=font, style=style, size=size,
        color=r.color("color", (34, 34, 34)), min_size=r.number("min_size", max(6.0, size * 0.5), minimum=1.0),
        upper=bool(r.get("uppercase", bool, False)),
        spacing=r.get("letter_spacing", float, 0.0),
    )


def _element(table: Any, number: int, known: set[str], page_w: float, base: Path | None, errors: list[str]) -> Element | None:
    r = _Reader(table, f"element {number}", errors)
    kind = r.get("type", str, "text")
    element: Element | None = None
    if kind == "text":
        element = _text_element(r, number, known, page_w, base)
    elif kind == "line":
        element = LineElement(number, r.number("x1", required=True), r.number("y1", required=True),
                              r.number("x2", required=True), r.number("y2", required=True),
                              r.number("width", 0.3), r.color("color", (34, 34, 34)))
    elif kind == "rect":
        element = RectElement(number, r.number("x", required=True), r.number("y", required=True),
                              r.number("w", required=True), r.number("h", required=True),
                              r.number("width", 0.3), r.color("color", None), r.color("fill", None))
    elif kind == "image":
        path = _resolve_file(r.get("image", str, "", required=True) or ".", base, r.where, errors)
        element = ImageElement(number, path or Path(), r.number("x", required=True), r.number("y", required=True),
                               r.number("w", 0.0), r.number("h", 0.0))
    elif kind == "qr":
        data = compile_text(r.get("data", str, "{verify_url}"), known, r.where, errors)
        element = QRElement(number, data, r.number("x", required=True), r.number("y", required=True),
                            r.number("size", 30.0, minimum=10.0), r.color("color", (0, 0, 0)) or (0, 0, 0))
    else:
        errors.append(f"element {number}: type '{kind}' is not one of text, line, rect, image, qr")
        return None
    r.finish()
    return element


def validate_template(data: dict, *, base_dir: Path | None = None, name: str = "template",
                      source: Path | None = None) -> Template:
    """Check a parsed template and build it; raises TemplateError listing every problem."""
    errors: list[str] = []
    top = _Reader(data, "template", errors)
    name = top.get("name", str, name)
    fields: dict[str, str | None] = {}
    for field_name, spec in (top.get("fields", dict, {}) or {}).items():
        if not _NAME.match(field_name):
            errors.append(f"fields: '{field_name}' is not a valid name (lower_case_words)")
        elif field_name in BUILTIN_FIELDS:
            errors.append(f"fields: '{field_name}' is built in; remove it from [fields]")
        elif isinstance(spec, str):
            fields[field_name] = spec
        elif isinstance(spec, dict) and set(spec) <= {"default", "label"}:
            default = spec.get("default")
            fields[field_name] = None if default is None else str(default)
        else:
            errors.append(f"fields: '{field_name}' must be a default string or {{ default = \"...\" }}")
    known = set(BUILTIN_FIELDS) | set(fields)
    page = _Reader(top.get("page", dict, {}), "page", errors)
    width, height = _page(page)
    background = page.color("background", None)
    image = page.get("background_image", str, None)
    background_image = _resolve_file(image, base_dir, "page: background_image", errors) if image else None
    page.finish()

    elements: list[Element] = []
    for index, table in enumerate(top.get("border", list, []) or [], start=1):
        r = _Reader(table, f"border {index}", errors)
        inset, line = r.number("inset", 8.0), r.number("width", 1.0, minimum=0.05)
        elements.append(RectElement(0, inset, inset, width - 2 * inset, height - 2 * inset, line,
                                    r.color("color", (31, 58, 95)), None))
        r.finish()
    for number, table in enumerate(top.get("element", list, []) or [], start=1):
        element = _element(table, number, known, width, base_dir, errors)
        if element is not None:
            elements.append(element)
    date_format = top.get("date_format", str, "%d %B %Y")
    template = Template(name=name, source=source, width=width, height=height, background=background,
                        background_image=background_image, elements=tuple(elements), fields=fields,
                        date_format=date_format, description=top.get("description", str, ""))
    top.finish()
    if not any(isinstance(e, TextElement) for e in elements):
        errors.append("template: it has no text element; a certificate needs at least the name")
    if errors:
        raise TemplateError(f"certificate template '{name}' is not usable: " + "; ".join(errors))
    return template
