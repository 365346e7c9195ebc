"""Render certificates from a Template: one complete, self-contained PDF per recipient.

A `Renderer` is built once per (template, fonts) in a worker process: font faces are parsed
and images decoded then, and each `render()` only lays out text and subsets the glyphs used.
"""

from __future__ import annotations

import threading
import unicodedata
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Iterable

from fpdf import FPDF
from fpdf.bidi import BidiParagraph
from fpdf.image_datastructures import RasterImageInfo
from fpdf.image_parsing import preload_image

from certificates.errors import CertificateError, TemplateError
from certificates.faces import FontFace, describe_chars, family_file, load_face, normalize_text
from certificates.pdf import output_pdf, use_face
from certificates.qr import qr_ops
from certificates.template import (
    DEFAULTED_FIELDS,
    OPTIONAL_FIELDS,
    SYSTEM_FIELDS,
    ImageElement,
    LineElement,
    QRElement,
    RectElement,
    Template,
    TextElement,
)

_PT = 72 / 25.4  # points per mm
# Scripts whose letters change shape with their neighbours (joining, conjuncts): drawn one glyph
# per character they would be wrong, so they are refused per recipient instead.
_SHAPED = ((0x0600, 0x08FF), (0x0900, 0x0DFF), (0x0F00, 0x109F), (0x1780, 0x18AF), (0xA8E0, 0xA8FF),
           (0xFB50, 0xFDFF), (0xFE70, 0xFEFF))


def _needs_shaping(text: str) -> list[str]:
    return [c for c in dict.fromkeys(text) if any(lo <= ord(c) <= hi for lo, hi in _SHAPED)]


def _visual_order(text: str) -> str:
    """Right-to-left runs (Hebrew) reversed into drawing order by the Unicode bidi algorithm."""
    if not any(unicodedata.bidirectional(c) in ("R", "AL") for c in text):
        return text
    return BidiParagraph(text).get_reordered_string()
_NAME_FIELDS = {"fullname", "firstname", "lastname"}


def format_date(value, fmt: str) -> str:
    """A date for print: ISO strings, dates and unix timestamps are formatted; anything else as given."""
    if value is None or value == "":
        return ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = datetime.fromtimestamp(value, tz=timezone.utc)
    if isinstance(value, str):
        text = value.strip()
        try:
            value = datetime.fromisoformat(text.replace("Z", "+00:00")) if "T" in text or " " in text else date.fromisoformat(text)
        except ValueError:
            if text.isdigit() and len(text) >= 9:
                value = datetime.fromtimestamp(int(text), tz=timezone.utc)
            else:
                return text
    return value.strftime(fmt)


def prepare_values(template: Template, data: dict, *, code: str, verify_url: str,
                   issued_at: datetime, expires_at: datetime | None = None) -> dict[str, str]:
    """Every placeholder's text for one certificate; raises CertificateError for a missing value."""
    # NFC, and any run of whitespace (tabs, newlines from a CSV cell) as one space.
    values = {key: " ".join(normalize_text(str(value)).split()) for key, value in data.items()
              if value is not None and not isinstance(value, (dict, list))}
    if not values.get("fullname"):
        values["fullname"] = " ".join(p for p in (values.get("firstname", ""), values.get("lastname", "")) if p)
    for name, default in template.fields.items():
        if not values.get(name) and default is not None:
            values[name] = default
    values["completion_date"] = format_date(values.get("completion_date") or issued_at.date(), template.date_format)
    values["issued_date"] = format_date(issued_at, template.date_format)
    values["expiry_date"] = format_date(expires_at, template.date_format) if expires_at else ""
    values["code"] = code
    values["verify_url"] = verify_url
    missing = sorted(
        name for name in template.placeholders
        if not values.get(name) and name not in OPTIONAL_FIELDS | SYSTEM_FIELDS | DEFAULTED_FIELDS
    )
    if missing:
        label = "a name" if set(missing) & _NAME_FIELDS else ", ".join(missing)
        raise CertificateError(f"the certificate needs {label} and this recipient has none ({', '.join(missing)} empty)")
    return values


