"""Rebuild the bundled certificate fonts from Debian's Noto packages (reproducible).

    python certificates/fonts/build_fonts.py            # downloads the two .deb files with apt-get
    python certificates/fonts/build_fonts.py --from DIR  # DIR holds the extracted packages (dpkg-deb -x)

Sources (SIL Open Font License 1.1, see OFL.txt):
- `fonts-noto-core` (Debian 20201225-1): Noto Serif, Noto Sans and the per-script Noto Sans fonts;
- `fonts-noto-cjk` (Debian 1:20220127+repack1-1): Noto Sans CJK (the JP face of the collection).

What this does, and why:
- Noto Serif and Noto Sans are cut down to Latin (with Vietnamese and the extended blocks), Greek,
  Cyrillic, punctuation and currency: what a learner's name or a course title is written in.
  The OpenType features HarfBuzz applies by default (kerning, marks, ligatures, contextual forms,
  the joining and conjunct forms of Arabic and the Indic scripts) are kept; TrueType hinting is
  dropped (PDF viewers scale outlines themselves), which halves the files.
- The per-script fonts (Arabic, Hebrew, Devanagari, Bengali, Tamil, Thai, Armenian, Georgian) keep
  every character; only hinting and the glyphs of optional features go.
- Noto Sans CJK is 19 MiB per weight and CFF-flavoured. The bundled `NotoSansCJK-Common.ttf` holds
  the common characters only: the first levels of GB 2312 and Big5, both levels of JIS X 0208
  (which include the Joyo and most Jinmeiyo kanji), the 2,350 Hangul syllables of KS X 1001, kana
  and CJK punctuation. Its outlines are converted to TrueType (quadratic) curves so the renderer's
  fast glyf subsetter can embed it. A character outside it is drawn from the system's
  `fonts-noto-cjk` when installed (see `certificates/scripts.py`).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from fontTools import subset
from fontTools.pens.cu2quPen import Cu2QuPen
from fontTools.pens.ttGlyphPen import TTGlyphPen
from fontTools.ttLib import TTCollection, TTFont, newTable

HERE = Path(__file__).resolve().parent
PACKAGES = ("fonts-noto-core", "fonts-noto-cjk")
NOTO = "usr/share/fonts/truetype/noto"
NOTO_CJK = "usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"
CJK_FACE = 0  # "Noto Sans CJK JP" in the collection

# Latin (+ extended, Vietnamese), IPA/modifiers, combining marks, Greek, Cyrillic, punctuation,
# currency, letterlike symbols and number forms.
WESTERN_RANGES = [
    (0x0000, 0x036F), (0x0370, 0x03FF), (0x0400, 0x052F), (0x1AB0, 0x1AFF), (0x1C80, 0x1C8F),
    (0x1D00, 0x1DFF), (0x1E00, 0x1FFF), (0x2000, 0x206F), (0x2070, 0x209F), (0x20A0, 0x20CF),
    (0x2100, 0x218F), (0x2C60, 0x2C7F), (0x2DE0, 0x2DFF), (0xA640, 0xA69F), (0xA720, 0xA7FF),
    (0xAB30, 0xAB6F), (0xFB00, 0xFB06), (0xFE20, 0xFE2F), (0xFEFF, 0xFEFF), (0xFFFD, 0xFFFD),
]
# Output name -> source file in fonts-noto-core.
WESTERN = {
    "NotoSerif-Regular.ttf": "NotoSerif-Regular.ttf",
    "NotoSerif-Bold.ttf": "NotoSerif-Bold.ttf",
    "NotoSerif-Italic.ttf": "NotoSerif-Italic.ttf",
    "NotoSans-Regular.ttf": "NotoSans-Regular.ttf",
    "NotoSans-Bold.ttf": "NotoSans-Bold.ttf",
}
SCRIPTS = ["Arabic", "Hebrew", "Devanagari", "Bengali", "Tamil", "Thai", "Armenian", "Georgian"]


def _han(chars: set[str]) -> set[str]:
    return {c for c in chars if 0x3400 <= ord(c) <= 0x4DBF or 0x4E00 <= ord(c) <= 0x9FFF or 0xF900 <= ord(c) <= 0xFAFF}


def _decode_rows(codec: str, rows: range, cells: list[int]) -> set[str]:
    found = set()
    for row in rows:
        for cell in cells:
            try:
                text = bytes([row, cell]).decode(codec)
            except UnicodeDecodeError:
                continue
            if len(text) == 1:
                found.add(text)
    return found


def cjk_common_characters() -> set[int]:
    """The common CJK repertoire, from Python's own codecs (so no data file is needed)."""
    euc = list(range(0xA1, 0xFF))
    big5 = list(range(0x40, 0x7F)) + list(range(0xA1, 0xFF))
    han = (_han(_decode_rows("gb2312", range(0xB0, 0xD8), euc))          # GB 2312 level 1
           | _han(_decode_rows("euc_jp", range(0xB0, 0xF5), euc))        # JIS X 0208 levels 1 and 2
           | _han(_decode_rows("big5", range(0xA4, 0xC7), big5)))        # Big5 frequently used
    hangul = {c for c in _decode_rows("euc_kr", range(0xB0, 0xC9), euc) if 0xAC00 <= ord(c) <= 0xD7A3}
    codes = {ord(c) for c in han | hangul}
    for low, high in ((0x3000, 0x303F), (0x3040, 0x30FF), (0x31F0, 0x31FF), (0x3130, 0x318F),
                      (0xFF00, 0xFFEF), (0x0020, 0x007E), (0x00B7, 0x00B7), (0x2010, 0x2027)):
        codes.update(range(low, high + 1))
    return codes


