"""QR codes as vector PDF paths (one rectangle per run of dark modules), encoded by zxing-cpp.

zxing-cpp's C++ encoder makes a symbol in ~0.3 ms; segno, pure Python, took ~2 ms, more than
the rest of a certificate.
"""

from __future__ import annotations

import re
try:
    from zxingcpp import BarcodeFormat, create_barcode
except ImportError:  # the Lambda worker: no zxing-cpp 3 wheel for its manylinux2014 runtime
    create_barcode = None

_DARK_RUN = re.compile(rb"\x01+")
_TO_BITS = bytes.maketrans(bytes(range(256)), b"\x01" + b"\x00" * 255)  # pixel 0 (black) -> 1
_LEVELS = {"l": "L", "m": "M", "q": "Q", "h": "H"}


def qr_matrix(data: str, *, error: str = "m") -> list[bytes]:
    """The symbol's modules, row by row: 1 dark, 0 light (no quiet zone)."""
    if create_barcode is None:
        import segno  # pure Python, ~6x slower; only where zxing-cpp cannot be installed

        return [bytes(row) for row in segno.make(data, error=error, micro=False).matrix]
    symbol = create_barcode(data, BarcodeFormat.QRCode, ec_level=_LEVELS[error.lower()])
    image = symbol.to_image(scale=1, add_quiet_zones=False)
    height, width = image.shape[0], image.shape[1]
    pixels = bytes(image).translate(_TO_BITS)
    return [pixels[row * width : (row + 1) * width] for row in range(height)]


_NUMBERS = [f"{n} " for n in range(200)]  # a symbol has at most 177 modules a side


def qr_ops(data: str, *, x: float, y: float, size: float, page_height: float, k: float,
           color: tuple[int, int, int] = (0, 0, 0), error: str = "m") -> str:
    """PDF content operators drawing the symbol in a `size` mm square whose top-left is (x, y) mm.

    The symbol's 4-module quiet zone is inside the square, so `size` is what the template reserves.
    One `cm` scales a module to 1 unit, so every rectangle is four small integers.
    """
    matrix = qr_matrix(data, error=error)
    modules = len(matrix)
    cell = size / (modules + 8) * k
    left = (x + 4 * size / (modules + 8)) * k
    bottom = (page_height - y - 4 * size / (modules + 8)) * k - modules * cell
    numbers = _NUMBERS
    rects = []
    add = rects.append
    for row_index, row in enumerate(matrix):
        row_y = numbers[modules - 1 - row_index]
        for run in _DARK_RUN.finditer(row):
            start, end = run.span()
            add(numbers[start] + row_y + numbers[end - start] + "1 re")
    r, g, b = (c / 255 for c in color)
    # Rectangles of adjacent rows touch exactly; no anti-aliasing seams in common viewers.
    return (f"q {r:.3f} {g:.3f} {b:.3f} rg {cell:.4f} 0 0 {cell:.4f} {left:.3f} {bottom:.3f} cm\n"
            + "\n".join(rects) + "\nf Q")
