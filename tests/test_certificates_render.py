"""The certificate renderer with real PDFs: poppler reads the text, zxing reads the QR code,
qpdf checks every PDF (the `qpdf_checked` fixture)."""

from __future__ import annotations

import io
import re
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import zxingcpp
from fontTools.ttLib import TTFont
from PIL import Image

from certificates import (
    CertificateError,
    TemplateError,
    get_renderer,
    load_template,
    missing_fields,
    new_code,
    normalize_code,
    prepare_values,
    required_fields,
    validate_template,
)
from certificates.faces import family_file, load_face
from certificates.qr import qr_matrix
from certificates.subset import _checksum, build_subset
from tests.support.pdfs import pdffonts, pdftotext

pytestmark = pytest.mark.usefixtures("qpdf_checked")
NOW = datetime(2025, 3, 14, 9, 30, tzinfo=timezone.utc)
NAMES = [
    ("Zoë", "Ångström-Kovačević"),
    ("François", "Lefèvre-Øberg"),
    ("Łukasz", "Żółć-Şahin"),
    ("Дмитрий", "Шостакович"),
    ("Αριστοτέλης", "Παπαδόπουλος"),
]


def page_image(pdf: bytes, tmp_path: Path, dpi: int = 150) -> Image.Image:
    source = tmp_path / "page.pdf"
    source.write_bytes(pdf)
    done = subprocess.run(["pdftoppm", "-png", "-r", str(dpi), "-singlefile", str(source), str(tmp_path / "page")],
                          capture_output=True, check=True)
    assert done.stderr == b"", done.stderr.decode()
    return Image.open(tmp_path / "page.png")


def render(template, data: dict, *, code: str | None = None, fallback=(), expires_at=None) -> tuple[bytes, dict]:
    code = code or new_code()
    values = prepare_values(template, data, code=code, verify_url=f"https://certs.example.org/verify/{code}",
                            issued_at=NOW, expires_at=expires_at)
    return get_renderer(template, fallback_fonts=fallback).render(values, created_at=NOW), values


@pytest.fixture(scope="module")
def default():
    return load_template("default")


@pytest.mark.parametrize(("first", "last"), NAMES)
def test_names_in_every_bundled_script_come_back_exactly(default, first, last):
    pdf, values = render(default, {"firstname": first, "lastname": last, "course_name": "Safety — Level 2"})
    assert pdf.startswith(b"%PDF-") and pdf.rstrip().endswith(b"%%EOF")
    text = pdftotext(pdf)
    assert f"{first} {last}" in text
    assert "Safety — Level 2" in text
    assert values["code"] in text
    assert "14 March 2025" in text  # completion date defaults to the day of issue


def test_fonts_are_embedded_subsets(default):
    pdf, _ = render(default, {"firstname": "Дмитрий", "lastname": "Шостакович", "course_name": "Course"})
    rows = pdffonts(pdf)
    assert rows, "no fonts listed"
    for row in rows:
        assert re.match(r"^[A-Z]{6}\+Noto", row[0]), row
        assert row[-5:-2] == ["yes", "yes", "yes"], row  # embedded, subset, ToUnicode


def test_qr_code_decodes_to_the_verification_url(default, tmp_path):
    code = new_code()
    pdf, values = render(default, {"firstname": "Zoë", "lastname": "Ångström", "course_name": "C"}, code=code)
    found = zxingcpp.read_barcodes(page_image(pdf, tmp_path))
    assert [b.text for b in found if b.format == zxingcpp.BarcodeFormat.QRCode] == [values["verify_url"]]
    assert values["verify_url"].endswith(code)


def test_qr_codes_decode_for_many_codes():
    for _ in range(25):
        url = f"https://certs.example.org/verify/{new_code()}"
        matrix = qr_matrix(url)
        size = len(matrix) + 8
        image = Image.new("L", (size, size), 255)
        for y, row in enumerate(matrix):
            for x, dark in enumerate(row):
                if dark:
                    image.putpixel((x + 4, y + 4), 0)
        image = image.resize((size * 6, size * 6), Image.NEAREST)
        assert [b.text for b in zxingcpp.read_barcodes(image)] == [url]


def test_a_name_no_font_can_draw_is_a_clear_error(default):
    with pytest.raises(CertificateError, match=r"no font can draw '𓀀' \(U\+13000\) in name 'Ankh 𓀀'"):
        render(default, {"fullname": "Ankh 𓀀", "course_name": "C"})