def _subset(font: TTFont, unicodes: set[int] | None, out: Path) -> None:
    options = subset.Options()  # fontTools' default layout features: kern, marks, ligatures, locl...
    options.name_IDs = ["*"]
    options.name_languages = ["*"]
    options.notdef_outline = True
    options.recommended_glyphs = True
    options.hinting = False
    options.glyph_names = False
    subsetter = subset.Subsetter(options)
    if unicodes is None:
        subsetter.populate(unicodes=set(font.getBestCmap()))
    else:
        subsetter.populate(unicodes=unicodes)
    subsetter.subset(font)
    font.save(str(out))


def _cff_to_glyf(font: TTFont) -> None:
    """Replace CFF outlines with quadratic TrueType ones (fontTools' otf2ttf recipe)."""
    order = font.getGlyphOrder()
    glyph_set = font.getGlyphSet()
    glyf = newTable("glyf")
    glyf.glyphOrder = order
    glyf.glyphs = {}
    for name in order:
        pen = TTGlyphPen(glyph_set)
        glyph_set[name].draw(Cu2QuPen(pen, max_err=1.0, reverse_direction=True))
        glyf[name] = pen.glyph()
    font["glyf"] = glyf
    font["loca"] = newTable("loca")
    del font["CFF "]
    if "VORG" in font:
        del font["VORG"]
    font["maxp"] = maxp = newTable("maxp")
    maxp.tableVersion = 0x00010000
    for attribute in ("maxZones", "maxTwilightPoints", "maxStorage", "maxFunctionDefs", "maxInstructionDefs",
                      "maxStackElements", "maxSizeOfInstructions", "maxComponentElements"):
        setattr(maxp, attribute, 0)
    maxp.maxZones = 1
    font["head"].glyphDataFormat = 0
    font["post"].formatType = 3.0
    font.sfntVersion = "\x00\x01\x00\x00"
    font.recalcBBoxes = True


def build(source: Path, target: Path) -> list[tuple[str, int]]:
    western = set()
    for low, high in WESTERN_RANGES:
        western.update(range(low, high + 1))
    made = []
    for out_name, src_name in WESTERN.items():
        _subset(TTFont(source / NOTO / src_name), western, target / out_name)
        made.append(out_name)
    for script in SCRIPTS:
        for weight in ("Regular", "Bold"):
            name = f"NotoSans{script}-{weight}.ttf"
            _subset(TTFont(source / NOTO / name), None, target / name)
            made.append(name)
    cjk = TTCollection(str(source / NOTO_CJK)).fonts[CJK_FACE]
    codes = cjk_common_characters()
    options = subset.Options()
    # Horizontal names need kerning only: `locl` alone would pull in the Korean, Chinese and
    # Hong Kong forms of thousands of ideographs, and `vert`/`jp78`/... more again.
    options.layout_features = ["kern"]
    options.name_IDs = ["*"]
    options.notdef_outline = True
    options.hinting = False
    options.desubroutinize = True
    subsetter = subset.Subsetter(options)
    subsetter.populate(unicodes=codes)
    subsetter.subset(cjk)
    _cff_to_glyf(cjk)
    cjk.save(str(target / "NotoSansCJK-Common.ttf"))
    made.append("NotoSansCJK-Common.ttf")
    return [(name, (target / name).stat().st_size) for name in made]


def download(into: Path) -> Path:
    extracted = into / "root"
    for package in PACKAGES:
        subprocess.run(["apt-get", "download", package], cwd=into, check=True)
    for deb in sorted(into.glob("*.deb")):
        subprocess.run(["dpkg-deb", "-x", str(deb), str(extracted)], check=True)
    return extracted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from", dest="source", type=Path, help="extracted packages (default: apt-get download)")
    parser.add_argument("--to", dest="target", type=Path, default=HERE)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        source = args.source or download(Path(scratch))
        sizes = build(source, args.target)
    for name, size in sizes:
        print(f"{size / 1024:9.1f} KiB  {name}")
    print(f"{sum(size for _, size in sizes) / 1024 / 1024:9.2f} MiB  in all", file=sys.stderr)


if __name__ == "__main__":
    main()
