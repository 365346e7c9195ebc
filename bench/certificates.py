"""Certificates per second per core: mani's renderer, naive fpdf2, and fpdf2 core fonts.

    /work/venv/bin/python bench/certificates.py [--count 2000] [--naive-count 50]

All three draw the same default template (same layout, same QR code) in this one process,
so the differences are the font handling:
- mani: font files parsed once per process, each PDF embeds its own subset (fast subsetter);
- naive: a new FPDF and `add_font` for every font, per certificate (fpdf2's documented way),
  once with the template's three DejaVu faces, once adding the CJK fallback font as well
  (what a naive renderer that must draw every script would do);
- core: fpdf2's built-in Times/Helvetica (no embedding; Latin-1 only, so ASCII names).
CPU seconds (time.process_time) are the divisor: the figures are per core.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
import unicodedata
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import certificates.renderer as renderer_module  # noqa: E402
from certificates import get_renderer, load_template, new_code, prepare_values  # noqa: E402
from certificates.template import LineElement, QRElement, RectElement, TextElement  # noqa: E402

FALLBACK = "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf"
FIRST = ["Zoë", "François", "Łukasz", "Ångström", "Jürgen", "Dmitri", "Дмитрий", "Анастасия", "Ёлка", "Αριστοτέλης",
         "Ελένη", "Şebnem", "Ðorđe", "Žofie", "Íñigo", "Mảria"]
LAST = ["Kovačević", "Lefèvre-Øberg", "Żółć", "Müller-Lüdenscheidt", "Шостакович", "Иванова", "Παπαδόπουλος",
        "Γεωργίου", "Çelik", "Nuñez", "Dvořák", "Ólafsdóttir"]
COURSES = ["Workplace Health & Safety", "Охрана труда", "Ασφάλεια στην Εργασία", "Première année"]
NOW = datetime(2025, 6, 1, tzinfo=timezone.utc)


def people(count: int) -> list[dict]:
    return [{"firstname": FIRST[i % len(FIRST)], "lastname": LAST[(i * 7) % len(LAST)],
             "course_name": COURSES[i % len(COURSES)], "grade": f"{60 + i % 40}%"} for i in range(count)]


def values_for(template, person: dict) -> dict:
    code = new_code()
    return prepare_values(template, person, code=code, verify_url=f"https://certs.example.org/verify/{code}",
                          issued_at=NOW)


def timed(label: str, count: int, make) -> tuple[float, int]:
    start_cpu, start_wall = time.process_time(), time.perf_counter()
    size = 0
    for index in range(count):
        size += len(make(index))
    cpu, wall = time.process_time() - start_cpu, time.perf_counter() - start_wall
    rate = count / cpu
    print(f"  {label:44} {count:6} certs  {cpu:7.2f} s cpu  {wall:7.2f} s wall  {rate:8.1f} certs/s/core"
          f"  {size / count / 1024:6.1f} KiB/pdf")
    return rate, size


@contextmanager
def naive_fonts(extra_fonts: list[str]):
    """Swap mani's cached fonts for fpdf2's add_font + standard output, per document."""
    saved = renderer_module.use_face, renderer_module.output_pdf

    def use_face(pdf, family, style, face):
        if f"{family.lower()}{style}" not in pdf.fonts:
            pdf.add_font(family, style, str(face.path))
            for index, path in enumerate(extra_fonts):  # loaded whether or not the name needs it
                if f"extra{index}" not in pdf.fonts:
                    pdf.add_font(f"extra{index}", "", path)

    renderer_module.use_face = use_face
    renderer_module.output_pdf = lambda pdf: bytes(pdf.output())
    try:
        yield
    finally:
        renderer_module.use_face, renderer_module.output_pdf = saved


def core_font_pdf(template, values: dict) -> bytes:
    """The same layout with fpdf2's core fonts (Latin-1 text only)."""
    from fpdf import FPDF

    from certificates.qr import qr_ops

    pdf = FPDF(orientation="L", unit="mm", format="A4")
    pdf.set_auto_page_break(False)
    pdf.set_margin(0)
    pdf.add_page()
    pdf.set_fill_color(*template.background)
    pdf.rect(0, 0, template.width, template.height, style="F")
    for element in template.elements:
        if isinstance(element, RectElement):
            pdf.set_draw_color(*element.color)
            pdf.set_line_width(element.width)
            pdf.rect(element.x, element.y, element.w, element.h)
        elif isinstance(element, LineElement):
            pdf.set_draw_color(*element.color)
            pdf.set_line_width(element.width)
            pdf.line(element.x1, element.y1, element.x2, element.y2)
        elif isinstance(element, TextElement):
            text = element.text.render(values)
            if not text or ("{grade}" in element.text.source and not values.get("grade")):
                continue
            pdf.set_font("Times" if element.font == "serif" else "Helvetica", element.style, element.size)
            pdf.set_text_color(*element.color)
            pdf.set_xy(element.x, element.y)
            pdf.cell(element.w, element.h, text.upper() if element.upper else text, align=element.align)
        elif isinstance(element, QRElement):
            pdf._out(qr_ops(element.data.render(values), x=element.x, y=element.y, size=element.size,  # noqa: SLF001
                            page_height=template.height, k=pdf.k, color=element.color))
    return bytes(pdf.output())


