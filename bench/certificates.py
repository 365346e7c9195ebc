"""Certificates per second: mani's renderer, fpdf2's core fonts and naive fpdf2, per script; and a job.

    .venv/bin/python bench/certificates.py [--count 1000] [--naive-count 8] [--job 600] [--profile]

Renderer rates (CPU seconds, so per core), each drawing the default template with its QR code:
- mani: `Renderer.render_batch`, Noto fonts parsed once per process, HarfBuzz shaping, fonts
  subset once per batch document, each PDF assembled from it with pikepdf (fonts embedded);
- core: fpdf2's built-in Times/Helvetica, no embedding, ASCII names (all it can draw), cell();
- naive: fpdf2 as its documentation shows it: a new FPDF, `add_font` for every face the
  certificate needs, `set_text_shaping`, `set_fallback_fonts`, cell(), output().
Targets: mani >= 2x core on the same template, for the Latin/Greek/Cyrillic names.

End to end (wall clock, this process): `mani submit --type certificate --wait` of a 600-row CSV
of Greek names on the embedded default (SQLite, outbox, local storage, render processes), after
a 10-row job has warmed the process; against a plain one-font fpdf2 loop (new document,
`add_font`, three cells, output) in this same process. Target: >= 20x.
"""

from __future__ import annotations

import argparse
import cProfile
import csv
import io
import os
import pstats
import subprocess
import sys
import tempfile
import time
import unicodedata
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from certificates import RenderItem, Renderer, load_template, new_code, prepare_values  # noqa: E402
from certificates.faces import FONTS_DIR, family_file  # noqa: E402
from certificates.qr import qr_ops  # noqa: E402
from certificates.template import LineElement, QRElement, RectElement, TextElement  # noqa: E402

FIRST = ["Zoë", "François", "Łukasz", "Ångström", "Jürgen", "Dmitri", "Дмитрий", "Анастасия", "Ёлка", "Αριστοτέλης",
         "Ελένη", "Şebnem", "Ðorđe", "Žofie", "Íñigo", "Mảria"]
LAST = ["Kovačević", "Lefèvre-Øberg", "Żółć", "Müller-Lüdenscheidt", "Шостакович", "Иванова", "Παπαδόπουλος",
        "Γεωργίου", "Çelik", "Nuñez", "Dvořák", "Ólafsdóttir"]
SCRIPTS = {
    "Arabic": ["محمد علي", "فاطمة الزهراء", "عبد الله الأحمد", "نور الهدى", "خالد العتيبي"],
    "Hebrew": ["דוד לוי", "שרה כהן", "יוסף מזרחי", "Dr. מרים אברהם"],
    "Devanagari": ["प्रिया शर्मा", "राहुल वर्मा", "अनीता देशपांडे", "विक्रम सिंह"],
    "Bengali": ["অমিত রায়", "সুমিত্রা দাস", "রবীন্দ্র ঠাকুর"],
    "Tamil": ["தமிழ் செல்வி", "அருண் குமார்", "கார்த்திக் ராஜா"],
    "Thai": ["สมชาย ใจดี", "มาลี ศรีสุข", "ประยุทธ์ จันทร์"],
    "CJK": ["山田 太郎", "李小龍", "김민준", "佐藤 花子", "王伟", "陳美玲"],
}
COURSES = ["Workplace Health & Safety", "Охрана труда", "Ασφάλεια στην Εργασία", "Première année"]
NOW = datetime(2025, 6, 1, tzinfo=timezone.utc)


def people(count: int, names: list[str] | None = None) -> list[dict]:
    if names is None:
        return [{"firstname": FIRST[i % len(FIRST)], "lastname": LAST[(i * 7) % len(LAST)],
                 "course_name": COURSES[i % len(COURSES)], "grade": f"{60 + i % 40}%"} for i in range(count)]
    return [{"fullname": names[i % len(names)], "course_name": COURSES[i % len(COURSES)], "grade": f"{60 + i % 40}%"}
            for i in range(count)]


def values_for(template, person: dict) -> dict:
    code = new_code()
    return prepare_values(template, person, code=code, verify_url=f"https://certs.example.org/verify/{code}",
                          issued_at=NOW)


def rate(count: int, make) -> tuple[float, float, int]:
    """(certificates per CPU second, CPU seconds, total bytes)."""
    start = time.process_time()
    size = make()
    cpu = time.process_time() - start
    return count / cpu, cpu, size


