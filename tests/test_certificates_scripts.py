"""Every script a learner's name is written in: shaped, in the right direction, searchable.

poppler's pdftotext reads each PDF back (NFKC-normalised, bidi marks removed); qpdf checks
every PDF (the `qpdf_checked` fixture). Arabic joining is checked on the embedded glyphs
themselves: the joined forms HarfBuzz picks, not the isolated letters.
"""

from __future__ import annotations

import io
import re
import unicodedata
from datetime import datetime, timezone

import pikepdf
import pytest
import uharfbuzz as hb
from fontTools.ttLib import TTFont

from certificates import CertificateError, RenderItem, Renderer, get_renderer, load_template, new_code, prepare_values, render_many
from certificates.faces import FONTS_DIR
from certificates.fpdf_internals import private_surface_problems
from tests.support.pdfs import pdffonts, pdftotext, qpdf_check, words_with_boxes

pytestmark = pytest.mark.usefixtures("qpdf_checked")
NOW = datetime(2025, 3, 14, 9, 30, tzinfo=timezone.utc)
PT = 72 / 25.4


@pytest.fixture(scope="module")
def default():
    return load_template("default")


def render(template, data: dict) -> bytes:
    code = new_code()
    values = prepare_values(template, {"course_name": "Fire Safety", **data}, code=code,
                            verify_url=f"https://certs.example.org/verify/{code}", issued_at=NOW)
    return get_renderer(template).render(values, created_at=NOW)


@pytest.mark.parametrize(("script", "name"), [
    ("Hindi (Devanagari)", "प्रिया शर्मा"),
    ("Japanese", "山田 太郎"),
    ("Thai", "สมชาย ใจดี"),
    ("Bengali", "অমিত রায়"),
    ("Tamil", "தமிழ் செல்வி"),
    ("Chinese", "李小龍"),
    ("Korean", "김민준"),
    ("Armenian", "Արամ Խաչատրյան"),
])
def test_shaped_names_come_back_exactly(default, script, name):
    pdf = render(default, {"fullname": name})
    assert name in pdftotext(pdf), script


def test_an_arabic_name_reads_right_to_left_with_joined_letters(default):
    name = "محمد علي"
    pdf = render(default, {"fullname": name})
    assert name in pdftotext(pdf)  # logical order: right to left on the page, read back in order
    assert_joined(pdf, name)


def assert_joined(pdf: bytes, name: str) -> None:
    """The glyphs embedded for `name` are the joined forms (initial, medial, final) HarfBuzz picks,
    not the isolated letters of the font's character map."""
    path = FONTS_DIR / "NotoSansArabic-Bold.ttf"  # the name is bold: the bold Arabic fallback
    original = TTFont(path)
    buffer = hb.Buffer()
    buffer.add_str(name)
    buffer.guess_segment_properties()
    hb.shape(hb.Font(hb.Face(hb.Blob.from_file_path(str(path)))), buffer, {})
    order, cmap = original.getGlyphOrder(), original.getBestCmap()
    joined = {_outline(original, order[info.codepoint]) for info in buffer.glyph_infos} - {_outline(original, cmap[32])}
    isolated = {_outline(original, cmap[ord(c)]) for c in name if unicodedata.category(c) == "Lo"}
    assert joined - isolated, "the font should have joining forms for this name"
    embedded = _embedded_outlines(pdf, "NotoSansArabic")
    assert joined <= embedded
    assert not (isolated - joined) & embedded


def test_a_hebrew_name_beside_latin(default):
    pdf = render(default, {"fullname": "Dr. דוד לוי", "course_name": "Workplace Safety"})
    text = pdftotext(pdf)
    assert "דוד לוי" in text and "Dr." in text and "Workplace Safety" in text
    assert any("NotoSansHebrew" in row[0] for row in pdffonts(pdf))


def test_vowelled_arabic_stays_joined(default):
    # Harakat are "Inherited" script; fpdf2 alone would cut the name into unjoined pieces.
    name = "مُحَمَّد عَلِي"
    pdf = render(default, {"fullname": name})
    assert_joined(pdf, name)
    assert "محمد علي" in re.sub("[\u064b-\u0652 ]", "", pdftotext(pdf)).replace("محمدعلي", "محمد علي")


def test_an_emoji_in_a_course_name_is_dropped_not_a_crash(default):
    pdf = render(default, {"fullname": "Ana Lima", "course_name": "Fire Safety 🚒 Level 2 ✅"})
    text = pdftotext(pdf)
    assert "Fire Safety Level 2" in text and "Ana Lima" in text