def ascii_only(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode() or "Ana Lima"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000, help="certificates for mani and core fonts")
    parser.add_argument("--naive-count", type=int, default=50, help="certificates for the naive way (slow)")
    args = parser.parse_args()

    template = load_template("default")
    fallback = [FALLBACK] if Path(FALLBACK).is_file() else []
    crowd = people(args.count)
    print(f"default template, {len(template.fonts)} font faces; names mix Latin accents, Cyrillic and Greek")

    start = time.process_time()
    renderer = get_renderer(template, fallback_fonts=fallback)
    renderer.render(values_for(template, crowd[0]))
    print(f"  one-off per process: parse fonts and first render {time.process_time() - start:.3f} s cpu")
    prepared = [values_for(template, person) for person in crowd]
    mani, _ = timed("mani renderer (fonts cached per process)", args.count, lambda i: renderer.render(prepared[i]))

    naive_renderer = renderer_module.Renderer(template, fallback_fonts=fallback)
    with naive_fonts([]):
        naive, _ = timed("naive fpdf2 (add_font per certificate)", args.naive_count,
                         lambda i: naive_renderer.render(prepared[i]))
    naive_fallback = None
    if fallback:
        with naive_fonts(fallback):
            naive_fallback, _ = timed("naive fpdf2 + CJK fallback font per cert", max(5, args.naive_count // 4),
                                      lambda i: naive_renderer.render(prepared[i]))

    latin = [{**v, "fullname": ascii_only(v["fullname"]), "course_name": ascii_only(v["course_name"])} for v in prepared]
    core, _ = timed("fpdf2 core fonts (reference, ASCII names)", args.count, lambda i: core_font_pdf(template, latin[i]))

    print()
    print(f"  mani / naive                    {mani / naive:8.1f}x")
    if naive_fallback:
        print(f"  mani / naive with fallback font {mani / naive_fallback:8.1f}x")
    print(f"  mani / core fonts               {mani / core:8.2f}x")
    print(f"  target: >= 150 Unicode certs/s/core -> {'met' if mani >= 150 else 'NOT met'} ({mani:.0f})")

    if shutil.which("pdftotext"):  # the speed is worth nothing if the text is wrong
        sample = prepared[: min(40, args.count)]
        for values in sample:
            text = subprocess.run(["pdftotext", "-", "-"], input=renderer.render(values), capture_output=True,
                                  check=True).stdout.decode()
            assert values["fullname"] in text and values["code"] in text, values["fullname"]
        print(f"  pdftotext found the exact name and code in {len(sample)} sampled certificates")


if __name__ == "__main__":
    main()
