"""Checks every certificate test shares: qpdf on every PDF rendered, poppler's text and fonts.

`qpdf_checked` (a fixture; certificate test modules use it for every test) wraps the one place
PDFs come out of the renderer, so no certificate a test makes escapes `qpdf --check`.
"""

from __future__ import annotations

import subprocess
import tempfile
import unicodedata
from pathlib import Path

import pytest

# Bidi embedding marks that pdftotext puts around right-to-left runs.
_BIDI_MARKS = dict.fromkeys(map(ord, "\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"))


def qpdf_check(pdf: bytes) -> None:
    """Fail the test unless `qpdf --check` finds the PDF sound (no errors, no warnings)."""
    with tempfile.NamedTemporaryFile(suffix=".pdf") as handle:
        handle.write(pdf)
        handle.flush()
        done = subprocess.run(["qpdf", "--check", handle.name], capture_output=True, text=True)
    if done.returncode != 0 or "No syntax or stream encoding errors" not in done.stdout:
        pytest.fail(f"qpdf --check failed ({done.returncode}): {done.stdout}{done.stderr}")


def pdftotext(pdf: bytes, *, normalise: bool = True, quiet: bool = True) -> str:
    """The PDF's text as poppler reads it; NFKC-normalised and without bidi marks by default.

    `quiet`: poppler must not complain (it does about broken fonts)."""
    done = subprocess.run(["pdftotext", "-", "-"], input=pdf, capture_output=True, check=True)
    if quiet:
        assert done.stderr == b"", done.stderr.decode()
    text = done.stdout.decode("utf-8")
    return unicodedata.normalize("NFKC", text).translate(_BIDI_MARKS) if normalise else text


def pdffonts(pdf: bytes) -> list[list[str]]:
    """pdffonts' rows: name, type..., emb, sub, uni, object, generation."""
    done = subprocess.run(["pdffonts", "-"], input=pdf, capture_output=True, check=True)
    return [line.split() for line in done.stdout.decode().splitlines()[2:]]


def words_with_boxes(pdf: bytes, tmp_path: Path) -> list[tuple[str, float, float, float, float]]:
    """(word, xMin, yMin, xMax, yMax) in points from the top-left, from `pdftotext -bbox`."""
    import html
    import re

    source = tmp_path / "words.pdf"
    source.write_bytes(pdf)
    out = subprocess.run(["pdftotext", "-bbox", str(source), "-"], capture_output=True, check=True).stdout.decode()
    pattern = re.compile(r'<word xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="([\d.]+)">(.*?)</word>')
    return [(html.unescape(m[5]), float(m[1]), float(m[2]), float(m[3]), float(m[4])) for m in pattern.finditer(out)]


@pytest.fixture
def qpdf_checked(monkeypatch) -> list[bytes]:
    """Every PDF the renderer makes during the test goes through `qpdf --check`; the list of them."""
    import certificates.renderer

    original = certificates.renderer.split_batch
    made: list[bytes] = []

    def checked(batch_pdf, metadata):
        documents = original(batch_pdf, metadata)
        for document in documents:
            qpdf_check(document)
        made.extend(documents)
        return documents

    monkeypatch.setattr(certificates.renderer, "split_batch", checked)
    return made
