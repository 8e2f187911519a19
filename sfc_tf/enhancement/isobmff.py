"""The few ISOBMFF (ISO/IEC 14496-12) boxes of a still-image HEIF file (AVIF, HEIC): reading a file's primary item
and its properties, writing boxes.

A HEIF image file is ``ftyp`` + ``meta`` (handler, primary item, item locations, item info, item properties) +
``mdat`` (the coded data). The image codec's own bitstream is the primary item's data (located by ``iloc``) plus
the decoder configuration among its properties (``av1C``, ``hvcC``); everything else is container.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Iterator

from sfc_tf.errors import BitstreamError

CONTAINER_BOXES = ("meta", "iprp", "ipco", "dinf")  # boxes whose payload is a sequence of boxes
FULL_BOXES = ("meta",)  # ... after 4 bytes of version and flags


def box(kind: str, payload: bytes) -> bytes:
    """One box: 32-bit size, 4-character type, payload."""
    return struct.pack(">I4s", 8 + len(payload), kind.encode("ascii")) + payload


def full_box(kind: str, version: int, flags: int, payload: bytes) -> bytes:
    return box(kind, bytes([version]) + flags.to_bytes(3, "big") + payload)


def boxes(data: bytes, start: int = 0, end: int | None = None) -> Iterator[tuple[str, int, int]]:
    """(type, payload start, box end) of each box in ``data[start:end]``; only 32-bit sizes (what small still
    images use), every size checked against the bytes that hold it."""
    end = len(data) if end is None else end
    pos = start
    while pos < end:
        if end - pos < 8:
            raise BitstreamError(f"ISOBMFF: {end - pos} stray bytes at offset {pos}")
        size, kind = struct.unpack_from(">I4s", data, pos)
        if not 8 <= size <= end - pos:
            raise BitstreamError(f"ISOBMFF: box at offset {pos} declares {size} bytes, {end - pos} remain")
        yield kind.decode("latin-1"), pos + 8, pos + size
        pos += size


def children(data: bytes, kind: str, start: int, end: int) -> dict[str, tuple[int, int]]:
    """The child boxes of a container box's payload, by type: (payload start, end)."""
    start += 4 if kind in FULL_BOXES else 0
    return {child: (a, b) for child, a, b in boxes(data, start, end)}


@dataclasses.dataclass(frozen=True)
class PrimaryItem:
    data: bytes  # the primary item's bytes (its extents, joined)
    properties: dict[str, bytes]  # payloads of the item properties in ipco, by type (first of each type)


def _uint(data: bytes, pos: int, size: int) -> int:
    return int.from_bytes(data[pos : pos + size], "big")


def item_extents(iloc: bytes, item_id: int) -> list[tuple[int, int]]:
    """(file offset, length) of each extent of ``item_id`` in an ``iloc`` payload (versions 0-2, file offsets)."""
    version = iloc[0]
    offset_size, length_size, base_size = iloc[4] >> 4, iloc[4] & 15, iloc[5] >> 4
    index_size = iloc[5] & 15 if version else 0
    id_size = 4 if version == 2 else 2
    count, pos = _uint(iloc, 6, id_size), 6 + id_size
    for _ in range(count):
        current = _uint(iloc, pos, id_size)
        pos += id_size + (2 if version else 0) + 2  # construction method (versions 1, 2), data reference index
        base = _uint(iloc, pos, base_size)
        extent_count = _uint(iloc, pos + base_size, 2)
        pos += base_size + 2
        extents = []
        for _ in range(extent_count):
            pos += index_size
            offset, length = _uint(iloc, pos, offset_size), _uint(iloc, pos + offset_size, length_size)
            pos += offset_size + length_size
            extents.append((base + offset, length))
        if current == item_id:
            return extents
    raise BitstreamError(f"ISOBMFF: no location for item {item_id}")


def primary_item(data: bytes) -> PrimaryItem:
    """The primary item of a HEIF file and the properties in its ``ipco`` (enough for files with one image item)."""
    top = {kind: (a, b) for kind, a, b in boxes(data)}
    if "meta" not in top:
        raise BitstreamError("ISOBMFF: no meta box")
    meta = children(data, "meta", *top["meta"])
    pitm = data[meta["pitm"][0] : meta["pitm"][1]]
    item_id = _uint(pitm, 4, 2 if pitm[0] == 0 else 4)
    extents = item_extents(data[meta["iloc"][0] : meta["iloc"][1]], item_id)
    if any(offset + length > len(data) for offset, length in extents):
        raise BitstreamError("ISOBMFF: an item extent lies outside the file")
    item = b"".join(data[offset : offset + length] for offset, length in extents)
    ipco = children(data, "iprp", *meta["iprp"])["ipco"]
    properties: dict[str, bytes] = {}
    for kind, a, b in boxes(data, *ipco):
        properties.setdefault(kind, data[a:b])
    return PrimaryItem(item, properties)
