"""Every use of fpdf2 internals in mani, in one place, checked by `private_surface_problems()`.

The rest of the renderer uses fpdf2's public API (FPDF, set_text_shaping, set_fallback_fonts,
cell, get_string_width, output). Three things need more, for speed or correctness:

1. Fonts parsed once per process. `FPDF.add_font` parses the whole font file for every
   document. `CachedFont` is a `TTFFont` whose parsed tables come from a process-wide
   `FontFace`; only the per-document state (the `SubsetMap` of glyphs used) is new.
2. Fast embedding. fpdf2 subsets each font with fontTools at output, which also mutates the
   parsed font (so it could not be shared). `CertificateOutput._add_fonts` embeds the cached
   fonts with `certificates.subset` instead; other fonts keep fpdf2's own path.
3. Inherited-script characters. fpdf2 starts a new text run at every character whose Unicode
   script is "Inherited" (Arabic harakat, combining accents, ZWJ/ZWNJ), which breaks the joining
   of a vowelled Arabic name. UAX #24 says such a character belongs to the run before it; the
   patched `get_unicode_script` says so.
4. Raw content operators for the QR code (`FPDF._out`): one inline image mask.

tests/test_certificates_fpdf2_surface.py fails, naming what changed, when an fpdf2 upgrade
moves any of this; the tested versions are `TESTED_FPDF2_VERSIONS`.
"""

from __future__ import annotations

import functools
import inspect
import unicodedata
import zlib

import fpdf
import fpdf.fpdf as fpdf_module
from fpdf import FPDF
from fpdf.enums import FontDescriptorFlags, TextEmphasis
from fpdf.fonts import PDFFontDescriptor, SubsetMap, TTFFont
from fpdf.output import CIDSystemInfo, OutputProducer, PDFFont, PDFFontStream, _cid_font_widths
from fpdf.syntax import Name, PDFArray, PDFContentStream
from fpdf.unicode_script import UnicodeScript

from certificates.faces import FontFace
from certificates.subset import build_subset

TESTED_FPDF2_VERSIONS = ("2.8.9",)
# TTFFont attributes CachedFont fills (fpdf2 reads every one of them somewhere).
_TTFFONT_SLOTS = {
    "i", "type", "name", "desc", "glyph_ids", "_hbfont", "sp", "ss", "up", "ut", "cw", "ttffile", "fontkey",
    "emphasis", "scale", "subset", "cmap", "ttfont", "missing_glyphs", "biggest_size_pt", "color_font",
    "unicode_range", "palette_index", "is_compressed", "is_cff", "is_cid_keyed", "is_symbol", "cff_ros",
    "collection_font_number",
}


class CachedFont(TTFFont):
    """A TTFFont for one document, backed by a process-wide FontFace."""

    __slots__ = ("face",)

    @classmethod
    def for_document(cls, pdf: FPDF, face: FontFace, fontkey: str, style: str) -> "CachedFont":
        font = cls.__new__(cls)
        font.face = face
        font.i = len(pdf.fonts) + 1
        font.type = "TTF"
        font.ttffile = face.path
        font.fontkey = fontkey
        font.name = face.ps_name
        font.desc = None  # built at output: the descriptor becomes a PDF object of this document
        font.glyph_ids = face.glyph_ids
        font.cmap = face.cmap
        font.cw = face.cw  # shared, read only (a defaultdict, as fpdf2 expects)
        font.scale = 1000 / face.units_per_em
        font.up, font.ut, font.sp, font.ss = face.up, face.ut, face.sp, face.ss
        font.emphasis = TextEmphasis.coerce(style)
        font._hbfont = None  # fpdf2 opens HarfBuzz on the file (mmap) once per document
        font.ttfont = face.ttfont  # read only: glyph names and advances for shaped text
        font.missing_glyphs = []
        font.biggest_size_pt = 0
        font.color_font = None
        font.unicode_range = None
        font.palette_index = 0
        font.is_compressed = False
        font.is_cff = False
        font.is_cid_keyed = False
        font.is_symbol = False
        font.cff_ros = None
        font.collection_font_number = face.number
        font.subset = SubsetMap(font)
        return font

    def close(self) -> None:  # the shared face stays open for the next document
        self._hbfont = None


def use_face(pdf: FPDF, family: str, style: str, face: FontFace) -> None:
    """Make `face` available to `pdf.set_font(family, style)` without re-parsing it."""
    style = "".join(sorted(style.upper()))
    fontkey = f"{family.lower()}{style}"
    if fontkey in pdf.fonts:
        return
    if face.is_glyf:
        pdf.fonts[fontkey] = CachedFont.for_document(pdf, face, fontkey, style)
    else:  # CFF-flavoured OpenType (a system Noto CJK, a user's .otf): fpdf2's own, slower path
        pdf.add_font(family, style, str(face.path), collection_font_number=face.number)


