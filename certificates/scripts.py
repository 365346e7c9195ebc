"""Which font draws which character: the fallback chain, emoji, and the CJK package hint.

A text element is drawn in its own face; every character that face lacks goes, run by run,
to the first face of the chain that has it. fpdf2 splits the text into runs by Unicode script
and shapes each run with HarfBuzz, so an Arabic name in a Latin template is one Arabic run
in Noto Sans Arabic, joined and right to left.

The chain, in order:
1. the bundled Noto Sans (Latin, Greek, Cyrillic), for templates whose own font lacks them;
2. one bundled Noto Sans per script: Arabic, Hebrew, Devanagari, Bengali, Tamil, Thai,
   Armenian, Georgian;
3. `NotoSansCJK-Common.ttf`, the common Chinese, Japanese and Korean characters;
4. the fonts named in `certificate_fallback_font`, in order;
5. the system's Noto Sans CJK (Debian `fonts-noto-cjk`) when installed: every CJK character.
Emoji are dropped (no bundled font draws them, and they are decoration, not a name).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from certificates.faces import FONTS_DIR, FontFace, describe_chars, load_face

# (chain key, regular file, bold file), in chain order.
SCRIPT_FONTS: tuple[tuple[str, str, str], ...] = (
    ("latin", "NotoSans-Regular.ttf", "NotoSans-Bold.ttf"),
    ("arabic", "NotoSansArabic-Regular.ttf", "NotoSansArabic-Bold.ttf"),
    ("hebrew", "NotoSansHebrew-Regular.ttf", "NotoSansHebrew-Bold.ttf"),
    ("devanagari", "NotoSansDevanagari-Regular.ttf", "NotoSansDevanagari-Bold.ttf"),
    ("bengali", "NotoSansBengali-Regular.ttf", "NotoSansBengali-Bold.ttf"),
    ("tamil", "NotoSansTamil-Regular.ttf", "NotoSansTamil-Bold.ttf"),
    ("thai", "NotoSansThai-Regular.ttf", "NotoSansThai-Bold.ttf"),
    ("armenian", "NotoSansArmenian-Regular.ttf", "NotoSansArmenian-Bold.ttf"),
    ("georgian", "NotoSansGeorgian-Regular.ttf", "NotoSansGeorgian-Bold.ttf"),
    ("cjk", "NotoSansCJK-Common.ttf", ""),
)
CJK_PACKAGE = "fonts-noto-cjk"
# Where Debian's fonts-noto-cjk puts the full fonts (regular, bold); face 0 is the JP one.
SYSTEM_CJK = (Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"),
              Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc"))

# Pictographs, dingbats, flags, keycaps, skin tones, tags and the joiners and selectors that
# glue emoji sequences together. Dropped only when no face of the chain has the character.
_EMOJI = re.compile(
    "[\U0001F000-\U0001FAFF\u2600-\u27BF\u2B00-\u2BFF\u2300-\u23FF\uFE0E\uFE0F\u20E3\U000E0020-\U000E007F]"
)
_EMOJI_GLUE = {"\u200d", "\ufe0f", "\ufe0e", "\u20e3"}
_CJK = re.compile("[\u1100-\u11FF\u2E80-\u2FDF\u3000-\u9FFF\uA960-\uA97F\uAC00-\uD7FF\uF900-\uFAFF"
                  "\uFE30-\uFE4F\uFF00-\uFFEF\U00020000-\U0003FFFF]")


@dataclass(eq=False)
class ChainFace:
    """One face of the fallback chain, parsed on first use."""

    key: str
    path: Path
    bold: bool
    number: int = 0
    _face: FontFace | None = None

    @property
    def face(self) -> FontFace:
        if self._face is None:
            self._face = load_face(self.path, number=self.number)
        return self._face


class FontChain:
    """The ordered fallback faces for one renderer (bundled, configured, system)."""

    def __init__(self, extra_fonts: Iterable[str | Path] = ()):
        faces: list[ChainFace] = []
        for key, regular, bold in SCRIPT_FONTS:
            faces.append(ChainFace(key, FONTS_DIR / regular, False))
            if bold:
                faces.append(ChainFace(key, FONTS_DIR / bold, True))
        for index, path in enumerate(p for p in extra_fonts if p):
            faces.append(ChainFace(f"extra{index}", Path(path), False))
        for path, bold in zip(SYSTEM_CJK, (False, True)):
            if path.is_file():
                faces.append(ChainFace("system-cjk", path, bold))
        self.faces = faces  # bundled and system faces are parsed when a character first reaches them
        for chain_face in faces:
            if chain_face.key.startswith("extra"):
                chain_face.face  # noqa: B018 - configured files are checked now: a bad one is a set-up error

    def face_for(self, char: str, *, bold: bool) -> ChainFace | None:
        """The first face of the chain that draws `char`, preferring the requested weight."""
        code = ord(char)
        fallback = None
        for chain_face in self.faces:
            if code in chain_face.face.glyph_ids:
                if chain_face.bold == bold:
                    return chain_face
                fallback = fallback or chain_face
        return fallback


@dataclass(frozen=True)
class Coverage:
    """What drawing a text needs: the text as drawn (emoji dropped) and the chain faces used."""

    text: str
    faces: tuple[ChainFace, ...]
    missing: tuple[str, ...]


def covered(text: str, primary: FontFace, chain: FontChain, *, bold: bool) -> Coverage:
    missing_in_primary = primary.missing(text)
    if not missing_in_primary:
        return Coverage(text, (), ())
    needed: list[ChainFace] = []
    dropped: set[str] = set()
    orphans: list[str] = []
    for char in missing_in_primary:
        chain_face = chain.face_for(char, bold=bold)
        if chain_face is not None:
            if chain_face not in needed:
                needed.append(chain_face)
        elif _EMOJI.match(char) or char in _EMOJI_GLUE:
            dropped.add(char)
        else:
            orphans.append(char)
    if dropped:
        text = " ".join("".join(c for c in text if c not in dropped).split())
    return Coverage(text, tuple(needed), tuple(orphans))


def missing_message(orphans: Sequence[str], where: str) -> str:
    """The per-recipient error for characters no font draws, naming the package for CJK."""
    message = f"no font can draw {describe_chars(list(orphans))} in {where}"
    if any(_CJK.match(c) for c in orphans):
        message += (f": the bundled CJK font has the common characters only; install the Debian package "
                    f"{CJK_PACKAGE} (or set certificate_fallback_font) for the rest")
    return message
