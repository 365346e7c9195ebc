"""QR codes as vector PDF paths (one rectangle per run of dark modules), via segno."""

from __future__ import annotations

import re
from functools import lru_cache

import segno

_DARK_RUN = re.compile(rb"\x01+")

# Evaluating all 8 masks costs ~2 ms per code in segno; any mask is a valid symbol and
# decoders read all of them, so a fixed one keeps a certificate under the time budget.
DEFAULT_MASK = 0


def qr_matrix(data: str, *, error: str = "m", mask: int | None = DEFAULT_MASK) -> list[bytearray]:
    return [bytearray(row) for row in segno.make(data, error=error, mask=mask, micro=False).matrix]


@lru_cache(maxsize=64)
def _grid(modules: int, x: float, y: float, size: float, page_height: float, k: float):
    """Formatted coordinates for a symbol of `modules` modules: x of each column, y of each row, run widths."""
    cell = size / (modules + 8) * k
    left = (x + 4 * size / (modules + 8)) * k
    top = (page_height - y - 4 * size / (modules + 8)) * k
    xs = [f"{left + col * cell:.3f}" for col in range(modules)]
    ys = [f"{top - (row + 1) * cell:.3f}" for row in range(modules)]
    widths = [f"{run * cell:.3f}" for run in range(modules + 1)]
    return xs, ys, widths, f"{cell:.3f}"


def qr_ops(data: str, *, x: float, y: float, size: float, page_height: float, k: float,
           color: tuple[int, int, int] = (0, 0, 0), error: str = "m", mask: int | None = DEFAULT_MASK) -> str:
    """PDF content operators drawing the symbol in a `size` mm square whose top-left is (x, y) mm.

    The symbol's 4-module quiet zone is inside the square, so `size` is what the template reserves.
    """
    matrix = qr_matrix(data, error=error, mask=mask)
    xs, ys, widths, height = _grid(len(matrix), x, y, size, page_height, k)
    rects = []
    for row_index, row in enumerate(matrix):
        bottom = ys[row_index]
        for run in _DARK_RUN.finditer(row):
            start, end = run.span()
            rects.append(f"{xs[start]} {bottom} {widths[end - start]} {height} re")
    r, g, b = (c / 255 for c in color)
    # Rectangles of adjacent rows touch exactly; no anti-aliasing seams in common viewers.
    return f"q {r:.3f} {g:.3f} {b:.3f} rg\n" + "\n".join(rects) + "\nf Q"
