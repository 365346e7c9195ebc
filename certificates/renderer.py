"""Render certificates from a Template: one complete, self-contained PDF per recipient.

A `Renderer` is built once per (template, fonts) in a process: font faces are parsed then.
`render_batch` draws many certificates as one fpdf2 document, with HarfBuzz shaping and a
fallback font per script run: page 1 holds what is the same for all of them (the template's
fixed layer, and texts such as the course that came out identical), each further page one
recipient's own text and QR code. The fonts are subset once for the whole batch; then
`certificates.assemble` writes each recipient's page, with the fixed layer under it, as a PDF
of its own.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from fpdf import FPDF

from certificates.assemble import FIXED_LAYER_OPERATORS, Metadata, split_batch
from certificates.errors import CertificateError
from certificates.faces import FontFace, family_file, load_face
from certificates.fpdf_internals import output_pdf, raw_operators, use_face
from certificates.qr import qr_ops
from certificates.scripts import Coverage, FontChain, covered, missing_message
from certificates.template import (
    OPTIONAL_FIELDS,
    ImageElement,
    LineElement,
    QRElement,
    RectElement,
    Template,
    TextElement,
)
from certificates.values import NAME_FIELDS, format_date, prepare_values  # noqa: F401 - re-exported

_PT = 72 / 25.4  # points per mm
_LINE_HEIGHT = 1.25  # of the font size, for wrapped lines
# Outside plain Latin, Greek and Cyrillic letters, punctuation and symbols.
_NEEDS_SHAPING = re.compile("[\u0300-\u036F\u0483-\u0489\u0590-\u1DFF\u20D0-\u20FF\u2E80-\U0010FFFF]")
_RTL = re.compile("[\u0590-\u08FF\uFB1D-\uFDFF\uFE70-\uFEFF\U00010800-\U00010FFF\U0001E800-\U0001EFFF]")
# A batch document's fonts carry the glyphs of all its certificates; past this many distinct
# characters (CJK names) the next certificates start a new document, so no PDF carries more
# than a few hundred glyphs it does not show.
MAX_CHARS_PER_DOCUMENT = 350


@dataclass(frozen=True)
class RenderItem:
    """One certificate to draw: its placeholder values (from `prepare_values`) and PDF metadata."""

    values: dict[str, str]
    title: str | None = None
    created_at: datetime | None = None


# The text of one element for one certificate, ready to draw (None: the element is left out).
Plan = dict[int, Coverage | None]


class Renderer:
    """Renders one template; build it once per process (see `get_renderer`)."""

    def __init__(self, template: Template, *, fallback_fonts: Iterable[str | Path] = ()):
        self.template = template
        self.faces: dict[tuple[str, str], FontFace] = {}
        self.families: dict[tuple[str, str], str] = {}
        for index, (family, style) in enumerate(sorted(template.fonts)):
            path = Path(family) if family.lower().endswith((".ttf", ".otf", ".ttc")) else family_file(family, style)
            self.faces[(family, style)] = load_face(path)
            self.families[(family, style)] = f"t{index}"
        self.chain = FontChain(fallback_fonts)
        # Weights of one script share a family, so fpdf2 can match the element's emphasis.
        self._chain_families = {id(cf): "fb" + cf.key.replace("-", "") for cf in self.chain.faces}
        self.texts = [e for e in template.elements if isinstance(e, TextElement)]
        self._coverage: dict[tuple[int, str], Coverage] = {}  # fixed texts ("CERTIFICATE") checked once

    # Text and fonts -----------------------------------------------------------------------

    def plan(self, values: dict[str, str]) -> Plan:
        """Each text element's text and fallback faces; CertificateError if some text cannot be drawn."""
        plan: Plan = {}
        for index, element in enumerate(self.texts):
            if any(not values.get(name) for name in element.text.fields & OPTIONAL_FIELDS):
                plan[index] = None
                continue
            text = element.text.render(values)
            if element.upper:
                text = text.upper()
            coverage = self._coverage.get((index, text)) if not element.text.fields else None
            if coverage is None:
                coverage = covered(text, self.faces[(element.font, element.style)], self.chain,
                                   bold="B" in element.style)
                if not element.text.fields:
                    self._coverage[(index, text)] = coverage
            if coverage.missing:
                raise CertificateError(missing_message(coverage.missing, self._culprit(element, coverage.missing, values)))
            plan[index] = coverage if coverage.text.strip() else None
        return plan

    def check(self, values: dict[str, str]) -> None:
        """Raise CertificateError if some text of this certificate cannot be drawn."""
        self.plan(values)

    @staticmethod
    def _culprit(element: TextElement, chars: Sequence[str], values: dict[str, str]) -> str:
        for name in sorted(element.text.fields, key=lambda n: n not in NAME_FIELDS):
            value = values.get(name, "")
            if any(char in value for char in chars):
                label = "name" if name in NAME_FIELDS else name
                return f"{label} {value!r}"
        return f"template text {element.text.source!r}"

    # Drawing -----------------------------------------------------------------------------

    def render(self, values: dict[str, str], *, title: str | None = None,
               created_at: datetime | None = None) -> bytes:
        """The PDF for one certificate. `values` comes from `prepare_values`."""
        [result] = self.render_batch([RenderItem(values, title, created_at)])
        if isinstance(result, CertificateError):
            raise result
        return result

    def render_batch(self, items: Sequence[RenderItem]) -> list[bytes | CertificateError]:
        """One PDF per item, in order; an item whose text cannot be drawn gets its CertificateError."""
        results: list[bytes | CertificateError | None] = [None] * len(items)
        planned: list[tuple[int, RenderItem, Plan]] = []
        for position, item in enumerate(items):
            try:
                planned.append((position, item, self.plan(item.values)))
            except CertificateError as error:
                results[position] = error
        for group in _groups(planned):
            for (position, _, _), pdf in zip(group, self._render_group(group)):
                results[position] = pdf
        return results  # type: ignore[return-value] - every slot is filled

    def _render_group(self, group: list[tuple[int, RenderItem, Plan]]) -> list[bytes]:
        template = self.template
        pdf = FPDF(orientation="L" if template.width > template.height else "P", unit="mm",
                   format=(min(template.width, template.height), max(template.width, template.height)))
        pdf.set_auto_page_break(False)
        pdf.set_margin(0)
        pdf.set_text_shaping(True)
        for (family, style), face in self.faces.items():
            use_face(pdf, self.families[(family, style)], style, face)
        fallbacks = self._fallbacks(pdf, [plan for _, _, plan in group])
        if fallbacks:
            pdf.set_fallback_fonts(fallbacks, exact_match=False)

        # Page 1: what every certificate of the group shares.
        shared = {index for index in range(len(self.texts))
                  if len({_text_of(plan[index]) for _, _, plan in group}) == 1}
        first_plan = group[0][2]
        pdf.add_page()
        if template.background:
            pdf.set_fill_color(*template.background)
            pdf.rect(0, 0, template.width, template.height, style="F")
        if template.background_image:
            pdf.image(template.background_image, 0, 0, template.width, template.height)
        text_index = 0
        for element in template.elements:
            if isinstance(element, TextElement):
                if text_index in shared and first_plan[text_index] is not None:
                    self._draw_text(pdf, element, first_plan[text_index])
                text_index += 1
            elif isinstance(element, RectElement):
                _draw_rect(pdf, element)
            elif isinstance(element, LineElement):
                pdf.set_draw_color(*element.color)
                pdf.set_line_width(element.width)
                pdf.line(element.x1, element.y1, element.x2, element.y2)
            elif isinstance(element, ImageElement):
                pdf.image(element.path, element.x, element.y, element.w, element.h)

        # One page per certificate: its own texts and its QR code.
        metadata = []
        for _, item, plan in group:
            pdf.add_page()
            raw_operators(pdf, FIXED_LAYER_OPERATORS)
            text_index = 0
            for element in template.elements:
                if isinstance(element, TextElement):
                    if text_index not in shared and plan[text_index] is not None:
                        self._draw_text(pdf, element, plan[text_index])
                    text_index += 1
                elif isinstance(element, QRElement):
                    raw_operators(pdf, qr_ops(element.data.render(item.values), x=element.x, y=element.y,
                                              size=element.size, page_height=template.height, k=pdf.k,
                                              color=element.color))
            code = item.values.get("code", "")
            metadata.append(Metadata(item.title or f"Certificate {code}".strip(), item.created_at))
        return split_batch(output_pdf(pdf), metadata)

    def _fallbacks(self, pdf: FPDF, plans: list[Plan]) -> list[str]:
        """Register the chain faces these certificates need; their families, in chain order."""
        needed: set[int] = set()
        for plan in plans:
            for coverage in plan.values():
                if coverage is not None:
                    needed.update(id(chain_face) for chain_face in coverage.faces)
        families: list[str] = []
        for chain_face in self.chain.faces:
            if id(chain_face) in needed:
                family = self._chain_families[id(chain_face)]
                use_face(pdf, family, "B" if chain_face.bold else "", chain_face.face)
                families.append(family)
        return list(dict.fromkeys(families))

    def _draw_text(self, pdf: FPDF, element: TextElement, coverage: Coverage) -> None:
        text = coverage.text
        family = self.families[(element.font, element.style)]
        size = element.size
        # HarfBuzz for every text that needs it (joining, conjuncts, marks, right to left); plain
        # Latin, Greek and Cyrillic map one character to one glyph and skip fpdf2's bidi pass.
        shaped = bool(coverage.faces) or bool(_NEEDS_SHAPING.search(text))
        pdf.set_text_shaping(shaped)
        pdf.set_font(family, element.style, size)
        pdf.set_text_color(*element.color)
        pdf.set_char_spacing(element.spacing)
        estimate = self._estimate_mm(text, element, coverage)
        if not shaped and estimate <= element.w:
            # One font, one glyph per character: the advances are the exact width, and fpdf2's
            # text() places the line at a sixth of cell()'s cost (same baseline as cell()).
            if element.align == "C":
                x = element.x + (element.w - estimate) / 2
            elif element.align == "R":
                x = element.x + element.w - estimate
            else:
                x = element.x
            pdf.text(x, element.y + element.h / 2 + 0.3 * size / _PT, text)
            if element.spacing:
                pdf.set_char_spacing(0)
            return
        # Measuring with fpdf2 shapes the text a second time: only when it may not fit.
        width = estimate if estimate < element.w * 0.85 else pdf.get_string_width(text)
        if width > element.w:  # shrink to fit one line, down to min_size
            size = max(element.min_size, size * element.w / width * 0.995)
            pdf.set_font_size(size)
            width = pdf.get_string_width(text)
        if width <= element.w:
            pdf.set_xy(element.x, element.y)
            _cell(pdf, element.w, element.h, text, element.align)
        else:  # wrap, as large as the box allows, never below min_size; never cut
            lines, size = self._wrap_to_box(pdf, element, text)
            line_height = size / _PT * _LINE_HEIGHT
            top = element.y + max(0.0, (element.h - line_height * len(lines)) / 2)
            for number, line in enumerate(lines):
                pdf.set_xy(element.x, top + number * line_height)
                _cell(pdf, element.w, line_height, line, element.align)
        if element.spacing:
            pdf.set_char_spacing(0)

    def _estimate_mm(self, text: str, element: TextElement, coverage: Coverage) -> float:
        """The unshaped width: advances summed (shaping and kerning change it by a few per cent)."""
        faces = [self.faces[(element.font, element.style)], *(chain_face.face for chain_face in coverage.faces)]
        total = 0
        for char in text:
            code = ord(char)
            for face in faces:
                if code in face.glyph_ids:
                    total += face.cw[code]
                    break
        return (total * element.size / 1000 + element.spacing * max(len(text) - 1, 0)) / _PT

    def _wrap_to_box(self, pdf: FPDF, element: TextElement, text: str) -> tuple[list[str], float]:
        count = 2
        while True:
            size = max(element.min_size, min(element.size, element.h * _PT / (count * _LINE_HEIGHT)))
            pdf.set_font_size(size)
            lines = _wrap(pdf, text, element.w)
            if len(lines) <= count or size == element.min_size:
                return lines, size
            count += 1