class Renderer:
    """Renders one template; build it once per process (see `get_renderer`)."""

    def __init__(self, template: Template, *, fallback_fonts: Iterable[str | Path] = ()):
        self.template = template
        self.faces: dict[tuple[str, str], FontFace] = {}
        for family, style in template.fonts:
            path = family_file(family, style) if not family.lower().endswith((".ttf", ".otf", ".ttc")) else Path(family)
            self.faces[(family, style)] = load_face(path)
        # The bundled Sans has the widest coverage; configured fallbacks come after it.
        self.fallbacks: list[FontFace] = [load_face(family_file("sans"))]
        for path in fallback_fonts:
            if path:
                self.fallbacks.append(load_face(path))
        self._images = FPDF().image_cache
        for path in self._image_paths():
            try:
                preload_image(self._images, path)
            except Exception as error:  # noqa: BLE001 - PIL raises many kinds
                raise TemplateError(f"image {path} cannot be used in a certificate: {error}") from error

    def _image_paths(self) -> list[Path]:
        paths = [e.path for e in self.template.elements if isinstance(e, ImageElement)]
        if self.template.background_image:
            paths.insert(0, self.template.background_image)
        return paths

    # Text and fonts -----------------------------------------------------------------------

    def _choose_fonts(self, element: TextElement, text: str, values: dict[str, str]) -> list[FontFace]:
        """The fallback faces `text` needs beyond the element's own; CertificateError if none can."""
        shaped = _needs_shaping(text)
        if shaped:
            script = unicodedata.name(shaped[0], "?").split()[0].title()
            raise CertificateError(f"{self._culprit(element, shaped, values)} is in {script} script, which needs "
                                   "text shaping that certificates cannot do yet")
        primary = self.faces[(element.font, element.style)]
        missing = primary.missing(text)
        if not missing:
            return []
        needed: list[FontFace] = []
        orphans: list[str] = []
        for char in missing:
            face = next((f for f in self.fallbacks if f is not primary and f.covers(char)), None)
            if face is None:
                orphans.append(char)
            elif face not in needed:
                needed.append(face)
        if orphans:
            raise CertificateError(f"no font can draw {describe_chars(orphans)} in {self._culprit(element, orphans, values)}")
        return needed

    @staticmethod
    def _culprit(element: TextElement, chars: list[str], values: dict[str, str]) -> str:
        for name in sorted(element.text.fields, key=lambda n: n not in _NAME_FIELDS):
            value = values.get(name, "")
            if any(char in value for char in chars):
                label = "name" if name in _NAME_FIELDS else name
                return f"{label} {value!r}"
        return f"template text {element.text.source!r}"

    def _width_mm(self, text: str, faces: list[FontFace], size: float, spacing: float) -> float:
        total = 0
        for char in text:
            code = ord(char)
            for face in faces:
                if code in face.glyph_ids:
                    total += face.cw[code]
                    break
            else:
                total += faces[0].default_width
        return (total * size / 1000 + spacing * max(len(text) - 1, 0)) / _PT

    def check(self, values: dict[str, str]) -> None:
        """Raise CertificateError if some text of this certificate cannot be drawn."""
        for element in self.template.elements:
            if isinstance(element, TextElement) and not self._skipped(element, values):
                self._choose_fonts(element, self._text(element, values), values)

    @staticmethod
    def _skipped(element: TextElement, values: dict[str, str]) -> bool:
        return any(not values.get(name) for name in element.text.fields & OPTIONAL_FIELDS)

    @staticmethod
    def _text(element: TextElement, values: dict[str, str]) -> str:
        text = element.text.render(values)
        return text.upper() if element.upper else text

    # Drawing -----------------------------------------------------------------------------

    def render(self, values: dict[str, str], *, title: str | None = None,
               created_at: datetime | None = None) -> bytes:
        """The PDF for one certificate. `values` comes from `prepare_values`."""
        template = self.template
        orientation = "L" if template.width > template.height else "P"
        pdf = FPDF(orientation=orientation, unit="mm", format=(min(template.width, template.height),
                                                               max(template.width, template.height)))
        pdf.set_auto_page_break(False)
        pdf.set_margin(0)
        pdf.set_creator("mani")
        pdf.set_title(title or f"Certificate {values.get('code', '')}".strip())
        if created_at is not None:
            pdf.set_creation_date(created_at)
        for (family, style), face in self.faces.items():
            use_face(pdf, family, style, face)
        for key, info in self._images.images.items():
            copy = RasterImageInfo(info)
            copy["usages"] = 0
            pdf.image_cache.images[key] = copy
        pdf.image_cache.icc_profiles.update(self._images.icc_profiles)
        pdf.add_page()

        if template.background:
            pdf.set_fill_color(*template.background)
            pdf.rect(0, 0, template.width, template.height, style="F")
        if template.background_image:
            pdf.image(template.background_image, 0, 0, template.width, template.height)
        for element in template.elements:
            if isinstance(element, TextElement):
                self._draw_text(pdf, element, values)
            elif isinstance(element, RectElement):
                style = ("D" if element.color else "") + ("F" if element.fill else "")
                if not style:
                    continue
                if element.color:
                    pdf.set_draw_color(*element.color)
                    pdf.set_line_width(element.width)
                if element.fill:
                    pdf.set_fill_color(*element.fill)
                pdf.rect(element.x, element.y, element.w, element.h, style=style)
            elif isinstance(element, LineElement):
                pdf.set_draw_color(*element.color)
                pdf.set_line_width(element.width)
                pdf.line(element.x1, element.y1, element.x2, element.y2)
            elif isinstance(element, ImageElement):
                pdf.image(element.path, element.x, element.y, element.w, element.h)
            elif isinstance(element, QRElement):
                data = element.data.render(values)
                pdf._out(qr_ops(data, x=element.x, y=element.y, size=element.size,  # noqa: SLF001 - raw path ops
                                page_height=template.height, k=pdf.k, color=element.color))
        return output_pdf(pdf)

    def _draw_text(self, pdf: FPDF, element: TextElement, values: dict[str, str]) -> None:
        if self._skipped(element, values):
            return
        text = self._text(element, values)
        if not text.strip():
            return
        primary = self.faces[(element.font, element.style)]
        faces = [primary, *self._choose_fonts(element, text, values)]
        size, spacing = element.size, element.spacing
        width = self._width_mm(text, faces, size, spacing)
        if width > element.w:  # shrink to fit, down to min_size
            size = max(element.min_size, size * element.w / width * 0.995)
            width = self._width_mm(text, faces, size, spacing)
        lines = [(text, width)] if width <= element.w else self._wrap(text, faces, size, spacing, element.w)
        lines = [(_visual_order(line), line_width) for line, line_width in lines]
        pdf.set_text_color(*element.color)
        pdf.set_char_spacing(spacing)
        line_height = size / _PT * 1.25
        # One line sits centred in the element's box like fpdf2's cell(); wrapped lines flow down from y.
        baseline = element.y + (element.h / 2 if len(lines) == 1 else line_height / 2) + 0.3 * size / _PT
        for line, line_width in lines:
            if element.align == "C":
                x = element.x + (element.w - line_width) / 2
            elif element.align == "R":
                x = element.x + element.w - line_width
            else:
                x = element.x
            for face, run in self._runs(line, faces):
                family, style = (element.font, element.style) if face is primary else self._register(pdf, face)
                pdf.set_font(family, style, size)
                pdf.text(x, baseline, run)
                x += self._width_mm(run, [face], size, spacing) + spacing / _PT
            baseline += line_height
        if spacing:
            pdf.set_char_spacing(0)

    def _register(self, pdf: FPDF, face: FontFace) -> tuple[str, str]:
        """The (family, style) a fallback face is set with; one the template uses keeps its name."""
        for (family, style), own in self.faces.items():
            if own is face:
                return family, style
        name = f"fallback{self.fallbacks.index(face)}"
        use_face(pdf, name, "", face)
        return name, ""

    @staticmethod
    def _runs(text: str, faces: list[FontFace]) -> list[tuple[FontFace, str]]:
        """Split text into runs drawn by one face each (the first face that has the glyph)."""
        runs: list[tuple[FontFace, str]] = []
        for char in text:
            code = ord(char)
            face = next((f for f in faces if code in f.glyph_ids), faces[0])
            if runs and (runs[-1][0] is face or char == " "):
                runs[-1] = (runs[-1][0], runs[-1][1] + char)
            else:
                runs.append((face, char))
        return runs

    def _wrap(self, text: str, faces: list[FontFace], size: float, spacing: float, limit: float) -> list[tuple[str, float]]:
        """Greedy word wrap; a single word wider than the box gets a line of its own."""
        lines: list[tuple[str, float]] = []
        current = ""
        for word in text.split():
            candidate = f"{current} {word}" if current else word
            if current and self._width_mm(candidate, faces, size, spacing) > limit:
                lines.append((current, self._width_mm(current, faces, size, spacing)))
                current = word
            else:
                current = candidate
        if current:
            lines.append((current, self._width_mm(current, faces, size, spacing)))
        return lines


_lock = threading.Lock()
_renderers: dict[tuple, Renderer] = {}


def get_renderer(template: Template, *, fallback_fonts: Iterable[str | Path] = ()) -> Renderer:
    """The process-wide Renderer for a template and fallback font list."""
    fallbacks = tuple(str(p) for p in fallback_fonts if p)
    key = (id(template), template.source, fallbacks)
    renderer = _renderers.get(key)
    if renderer is None or renderer.template is not template:  # an id can be reused after GC
        with _lock:
            renderer = _renderers.get(key)
            if renderer is None or renderer.template is not template:
                renderer = Renderer(template, fallback_fonts=fallbacks)
                _renderers[key] = renderer
    return renderer