def draw_template(pdf, template, values: dict, font_for) -> None:
    """The default template with fpdf2's cell(): what a plain fpdf2 program does."""
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
            if not text or ("{grade}" in element.text.source and not values.get("grade")) \
                    or ("{expiry_date}" in element.text.source and not values.get("expiry_date")):
                continue
            pdf.set_font(*font_for(element), element.size)
            pdf.set_text_color(*element.color)
            pdf.set_xy(element.x, element.y)
            pdf.cell(element.w, element.h, text.upper() if element.upper else text, align=element.align)
        elif isinstance(element, QRElement):
            pdf._out(qr_ops(element.data.render(values), x=element.x, y=element.y, size=element.size,  # noqa: SLF001
                            page_height=template.height, k=pdf.k, color=element.color))


def core_font_pdf(template, values: dict) -> bytes:
    from fpdf import FPDF

    pdf = FPDF(orientation="L", unit="mm", format="A4")
    draw_template(pdf, template, values, lambda e: ("Times" if e.font == "serif" else "Helvetica", e.style))
    return bytes(pdf.output())


def naive_pdf(template, values: dict, renderer: Renderer) -> bytes:
    """fpdf2's documented way for Unicode: add_font per document, shaping, fallback fonts."""
    from fpdf import FPDF

    pdf = FPDF(orientation="L", unit="mm", format="A4")
    for family, style in sorted(template.fonts):
        pdf.add_font(family, style, str(family_file(family, style)))
    plan = renderer.plan(values)
    fallbacks = []
    for chain_face in {cf for coverage in plan.values() if coverage for cf in coverage.faces}:
        family = f"fb{chain_face.key}"
        pdf.add_font(family, "B" if chain_face.bold else "", str(chain_face.path))
        fallbacks.append(family)
    if fallbacks:
        pdf.set_fallback_fonts(sorted(set(fallbacks)), exact_match=False)
    pdf.set_text_shaping(True)
    draw_template(pdf, template, values, lambda e: (e.font, e.style))
    return bytes(pdf.output())