def test_grade_and_expiry_lines_show_only_when_present(default):
    pdf, _ = render(default, {"fullname": "Ana Lima", "course_name": "C", "grade": "A+"},
                    expires_at=NOW + timedelta(days=365))
    text = pdftotext(pdf)
    assert "Grade: A+" in text and "Valid until 14 March 2026" in text
    text = pdftotext(render(default, {"fullname": "Ana Lima", "course_name": "C"})[0])
    assert "Grade" not in text and "Valid until" not in text


def test_long_names_shrink_or_wrap_but_are_never_cut(default):
    name = "Maria Antónia Josefa Johanna von Habsburg-Lothringen de Bourbon-Parme y Borbón-Dos Sicilias"
    text = pdftotext(render(default, {"fullname": name, "course_name": "C " * 60})[0])
    assert name.split()[0] in text and name.split()[-1] in text
    assert " ".join(text.split()).count("Habsburg-Lothringen") == 1


def test_decomposed_accents_and_stray_whitespace_are_normalised(default):
    text = pdftotext(render(default, {"fullname": "Zoe\u0308\t Ange\u0301lique\n", "course_name": "C"})[0])
    assert "Zoë Angélique" in text


def test_completion_dates_are_formatted(default):
    for given in ("2024-12-31", "2024-12-31T10:00:00Z", 1735639200):
        text = pdftotext(render(default, {"fullname": "A B", "course_name": "C", "completion_date": given})[0])
        assert "31 December 2024" in text


def test_missing_values_are_a_clear_per_recipient_error(default):
    with pytest.raises(CertificateError, match="course_name"):
        render(default, {"fullname": "A B"})
    with pytest.raises(CertificateError, match="needs a name"):
        render(default, {"course_name": "C"})


def test_subset_fonts_are_well_formed():
    face = load_face(family_file("serif", "B"))
    text = "".join(dict.fromkeys("Zoë Ångström Дмитрий Αθηνά".replace(" ", "")))
    cids = {i + 1: face.glyph_ids[ord(c)] for i, c in enumerate(text)}
    font_bytes = build_subset(face, cids, {i + 1: ord(c) for i, c in enumerate(text)})
    assert _checksum(font_bytes) == 0xB1B0AFBA  # head.checkSumAdjustment is right
    font = TTFont(io.BytesIO(font_bytes))
    order = font.getGlyphOrder()
    for name in order:
        glyph = font["glyf"][name]
        if glyph.isComposite():  # components were renumbered into the subset
            assert all(component.glyphName in order for component in glyph.components)
    cmap = font.getBestCmap()
    assert all(font.getGlyphID(cmap[ord(c)]) == cid for cid, c in enumerate(text, start=1))
    assert font["maxp"].numGlyphs > len(text)  # plus the components of accented letters


def test_template_errors_are_listed_one_by_one():
    bad = {
        "page": {"size": "A9", "orientation": "sideways"},
        "element": [
            {"type": "text", "text": "{fullname}", "y": 10},
            {"type": "text", "text": "x", "y": 20, "colour": "#fff"},
            {"type": "text", "text": "Hello {foo}", "y": 30, "color": "blue"},
            {"type": "star", "y": 40},
        ],
    }
    with pytest.raises(TemplateError) as caught:
        validate_template(bad, name="bad")
    message = str(caught.value)
    for expected in ("page: size 'A9' is not one of A3, A4, A5, LETTER, LEGAL",
                     "page: orientation 'sideways' is not landscape or portrait",
                     "element 2: unknown key 'colour'",
                     "element 3: unknown placeholder 'foo'",
                     "element 3: 'color' must be a colour like '#1f3a5f'",
                     "element 4: type 'star' is not one of text, line, rect, image, qr"):
        assert expected in message
    assert TemplateError.exit_code == 2


def test_unknown_template_and_unparsable_file(tmp_path):
    with pytest.raises(TemplateError, match="template 'nope' not found"):
        load_template("nope")
    broken = tmp_path / "broken.toml"
    broken.write_text("[page\nsize = ", encoding="utf-8")
    with pytest.raises(TemplateError, match="cannot be parsed"):
        load_template(broken)


