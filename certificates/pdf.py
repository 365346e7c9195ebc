"""fpdf2 glue: fonts parsed once per process, reused by every FPDF document.

`FPDF.add_font` builds a `TTFFont` by parsing the whole TTF, and `FPDF.output` subsets it with
fontTools, which also mutates and closes it. Here each document gets a `CachedFont`: a
`TTFFont` whose parsed tables are shared (`FontFace`) and whose per-document state (the
`SubsetMap` of glyphs used, the object number) is fresh. At output, `CertificateOutput`
embeds each one with `certificates.subset`, so every PDF still carries its own font subset.

This leans on fpdf2 internals (TTFFont's slots, OutputProducer._add_fonts); pyproject pins
the fpdf2 minor version, and tests/test_certificates_render.py checks every PDF with poppler.
"""

from __future__ import annotations

import zlib

from fpdf import FPDF
from fpdf.enums import FontDescriptorFlags, TextEmphasis
from fpdf.fonts import PDFFontDescriptor, SubsetMap, TTFFont
from fpdf.output import CIDSystemInfo, OutputProducer, PDFFont, PDFFontStream, _cid_font_widths
from fpdf.syntax import Name, PDFArray, PDFContentStream

from certificates.faces import FontFace
from certificates.subset import build_subset


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
        font.cw = face.cw  # shared, read-only in practice (a defaultdict, as fpdf2 expects)
        font.scale = 1000 / face.units_per_em
        font.up, font.ut, font.sp, font.ss = face.up, face.ut, face.sp, face.ss
        font.emphasis = TextEmphasis.coerce(style)
        font._hbfont = None
        font.ttfont = None
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
        font.collection_font_number = 0
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
    else:  # CFF-flavoured OpenType: fpdf2's own (slower) path, still correct
        pdf.add_font(family, style, str(face.path))


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
        cid_to_unicode = {cid: glyph.unicode[0] for glyph, cid in used if cid and len(glyph.unicode) == 1}
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

        entries = [
            f"<{cid:04X}> <{''.join(_utf16_hex(code) for code in glyph.unicode)}>\n"
            for glyph, cid in used
            if cid and isinstance(glyph.unicode, tuple) and glyph.unicode
        ]
        to_unicode = PDFContentStream(_to_unicode_cmap(entries).encode("latin-1"))
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