def ascii_only(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().strip() or "Ana Lima"


def renderer_rates(template, args) -> None:
    renderer = Renderer(template)
    start = time.process_time()
    renderer.render_batch([RenderItem(values_for(template, p)) for p in people(5)])
    print(f"one-off per process: parse the fonts, first batch {time.process_time() - start:.2f} s cpu\n")
    latin = [values_for(template, p) for p in people(args.count)]
    ascii_values = [{**v, "fullname": ascii_only(v["fullname"]), "course_name": ascii_only(v["course_name"])}
                    for v in latin]
    core, core_cpu, core_size = rate(len(ascii_values), lambda: sum(len(core_font_pdf(template, v)) for v in ascii_values))
    print(f"{'script':22} {'mani /s/core':>12} {'core fonts':>11} {'naive':>8} {'mani/core':>10} {'mani/naive':>11}"
          f" {'KiB/pdf':>8}")
    rows = [("Latin/Greek/Cyrillic", latin)]
    rows += [(script, [values_for(template, p) for p in people(max(args.count // 4, 50), names)])
             for script, names in SCRIPTS.items()]
    summary = {}
    for script, values in rows:
        items = [RenderItem(v) for v in values]
        mani, _, size = rate(len(items), lambda: sum(len(pdf) for pdf in renderer.render_batch(items)))
        sample = values[: args.naive_count]
        naive, _, _ = rate(len(sample), lambda: sum(len(naive_pdf(template, v, renderer)) for v in sample))
        summary[script] = mani
        print(f"{script:22} {mani:12.1f} {core:11.1f} {naive:8.1f} {mani / core:9.2f}x {mani / naive:10.1f}x"
              f" {size / len(items) / 1024:8.1f}")
    print(f"\n(core fonts: {core_size / len(ascii_values) / 1024:.1f} KiB/pdf, ASCII names, nothing embedded)")
    ratio = summary["Latin/Greek/Cyrillic"] / core
    print(f"target: mani >= 2x core fonts on the same template -> {'met' if ratio >= 2 else 'NOT met'} ({ratio:.2f}x)")
    check_text(template, renderer, latin[:20] + rows[1][1][:5] + rows[-1][1][:5])
    if args.profile:
        profile = cProfile.Profile()
        items = [RenderItem(v) for v in latin[:400]]
        profile.runcall(renderer.render_batch, items)
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats("cumulative").print_stats(25)
        print("\nprofile of mani's renderer, 400 Latin/Greek/Cyrillic certificates (cumulative):")
        print("\n".join(out.getvalue().splitlines()[6:40]))


def check_text(template, renderer, values: list[dict]) -> None:
    """The speed is worth nothing if the text is wrong: poppler must read every name and code."""
    for pdf, v in zip(renderer.render_batch([RenderItem(v) for v in values]), values):
        text = subprocess.run(["pdftotext", "-", "-"], input=pdf, capture_output=True, check=True).stdout.decode()
        assert v["fullname"] in unicodedata.normalize("NFKC", text).replace("\u202b", "").replace("\u202c", ""), \
            v["fullname"]
        assert v["code"] in text
    print(f"pdftotext read the exact name and code back from {len(values)} certificates")


def plain_loop_rate(count: int) -> float:
    """A plain one-font fpdf2 loop: new document, add_font, three cells, output (wall clock)."""
    from fpdf import FPDF

    font = str(FONTS_DIR / "NotoSerif-Bold.ttf")
    start = time.perf_counter()
    for index in range(count):
        pdf = FPDF(orientation="L", unit="mm", format="A4")
        pdf.add_page()
        pdf.add_font("serif", "B", font)
        pdf.set_font("serif", "B", 24)
        pdf.cell(0, 20, f"Αριστοτέλης Παπαδόπουλος {index}", new_x="LMARGIN", new_y="NEXT")
        pdf.cell(0, 20, "Ασφάλεια στην Εργασία", new_x="LMARGIN", new_y="NEXT")
        pdf.cell(0, 20, new_code())
        pdf.output()
    return count / (time.perf_counter() - start)


def job_rates(count: int) -> None:
    from typer.testing import CliRunner

    scratch = Path(tempfile.mkdtemp(prefix="mani-bench-"))
    os.environ.update(MANI_DATA_DIR=str(scratch / "data"), MANI_CONFIG=str(scratch / "none.toml"))
    from backend.core.settings import reset_settings_cache

    reset_settings_cache()
    import cli

    def job(rows: int, tag: str) -> float:
        path = scratch / f"{tag}.csv"
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["email", "firstname", "lastname"])
            for index in range(rows):
                writer.writerow([f"{tag}{index}@example.com", ["Αριστοτέλης", "Ελένη", "Γιώργος"][index % 3],
                                 f"Παπαδόπουλος {index}"])
        start = time.perf_counter()
        result = CliRunner().invoke(cli.app, ["submit", "--csv", str(path), "--type", "certificate",
                                              "--data", "course_name=Ασφάλεια στην Εργασία", "--wait"])
        elapsed = time.perf_counter() - start
        assert result.exit_code == 0 and f"{rows:,} sent, 0 failed" in result.output, result.output
        return elapsed

    job(10, "warm")
    elapsed = job(count, "job")
    job_rate = count / elapsed
    plain = plain_loop_rate(30)
    from certificates.pool import configured_processes

    print(f"\n{count}-certificate job, submit --wait, embedded default, {configured_processes()} render processes:"
          f" {elapsed:.2f} s, {job_rate:.0f} certificates/s")
    print(f"plain one-font fpdf2 loop in this process: {plain:.1f} certificates/s")
    print(f"target: job >= 20x the plain loop -> {'met' if job_rate >= 20 * plain else 'NOT met'}"
          f" ({job_rate / plain:.1f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000, help="Latin/Greek/Cyrillic certificates (a quarter per other script)")
    parser.add_argument("--naive-count", type=int, default=8, help="certificates for naive fpdf2 per script (slow)")
    parser.add_argument("--job", type=int, default=600, help="rows of the end-to-end job (0: skip it)")
    parser.add_argument("--profile", action="store_true", help="print a cProfile summary of mani's renderer")
    args = parser.parse_args()
    template = load_template("default")
    print(f"default template, {len(template.fonts)} font faces, {os.cpu_count()} cores\n")
    renderer_rates(template, args)
    if args.job:
        job_rates(args.job)


if __name__ == "__main__":
    main()