def test_required_fields_and_custom_fields(tmp_path, default):
    assert required_fields(default) == {"firstname", "lastname", "course_name"}
    assert missing_fields(required_fields(default), {"fullname", "course_name"}) == []
    assert missing_fields(required_fields(default), {"firstname"}) == ["course_name"]
    custom = tmp_path / "custom.json"
    custom.write_text("""{"page": {"size": "A5", "orientation": "portrait"},
        "fields": {"instructor": {}, "hours": {"default": "8"}},
        "element": [{"text": "{fullname} with {instructor}, {hours} h", "y": 40, "size": 14}]}""", encoding="utf-8")
    template = load_template(custom)
    assert (template.width, template.height) == (148.0, 210.0)
    assert required_fields(template) == {"firstname", "lastname", "instructor"}
    pdf, _ = render(template, {"fullname": "Ana Lima", "instructor": "Dr Ilse Brüning"})
    assert "Ana Lima with Dr Ilse Brüning, 8 h" in pdftotext(pdf)


def test_images_logo_and_background(tmp_path):
    Image.new("RGB", (40, 20), (200, 30, 30)).save(tmp_path / "logo.png")
    Image.new("RGB", (30, 21), (250, 245, 230)).save(tmp_path / "paper.jpg")
    (tmp_path / "branded.toml").write_text("""
        [page]
        background_image = "paper.jpg"
        [[border]]
        inset = 5
        [[element]]
        type = "image"
        image = "logo.png"
        x = 10
        y = 10
        w = 30
        [[element]]
        text = "{fullname}"
        y = 90
        size = 30
        """, encoding="utf-8")
    template = load_template(tmp_path / "branded.toml")
    for name in ("Ana Lima", "Олег Попов"):  # the second document reuses the decoded images
        pdf, _ = render(template, {"fullname": name})
        assert name in pdftotext(pdf)
        listing = subprocess.run(["pdfimages", "-list", "-"], input=pdf, capture_output=True, check=True).stdout
        assert len(listing.decode().splitlines()) == 4  # two header lines, two images


def test_codes_are_readable_unique_and_forgiving():
    codes = {new_code() for _ in range(20000)}
    assert len(codes) == 20000
    assert all(re.fullmatch(r"MANI-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}", c) for c in codes)
    code = "MANI-7K3F-Q9XZ-4M2P"
    assert normalize_code(code) == code
    assert normalize_code("mani 7k3f q9xz 4m2p") == code
    assert normalize_code("7K3FQ9XZ4M2P") == code
    assert normalize_code("MANI-7K3F-Q9XZ-4M2P".replace("0", "O")) == code
    assert normalize_code("MANI-1LI0-0000-0000") == "MANI-1110-0000-0000"
    assert normalize_code("MANI-UUUU-0000-0000") is None
    assert normalize_code("hello") is None


def make_cff_font(path: Path, chars: str) -> Path:
    """A tiny CFF-flavoured OpenType font (a box per character), like Noto CJK's .otf files."""
    from fontTools.fontBuilder import FontBuilder
    from fontTools.pens.t2CharStringPen import T2CharStringPen

    names = [".notdef", "space"] + [f"uni{ord(c):04X}" for c in chars]
    builder = FontBuilder(1000, isTTF=False)
    builder.setupGlyphOrder(names)
    builder.setupCharacterMap({32: "space", **{ord(c): f"uni{ord(c):04X}" for c in chars}})
    outlines = {}
    for name in names:
        pen = T2CharStringPen(600, None)
        if name != "space":
            pen.moveTo((50, 0)), pen.lineTo((550, 0)), pen.lineTo((550, 700)), pen.lineTo((50, 700)), pen.closePath()
        outlines[name] = pen.getCharString()
    builder.setupCFF("BoxesCFF", {"FullName": "Boxes CFF"}, outlines, {})
    builder.setupHorizontalMetrics({name: (600, 50) for name in names})
    builder.setupHorizontalHeader(ascent=800, descent=-200)
    builder.setupNameTable({"familyName": "BoxesCFF", "styleName": "Regular"})
    builder.setupOS2(sTypoAscender=800, usWinAscent=800, usWinDescent=200)
    builder.setupPost()
    builder.save(str(path))
    return path


def test_configured_fallback_fonts_draw_what_no_bundled_font_has(default, tmp_path):
    # A CFF-flavoured OpenType font (like a system Noto CJK): fpdf2's own path embeds it (as
    # fpdf2 does, with a font type poppler warns about but draws).
    font = make_cff_font(tmp_path / "boxes.otf", "𓀀𓁐")
    pdf, _ = render(default, {"fullname": "Ankh 𓀀𓁐", "course_name": "C"}, fallback=[str(font)])
    assert "Ankh 𓀀𓁐" in pdftotext(pdf, quiet=False)
    assert any("BoxesCFF" in row[0] for row in pdffonts(pdf))
