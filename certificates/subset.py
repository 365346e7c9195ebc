"""A small, fast TrueType subsetter for the glyphs one certificate uses.

fontTools' subsetter is thorough and slow (it decompiles glyf, post, GSUB... for every
document). A certificate needs a few dozen glyphs of a font whose tables were read once per
process, so this module copies their raw glyf bytes into a fresh font whose glyph ids *are*
the CIDs fpdf2 assigned: the PDF then uses `/CIDToGIDMap /Identity` and no 128 KiB map.
Composite glyphs (accented letters, Arabic letters with their dots) pull their components in,
renumbered.
"""

from __future__ import annotations

import struct
import sys
from array import array

from fontTools.ttLib import newTable

# Tables copied as they are: hinting programs and metrics headers the glyphs rely on.
_STATIC = ("OS/2", "cvt ", "fpgm", "prep", "gasp")

_ARG_WORDS, _HAVE_SCALE, _MORE, _XY_SCALE, _TWO_BY_TWO = 0x1, 0x8, 0x20, 0x40, 0x80
_LITTLE = sys.byteorder == "little"


def prepare_face(face, font) -> None:
    """Read the raw tables of a glyf-flavoured TTFont into `face` (once per process)."""
    reader = font.reader
    face.glyf = bytes(reader["glyf"])
    raw_loca = bytes(reader["loca"])
    if font["head"].indexToLocFormat == 0:
        short = array("H", raw_loca)
        if _LITTLE:
            short.byteswap()
        face.loca = array("I", (offset * 2 for offset in short))
    else:
        face.loca = array("I", raw_loca)
        if _LITTLE:
            face.loca.byteswap()
    metrics = font["hmtx"].metrics
    face.hmetrics = [metrics[name] for name in font.getGlyphOrder()]
    tables = {tag: bytes(reader[tag]) for tag in _STATIC if tag in reader}
    tables["head"] = bytes(reader["head"])
    tables["hhea"] = bytes(reader["hhea"])
    tables["maxp"] = bytes(reader["maxp"])
    tables["post"] = struct.pack(">I", 0x00030000) + bytes(reader["post"])[4:32]
    # Only the naming records a viewer may show; the full table carries the licence text.
    name = newTable("name")
    name.names = [n for n in font["name"].names if n.nameID in (1, 2, 3, 4, 5, 6) and n.platformID == 3]
    tables["name"] = name.compile(font)
    face.tables = tables
    face.checksums = {tag: _checksum(data) for tag, data in tables.items()}


def _components(face, gid: int) -> list[tuple[int, int]]:
    """(byte offset of the glyph index, component gid) for a composite glyph; [] otherwise."""
    cached = face.composites.get(gid)
    if cached is not None:
        return cached
    start, end = face.loca[gid], face.loca[gid + 1]
    found: list[tuple[int, int]] = []
    if end - start >= 10 and struct.unpack_from(">h", face.glyf, start)[0] < 0:
        offset = 10
        while True:
            flags, component = struct.unpack_from(">HH", face.glyf, start + offset)
            found.append((offset + 2, component))
            offset += 4 + (4 if flags & _ARG_WORDS else 2)
            if flags & _HAVE_SCALE:
                offset += 2
            elif flags & _XY_SCALE:
                offset += 4
            elif flags & _TWO_BY_TWO:
                offset += 8
            if not flags & _MORE:
                break
    face.composites[gid] = found
    return found


def _checksum(data: bytes) -> int:
    if len(data) % 4:
        data += b"\0" * (4 - len(data) % 4)
    words = array("I", data)
    if _LITTLE:
        words.byteswap()
    return sum(words) & 0xFFFFFFFF


def _cmap(cid_to_unicode: dict[int, int]) -> bytes:
    """A (3,1) format 4 cmap, one segment per character: unicode -> glyph id (= CID)."""
    first: dict[int, int] = {}
    for cid, uni in sorted(cid_to_unicode.items()):
        if 0 < uni < 0xFFFF:
            first.setdefault(uni, cid)  # one glyph per character in a cmap
    pairs = sorted(first.items())
    ends = [uni for uni, _ in pairs] + [0xFFFF]
    deltas = [(cid - uni) & 0xFFFF for uni, cid in pairs] + [1]
    count = len(ends)
    power = 1 << (count.bit_length() - 1)
    body = struct.pack(
        f">HHHH{count}HH{count}H{count}H{count}H",
        count * 2, power * 2, power.bit_length() - 1, count * 2 - power * 2,
        *ends, 0, *ends, *deltas, *([0] * count),
    )
    subtable = struct.pack(">HHH", 4, 6 + len(body), 0) + body
    return struct.pack(">HHHHI", 0, 1, 3, 1, 12) + subtable


