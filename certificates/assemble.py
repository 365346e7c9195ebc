"""One PDF per recipient, assembled with pikepdf from a batch document's pre-built objects.

The renderer draws a batch as one fpdf2 document: page 1 is the template's fixed layer, each
further page one recipient's variable text and QR code, starting with `FIXED_LAYER_OPERATORS`
(draw the XObject named FIXED_LAYER). Every font is subset once for the batch. Here page 1
becomes that shared Form XObject, and each recipient's page a document of its own; qpdf copies
the (already compressed) fonts and streams as they are. No PDF syntax is written by hand.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import logging

logging.getLogger("pikepdf._core").setLevel(logging.WARNING)  # its start-up line is noise in the CLI

import pikepdf  # noqa: E402
from pikepdf.models.metadata import encode_pdf_date  # noqa: E402

PRODUCER = f"mani (fpdf2, pikepdf {pikepdf.__version__})"
FIXED_LAYER = "/ManiFixedLayer"
FIXED_LAYER_OPERATORS = f"q {FIXED_LAYER} Do Q"


@dataclass(frozen=True)
class Metadata:
    title: str
    created_at: datetime | None = None


def split_batch(batch_pdf: bytes, metadata: Sequence[Metadata]) -> list[bytes]:
    """Page 1 of `batch_pdf` under each later page, each written as a complete PDF."""
    documents: list[bytes] = []
    with pikepdf.open(io.BytesIO(batch_pdf)) as batch:
        if len(batch.pages) != len(metadata) + 1:
            raise ValueError(f"batch document has {len(batch.pages)} pages for {len(metadata)} certificates")
        fixed_layer = batch.make_indirect(batch.pages[0].as_form_xobject())
        # qpdf makes the XObject's data on demand from the page's streams; make it once, compressed.
        fixed_layer.write(zlib.compress(fixed_layer.read_bytes()), filter=pikepdf.Name.FlateDecode)
        for page, meta in zip(batch.pages[1:], metadata):
            resources = page.obj.Resources
            if "/XObject" not in resources:
                resources.XObject = pikepdf.Dictionary()
            resources.XObject[FIXED_LAYER] = fixed_layer
            single = pikepdf.new()
            single.pages.append(page)
            info = {"/Title": pikepdf.String(meta.title), "/Creator": pikepdf.String("mani"),
                    "/Producer": pikepdf.String(PRODUCER)}
            if meta.created_at is not None:
                info["/CreationDate"] = pikepdf.String(encode_pdf_date(meta.created_at))
            single.docinfo = single.make_indirect(pikepdf.Dictionary(info))
            out = io.BytesIO()
            # The streams are already Flate-compressed by fpdf2: copy them, never re-encode. The
            # small dictionaries go into one object stream (PDF 1.5): smaller, and qpdf is faster.
            single.save(out, compress_streams=False, stream_decode_level=pikepdf.StreamDecodeLevel.none,
                        object_stream_mode=pikepdf.ObjectStreamMode.generate, fix_metadata_version=False)
            documents.append(out.getvalue())
    return documents
