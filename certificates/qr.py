"""QR codes as PDF image masks (one bit per module), encoded by zxing-cpp.

zxing-cpp's C++ encoder makes a symbol in ~0.3 ms; segno, pure Python, took ~2 ms, more than
the rest of a certificate.
"""

from __future__ import annotations

try:
    from zxingcpp import BarcodeFormat, create_barcode
except ImportError:  # the Lambda worker: no zxing-cpp 3 wheel for its manylinux2014 runtime
    create_barcode = None

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


_TO_DIGITS = bytes.maketrans(b"\x00\x01", b"01")


def qr_ops(data: str, *, x: float, y: float, size: float, page_height: float, k: float,
           color: tuple[int, int, int] = (0, 0, 0), error: str = "m") -> str:
    """PDF content operators drawing the symbol in a `size` mm square whose top-left is (x, y) mm.

    The symbol's 4-module quiet zone is inside the square, so `size` is what the template reserves.
    The symbol is one inline image mask, one bit per module, painted in `color`: about 20 µs,
    where a path of one rectangle per run of dark modules took 0.4 ms to write and fpdf2 as long
    again to compress. Viewers do not smooth image masks unless asked (no `/I true`), so modules
    stay sharp at any zoom, and zxing reads the page back (tests/test_certificates_render.py).
    """
    matrix = qr_matrix(data, error=error)
    modules = len(matrix)
    cell = size / (modules + 8) * k
    left = (x + 4 * size / (modules + 8)) * k
    bottom = (page_height - y - 4 * size / (modules + 8)) * k - modules * cell
    padding = -modules % 8  # each row of the mask is padded to whole bytes
    row_bytes = (modules + padding) // 8
    rows = b"".join((int(row.translate(_TO_DIGITS), 2) << padding).to_bytes(row_bytes, "big") for row in matrix)
    r, g, b = (c / 255 for c in color)
    side = modules * cell
    # /D [1 0]: a 1 bit (a dark module) is painted. /F /AHx keeps the content stream text.
    return (f"q {r:.3f} {g:.3f} {b:.3f} rg {side:.4f} 0 0 {side:.4f} {left:.3f} {bottom:.3f} cm\n"
            f"BI /W {modules} /H {modules} /IM true /BPC 1 /D [1 0] /F /AHx ID\n{rows.hex()}>\nEI Q")