class CertificateOutput(OutputProducer):
    """OutputProducer that embeds CachedFonts with the fast subsetter."""

    def _add_fonts(self, image_objects_per_index, gfxstate_objs_per_name, pattern_objs_per_name):
        fonts = self.fpdf.fonts  # the registry dict itself: hide ours from fpdf2 while it works
        saved = dict(fonts)
        cached = sorted((f for f in saved.values() if isinstance(f, CachedFont)), key=lambda f: f.i)
        for font in cached:
            del fonts[font.fontkey]
        try:
            result = super()._add_fonts(image_objects_per_index, gfxstate_objs_per_name, pattern_objs_per_name)
        finally:
            fonts.clear()
            fonts.update(saved)
        for font in cached:
            result[font.i] = self._add_cached_font(font)
        return result

    def _add_cached_font(self, font: CachedFont) -> PDFFont:
        face = font.face
        used = [(glyph, cid) for glyph, cid in font.subset.items() if glyph is not None]
        cid_to_gid = {cid: glyph.glyph_id for glyph, cid in used if cid}
        cid_to_unicode = {cid: glyph.unicode[0] for glyph, cid in used
                          if cid and isinstance(glyph.unicode, tuple) and len(glyph.unicode) == 1}
        program = build_subset(face, cid_to_gid, cid_to_unicode)
        # Subset tag: six capitals, distinct per glyph set (PDF 32000 9.6.4).
        digest = zlib.crc32(repr((face.ps_name, sorted(cid_to_gid.items()))).encode())
        tag = "".join(chr(65 + (digest >> (5 * k)) % 26) for k in range(6))
        fontname = f"{tag}+{face.ps_name}"

        composite = PDFFont(subtype="Type0", base_font=fontname, encoding="Identity-H")
        self._add_pdf_obj(composite, "fonts")
        widths = {cid: glyph.glyph_width for glyph, cid in used}
        cid_font = PDFFont(
            subtype="CIDFontType2", base_font=fontname, d_w=face.default_width, w=_cid_font_widths(widths)
        )
        cid_font.c_i_d_to_g_i_d_map = Name("Identity")
        self._add_pdf_obj(cid_font, "fonts")
        composite.descendant_fonts = PDFArray([cid_font])

        # Shaped glyphs (ligatures, conjuncts, joined Arabic letters) map to every character of
        # their cluster, so copy and search give the text back.
        entries = [
            f"<{cid:04X}> <{''.join(_utf16_hex(code) for code in _as_extracted(glyph.unicode))}>\n"
            for glyph, cid in used
            if cid and isinstance(glyph.unicode, tuple) and glyph.unicode
        ]
        to_unicode = PDFContentStream(_to_unicode_cmap(entries).encode("latin-1"), compress=True)
        self._add_pdf_obj(to_unicode, "fonts")
        composite.to_unicode = to_unicode

        system_info = CIDSystemInfo()
        self._add_pdf_obj(system_info, "fonts")
        cid_font.c_i_d_system_info = system_info

        arguments = dict(face.descriptor)
        arguments["flags"] = FontDescriptorFlags(arguments["flags"])
        descriptor = PDFFontDescriptor(**arguments)
        descriptor.font_name = Name(fontname)
        self._add_pdf_obj(descriptor, "fonts")
        cid_font.font_descriptor = descriptor

        stream = PDFFontStream(contents=program)
        self._add_pdf_obj(stream, "fonts")
        descriptor.font_file2 = stream
        font.subset.pick.cache_clear()
        font.subset.get_glyph.cache_clear()
        return composite


def _presentation_forms() -> dict[tuple[int, ...], int]:
    """Right-to-left ligatures (lam-alef, Allah) -> their Unicode presentation form."""
    forms: dict[tuple[int, ...], int] = {}
    for code in (*range(0xFB1D, 0xFB50), *range(0xFB50, 0xFE00), *range(0xFE70, 0xFEFF)):
        decomposed = unicodedata.normalize("NFKC", chr(code))
        if len(decomposed) > 1 and unicodedata.bidirectional(decomposed[0]) in ("R", "AL"):
            forms.setdefault(tuple(map(ord, decomposed)), code)
    return forms


_PRESENTATION_FORMS = _presentation_forms()