def _cell(pdf: FPDF, width: float, height: float, text: str, align: str) -> None:
    """One line of text; copy and search give `text` back even where shaping reorders glyphs.

    A shaped Indic cluster such as "प्रि" is drawn vowel sign first, and one of its glyphs maps
    to no character, so text extraction finds a gap and reads "प्रि या". The line's own text as
    /ActualText (PDF 32000 14.9.4) fixes that. Right-to-left lines keep the glyphs' ToUnicode
    map instead: extractors (poppler) reverse an ActualText they take for visual order.
    """
    if _RTL.search(text):
        pdf.cell(width, height, text, align=align)
        return
    raw_operators(pdf, f"/Span <</ActualText <FEFF{text.encode('utf-16-be').hex().upper()}>>> BDC")
    pdf.cell(width, height, text, align=align)
    raw_operators(pdf, "EMC")


def _text_of(coverage: Coverage | None) -> str | None:
    return None if coverage is None else coverage.text


def _draw_rect(pdf: FPDF, element: RectElement) -> None:
    style = ("D" if element.color else "") + ("F" if element.fill else "")
    if not style:
        return
    if element.color:
        pdf.set_draw_color(*element.color)
        pdf.set_line_width(element.width)
    if element.fill:
        pdf.set_fill_color(*element.fill)
    pdf.rect(element.x, element.y, element.w, element.h, style=style)


