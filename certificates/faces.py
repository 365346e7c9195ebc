"""Font faces parsed once per process, glyph coverage checks, and the bundled families.

Parsing a TTF (cmap, hmtx, post, loca) is what makes naive fpdf2 slow, so a `FontFace` is
built once per file per process and shared by every document a worker renders. The parsed
fontTools object stays open (read only) because fpdf2's HarfBuzz path asks it for glyph names
and advances while it shapes.
"""

from __future__ import annotations

import threading
from array import array
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from fontTools.ttLib import TTFont

from certificates.errors import TemplateError
from certificates.subset import prepare_face

FONTS_DIR = Path(__file__).parent / "fonts"

# Family name in a template -> {style: file in FONTS_DIR}. Styles are "", "B", "I", "BI".
# Noto Serif and Noto Sans cut down to Latin, Greek and Cyrillic (certificates/fonts/build_fonts.py).
BUNDLED_FAMILIES: dict[str, dict[str, str]] = {
    "sans": {"": "NotoSans-Regular.ttf", "B": "NotoSans-Bold.ttf"},
    "serif": {"": "NotoSerif-Regular.ttf", "B": "NotoSerif-Bold.ttf", "I": "NotoSerif-Italic.ttf"},
}

# Characters that are layout, not ink: no glyph needed (tabs and newlines never reach a cell).
_INVISIBLE = {"\u200b", "\u200c", "\u200d", "\u2060", "\ufeff"}


@dataclass(eq=False)
class FontFace:
    """Everything a document needs from one TrueType file, read once."""

    path: Path
    number: int  # the face's index in a collection (.ttc)
    ps_name: str
    is_glyf: bool
    units_per_em: int
    cmap: dict[int, str]  # codepoint -> glyph name (what fpdf2's SubsetMap expects)
    glyph_ids: dict[int, int]  # codepoint -> glyph id
    cw: dict[int, int]  # codepoint -> advance in 1/1000 em
    default_width: int
    descriptor: dict  # PDFFontDescriptor arguments
    up: int
    ut: int
    sp: int
    ss: int
    # Raw material for the subsetter (glyf-flavoured TrueType only).
    glyf: bytes = b""
    loca: array = field(default_factory=lambda: array("I"))
    hmetrics: list[tuple[int, int]] = field(default_factory=list)
    tables: dict[str, bytes] = field(default_factory=dict)
    composites: dict[int, list[tuple[int, int]]] = field(default_factory=dict)
    checksums: dict[str, int] = field(default_factory=dict)
    ttfont: TTFont | None = None  # kept open, read only: fpdf2's shaper reads glyph names and advances

    def covers(self, char: str) -> bool:
        return ord(char) in self.glyph_ids

    def missing(self, text: str) -> list[str]:
        """Characters of `text` this face has no glyph for (invisible ones excluded)."""
        return [c for c in dict.fromkeys(text) if ord(c) not in self.glyph_ids and c not in _INVISIBLE]


def _read_face(path: Path, number: int = 0) -> FontFace:
    font = TTFont(str(path), lazy=True, recalcTimestamp=False, fontNumber=number)
    scale = 1000 / font["head"].unitsPerEm
    cmap = dict(font.getBestCmap() or {})
    if not cmap:
        raise TemplateError(f"font {path} has no Unicode character map")
    hmtx = font["hmtx"].metrics
    order = font.getGlyphOrder()
    gid_of = {name: gid for gid, name in enumerate(order)}
    glyph_ids = {cp: gid_of[name] for cp, name in cmap.items()}
    default_width = round(scale * hmtx[order[0]][0])
    cw: dict[int, int] = defaultdict(lambda: default_width)  # fpdf2 reads unknown characters as .notdef
    cw.update({cp: round(scale * (hmtx[name][0] if hmtx[name][0] != 65535 else 0) + 0.001) for cp, name in cmap.items()})
    os2, post, hhea, head = font["OS/2"], font["post"], font["hhea"], font["head"]
    flags = 4  # SYMBOLIC: glyphs are addressed by CID, not by a standard encoding
    if post.isFixedPitch:
        flags |= 1
    if post.italicAngle != 0:
        flags |= 0x40
    if os2.usWeightClass >= 600:
        flags |= 0x40000
    descriptor = dict(
        ascent=round(hhea.ascent * scale),
        descent=round(hhea.descent * scale),
        cap_height=round(getattr(os2, "sCapHeight", hhea.ascent) * scale),
        flags=flags,
        font_b_box=f"[{head.xMin * scale:.0f} {head.yMin * scale:.0f} {head.xMax * scale:.0f} {head.yMax * scale:.0f}]",
        italic_angle=int(post.italicAngle),
        stem_v=round(50 + int(pow((os2.usWeightClass / 65), 2))),
        missing_width=default_width,
    )
    ps_name = "".join(ch for ch in (font["name"].getDebugName(6) or path.stem) if ch.isalnum() or ch in "-_")
    face = FontFace(
        path=path,
        number=number,
        ps_name=ps_name or "Font",
        is_glyf="glyf" in font,
        units_per_em=font["head"].unitsPerEm,
        cmap=cmap,
        glyph_ids=glyph_ids,
        cw=cw,
        default_width=default_width,
        descriptor=descriptor,
        up=round(post.underlinePosition * scale),
        ut=round(post.underlineThickness * scale),
        sp=round(os2.yStrikeoutPosition * scale),
        ss=round(os2.yStrikeoutSize * scale),
    )
    if face.is_glyf:
        prepare_face(face, font)
    font["hmtx"]  # decompiled now, under the lock, so threads that shape later only read it
    face.ttfont = font
    return face


_lock = threading.Lock()
_faces: dict[tuple[str, int, int], FontFace] = {}


def load_face(path: str | Path, *, number: int = 0) -> FontFace:
    """The process-wide `FontFace` for a font file (parsed on first use)."""
    resolved = Path(path).expanduser().resolve()
    try:
        mtime = resolved.stat().st_mtime_ns
    except OSError as error:
        raise TemplateError(f"font file {path} cannot be read ({error.strerror or error})") from error
    key = (str(resolved), number, mtime)
    face = _faces.get(key)
    if face is None:
        with _lock:
            face = _faces.get(key)
            if face is None:
                try:
                    face = _read_face(resolved, number)
                except TemplateError:
                    raise
                except Exception as error:  # noqa: BLE001 - fontTools raises many kinds
                    raise TemplateError(f"font file {path} is not a usable TrueType/OpenType font: {error}") from error
                _faces[key] = face
    return face


def family_file(family: str, style: str = "") -> Path:
    """The bundled file for a family and style, falling back to the regular style."""
    styles = BUNDLED_FAMILIES.get(family)
    if styles is None:
        raise TemplateError(f"font family '{family}' is not one of {', '.join(sorted(BUNDLED_FAMILIES))}")
    return FONTS_DIR / styles.get(style, styles[""])


def describe_chars(chars: list[str], limit: int = 5) -> str:
    shown = ", ".join(f"'{c}' (U+{ord(c):04X})" for c in chars[:limit])
    return shown + (f" and {len(chars) - limit} more" if len(chars) > limit else "")