def test_a_120_character_name_shrinks_to_fit_its_box(default, tmp_path):
    name = ("Maria Antónia Josefa Johanna von Habsburg-Lothringen de Bourbon-Parme y Borbón-Dos Sicilias "
            "Leopoldina Carolina Josefina")
    assert len(name) == 120
    pdf = render(default, {"fullname": name})
    element = next(e for e in default.elements if getattr(e, "text", None) and e.text.source == "{fullname}")
    lines = [w for w in words_with_boxes(pdf, tmp_path) if w[0] in name]  # a line is one /ActualText span
    assert len(lines) == 2 and " ".join(w[0] for w in lines) == name  # every word, in order, none cut
    for line, x_min, y_min, x_max, y_max in lines:
        assert element.x * PT - 1 <= x_min and x_max <= (element.x + element.w) * PT + 1, line
        # poppler's boxes reach from the font's ascent to its descent: a few points past the lines
        assert element.y * PT - 5 <= y_min and y_max <= (element.y + element.h) * PT + 5, line


def test_cjk_beyond_the_bundled_subset_names_the_package(default, monkeypatch):
    import certificates.scripts

    monkeypatch.setattr(certificates.scripts, "SYSTEM_CJK", ())  # as on a machine without fonts-noto-cjk
    values = prepare_values(default, {"fullname": "𠮷田", "course_name": "C"}, code="MANI-0000-0000-0000",
                            verify_url="https://x/verify", issued_at=NOW)
    with pytest.raises(CertificateError, match=r"no font can draw '𠮷' \(U\+20BB7\) in name '𠮷田'.*fonts-noto-cjk"):
        Renderer(default).render(values)


def test_a_batch_mixes_scripts_and_fails_only_the_undrawable(default):
    names = ["Zoë Ångström", "محمد علي", "Ankh 𓀀", "प्रिया शर्मा", "山田 太郎", "Дмитрий Шостакович"]
    items = []
    for name in names:
        code = new_code()
        items.append(RenderItem(prepare_values(default, {"fullname": name, "course_name": "C"}, code=code,
                                               verify_url=f"https://x/verify/{code}", issued_at=NOW)))
    results = get_renderer(default).render_batch(items)
    assert [isinstance(r, CertificateError) for r in results] == [False, False, True, False, False, False]
    for name, item, pdf in zip(names, items, results):
        if isinstance(pdf, bytes):
            text = pdftotext(pdf)
            assert name in text and item.values["code"] in text
            assert sum(name in pdftotext(other) for other in results if isinstance(other, bytes)) == 1


@pytest.mark.slow
@pytest.mark.xdist_group("workers")  # it starts processes of its own
def test_the_process_pool_renders_every_certificate_in_order(default):
    items = []
    for index in range(30):
        code = new_code()
        items.append(RenderItem(prepare_values(default, {"fullname": f"Αριστοτέλης {index}", "course_name": "C"},
                                               code=code, verify_url=f"https://x/verify/{code}", issued_at=NOW)))
    from certificates import pool

    for _ in range(3):  # a start that fails is forgotten; warm_up then starts another
        pool.warm_up(2)
        if pool.wait_ready(60):
            break
    assert pool.wait_ready(0), "the render processes did not start"
    results = render_many(default, items, processes=2)  # two runs of 15, one per process
    pool.shutdown()
    assert len(results) == 30
    for index, pdf in enumerate(results):
        qpdf_check(pdf)  # rendered in another process: the fixture does not see these
        assert f"Αριστοτέλης {index}" in pdftotext(pdf)


def test_fpdf2_internals_used_are_still_there():
    """Fails loudly on an fpdf2 upgrade that moves what certificates/fpdf_internals.py relies on."""
    assert private_surface_problems() == []


def _outline(font: TTFont, glyph_name: str) -> tuple:
    glyph = font["glyf"][glyph_name]
    glyph.recalcBounds(font["glyf"]) if glyph.numberOfContours else None
    return (font["hmtx"][glyph_name][0], getattr(glyph, "xMin", 0), getattr(glyph, "yMin", 0),
            getattr(glyph, "xMax", 0), getattr(glyph, "yMax", 0))


def _embedded_outlines(pdf: bytes, family: str) -> set[tuple]:
    with pikepdf.open(io.BytesIO(pdf)) as document:
        resources = [document.pages[0].obj.Resources]
        while resources:  # the page's, and those of its XObjects (the shared fixed layer)
            current = resources.pop()
            resources.extend(x.Resources for x in current.get("/XObject", {}).values() if "/Resources" in x)
            for font in current.get("/Font", {}).values():
                if family in str(font.BaseFont):
                    program = font.DescendantFonts[0].FontDescriptor.FontFile2.read_bytes()
                    subset = TTFont(io.BytesIO(program))
                    return {_outline(subset, name) for name in subset.getGlyphOrder()[1:]}
    raise AssertionError(f"no {family} font in the PDF")