def _wrap(pdf: FPDF, text: str, limit: float) -> list[str]:
    """Greedy word wrap with shaped widths; a word wider than the box is broken between characters."""
    lines: list[str] = []
    current = ""
    for word in text.split():
        candidate = f"{current} {word}" if current else word
        if pdf.get_string_width(candidate) <= limit:
            current = candidate
            continue
        if current:
            lines.append(current)
        current = word
        while pdf.get_string_width(current) > limit and len(current) > 1:
            cut = _longest_prefix(pdf, current, limit)
            lines.append(current[:cut])
            current = current[cut:]
    if current:
        lines.append(current)
    return lines


def _longest_prefix(pdf: FPDF, word: str, limit: float) -> int:
    low, high = 1, len(word) - 1
    while low < high:  # the longest prefix that fits, by bisection
        middle = (low + high + 1) // 2
        if pdf.get_string_width(word[:middle]) <= limit:
            low = middle
        else:
            high = middle - 1
    while low > 1 and unicodedata.category(word[low]) in ("Mn", "Mc", "Me"):
        low -= 1  # never split a mark from its base letter
    return max(1, low)


def _groups(planned: list[tuple[int, RenderItem, Plan]]) -> list[list[tuple[int, RenderItem, Plan]]]:
    """Consecutive certificates whose texts together use at most MAX_CHARS_PER_DOCUMENT characters."""
    groups: list[list[tuple[int, RenderItem, Plan]]] = []
    seen: set[str] = set()
    for entry in planned:
        chars = {c for coverage in entry[2].values() if coverage is not None for c in coverage.text}
        if groups and len(seen | chars) <= MAX_CHARS_PER_DOCUMENT:
            groups[-1].append(entry)
            seen |= chars
        else:
            groups.append([entry])
            seen = set(chars)
    return groups


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


__all__ = ["RenderItem", "Renderer", "format_date", "get_renderer", "prepare_values"]