def _as_extracted(codes: tuple[int, ...]) -> tuple[int, ...]:
    """A right-to-left ligature maps to its presentation form (lam-alef: U+FEFB), whose NFKC
    normalisation is the letters in order; mapped to the letters themselves, extractors that
    reverse right-to-left lines (poppler) reverse them inside the ligature too ("لا" -> "ال")."""
    if len(codes) > 1:
        return (_PRESENTATION_FORMS[codes],) if codes in _PRESENTATION_FORMS else codes
    return codes


def _utf16_hex(code: int) -> str:
    if code > 0xFFFF:
        code -= 0x10000
        return f"{0xD800 | (code >> 10):04X}{0xDC00 | (code & 0x3FF):04X}"
    return f"{code:04X}"


def _to_unicode_cmap(entries: list[str]) -> str:
    blocks = []
    for start in range(0, len(entries), 100):  # at most 100 entries per bfchar block
        chunk = entries[start : start + 100]
        blocks.append(f"{len(chunk)} beginbfchar\n{''.join(chunk)}endbfchar\n")
    return (
        "/CIDInit /ProcSet findresource begin\n12 dict begin\nbegincmap\n"
        "/CIDSystemInfo\n<</Registry (Adobe)\n/Ordering (UCS)\n/Supplement 0\n>> def\n"
        "/CMapName /Adobe-Identity-UCS def\n/CMapType 2 def\n"
        "1 begincodespacerange\n<0000> <FFFF>\nendcodespacerange\n"
        f"{''.join(blocks)}endcmap\nCMapName currentdict /CMap defineresource pop\nend\nend"
    )


def output_pdf(pdf: FPDF) -> bytes:
    return bytes(pdf.output(output_producer_class=CertificateOutput))


def raw_operators(pdf: FPDF, operators: str) -> None:
    """Append content-stream operators to the current page (the QR code's image mask)."""
    pdf._out(operators)  # noqa: SLF001


# 3. Inherited-script characters join the run before them ---------------------------------------

_original_get_unicode_script = fpdf_module.get_unicode_script


@functools.lru_cache(maxsize=None)
def _script_with_inherited_as_common(char: str):
    script = _original_get_unicode_script(char)
    return UnicodeScript.COMMON if script == UnicodeScript.INHERITED else script


def install_script_patch() -> None:
    if fpdf_module.get_unicode_script is not _script_with_inherited_as_common:
        fpdf_module.get_unicode_script = _script_with_inherited_as_common


install_script_patch()


def private_surface_problems() -> list[str]:
    """What of the fpdf2 internals above is gone or changed in the installed fpdf2 ([] when fine)."""
    problems = []
    if fpdf.__version__ not in TESTED_FPDF2_VERSIONS:
        problems.append(f"fpdf2 {fpdf.__version__} is not one of the tested {', '.join(TESTED_FPDF2_VERSIONS)}: "
                        "re-check certificates/fpdf_internals.py, then add the version")
    slots = set()
    for klass in TTFFont.__mro__:
        slots |= set(getattr(klass, "__slots__", ()))
    if slots - {"face"} != _TTFFONT_SLOTS:
        problems.append(f"TTFFont's attributes changed: added {sorted(slots - _TTFFONT_SLOTS - {'face'})}, "
                        f"removed {sorted(_TTFFONT_SLOTS - slots)}")
    parameters = list(inspect.signature(OutputProducer._add_fonts).parameters)
    if parameters != ["self", "image_objects_per_index", "gfxstate_objs_per_name", "pattern_objs_per_name"]:
        problems.append(f"OutputProducer._add_fonts takes {parameters} now")
    if "output_producer_class" not in inspect.signature(FPDF.output).parameters:
        problems.append("FPDF.output no longer takes output_producer_class")
    if not callable(getattr(FPDF, "_out", None)):
        problems.append("FPDF._out is gone")
    source = inspect.getsource(FPDF._parse_chars)
    if "get_unicode_script(" not in source or "UnicodeScript.COMMON" not in source:
        problems.append("FPDF._parse_chars no longer splits runs with get_unicode_script")
    shaping = inspect.getsource(TTFFont.shape_text)
    if "self.ttfont.getGlyphName" not in shaping or 'self.ttfont["hmtx"]' not in shaping:
        problems.append("TTFFont.shape_text reads other font tables now (CachedFont shares only glyph names and hmtx)")
    for name in ("CIDSystemInfo", "PDFFont", "PDFFontStream", "_cid_font_widths"):
        if not hasattr(fpdf.output, name):
            problems.append(f"fpdf.output.{name} is gone")
    return problems