def build_subset(face, cid_to_gid: dict[int, int], cid_to_unicode: dict[int, int]) -> bytes:
    """A complete TrueType font holding exactly the glyphs of `cid_to_gid`, glyph id = CID."""
    order: list[int | None] = [None] * (max(cid_to_gid, default=0) + 1)
    order[0] = 0  # CID 0 is always .notdef
    new_id: dict[int, int] = {0: 0}
    for cid, gid in cid_to_gid.items():
        if cid:
            order[cid] = gid
            new_id.setdefault(gid, cid)
    index = 0
    while index < len(order):  # pull in composite components, appended after the CIDs
        gid = order[index]
        if gid is not None:
            for _, component in _components(face, gid):
                if component not in new_id:
                    new_id[component] = len(order)
                    order.append(component)
        index += 1

    glyf, loca = bytearray(), array("I")
    hmtx = []
    src, offsets, metrics = face.glyf, face.loca, face.hmetrics
    for gid in order:
        loca.append(len(glyf))
        if gid is None:
            hmtx += (0, 0)
            continue
        data = src[offsets[gid] : offsets[gid + 1]]
        parts = _components(face, gid)
        if parts:
            data = bytearray(data)
            for offset, component in parts:
                struct.pack_into(">H", data, offset, new_id[component])
        glyf += data
        if len(glyf) % 4:
            glyf += b"\0" * (4 - len(glyf) % 4)
        hmtx += metrics[gid]
    loca.append(len(glyf))
    if _LITTLE:
        loca.byteswap()

    count = len(order)
    head = bytearray(face.tables["head"])
    head[8:12] = b"\0\0\0\0"
    head[50:52] = b"\0\1"  # long loca offsets
    hhea = bytearray(face.tables["hhea"])
    hhea[34:36] = struct.pack(">H", count)
    maxp = bytearray(face.tables["maxp"])
    maxp[4:6] = struct.pack(">H", count)
    tables = {tag: face.tables[tag] for tag in _STATIC if tag in face.tables}
    tables.update(
        head=bytes(head), hhea=bytes(hhea), maxp=bytes(maxp), post=face.tables["post"], name=face.tables["name"],
        cmap=_cmap(cid_to_unicode), glyf=bytes(glyf), loca=loca.tobytes(),
        hmtx=struct.pack(">" + "Hh" * count, *hmtx),
    )
    return _assemble(tables, face.checksums, face.tables)


def _assemble(tables: dict[str, bytes], static: dict[str, int], originals: dict[str, bytes]) -> bytes:
    """An sfnt file from its tables; checksums of unchanged tables come precomputed."""
    tags = sorted(tables)
    count = len(tags)
    power = 1 << (count.bit_length() - 1)
    header = struct.pack(">IHHHH", 0x00010000, count, power * 16, power.bit_length() - 1, count * 16 - power * 16)
    directory, body = [], []
    offset = 12 + 16 * count
    head_offset = total = 0
    for tag in tags:
        data = tables[tag]
        if tag == "head":
            head_offset = offset
        checksum = static[tag] if data is originals.get(tag) else _checksum(data)
        total += checksum
        directory.append(struct.pack(">4sIII", tag.encode("latin-1"), checksum, offset, len(data)))
        body.append(data + b"\0" * (-len(data) % 4))
        offset += len(body[-1])
    prefix = header + b"".join(directory)
    # The whole-file checksum is the sum of the directory's words and every (padded) table's.
    adjustment = (0xB1B0AFBA - _checksum(prefix) - total) & 0xFFFFFFFF
    font = bytearray(prefix + b"".join(body))
    struct.pack_into(">I", font, head_offset + 8, adjustment)
    return bytes(font)
