"""AV1 still images (libavif with libaom, through imagecodecs): libavif quality 0..99 as the rate knob, speed 6,
8-bit 4:4:4.

The payload is the AV1 frame OBU's content: everything of the AVIF file a decoder can rebuild is left out, namely
the ISOBMFF boxes (275 bytes for a 160x160 crop), the temporal delimiter, the sequence header (fixed by the crop
geometry and these settings) and the frame OBU's header (its type and size). ``rebuild`` puts them back around
the payload, giving the AVIF libavif wrote.
"""

from __future__ import annotations

from sfc_tf import bitstream
from sfc_tf.enhancement import isobmff
from sfc_tf.enhancement.headerless import HeaderlessCodec
from sfc_tf.errors import SfcError

SPEED = 6
PIXEL_FORMAT = "yuv444"
QUALITY_RANGE = (0, 99)  # 100 is libavif's lossless mode, another colour set-up
TEMPORAL_DELIMITER = b"\x12\x00"
# The sequence header OBU libaom writes for a 160x160 8-bit 4:4:4 still picture (reduced still-picture header).
SEQUENCE_HEADER = bytes.fromhex("0a06381de7e7d824")
FRAME_OBU = 0x32  # obu_type 6 (frame), obu_has_size_field
SIDE = 160


def avif_file(item: bytes) -> bytes:
    """The AVIF file libavif writes around the AV1 item data of a 160x160 8-bit 4:4:4 image."""
    box, full = isobmff.box, isobmff.full_box
    ftyp = box("ftyp", b"avif" + bytes(4) + b"avifmif1miafMA1A")
    properties = box(
        "ipco",
        full("ispe", 0, 0, SIDE.to_bytes(4, "big") * 2)
        + full("pixi", 0, 0, b"\x03\x08\x08\x08")
        + box("av1C", bytes.fromhex("81200000"))
        + box("colr", b"nclx" + bytes.fromhex("00020002000680")),
    )
    association = full("ipma", 0, 0, bytes.fromhex("00000001000104") + bytes([0x01, 0x02, 0x83, 0x04]))
    meta_children = [
        full("hdlr", 0, 0, bytes(4) + b"pict" + bytes(13)),
        full("pitm", 0, 0, b"\x00\x01"),
        None,  # iloc: needs the offset of mdat, i.e. the size of everything before it
        full("iinf", 0, 0, b"\x00\x01" + full("infe", 2, 0, b"\x00\x01\x00\x00av01Color\x00")),
        box("iprp", properties + association),
    ]
    iloc_size = 8 + 4 + 2 + 2 + 2 + 2 + 2 + 4 + 4
    head = len(ftyp) + 12 + sum(len(c) for c in meta_children if c is not None) + iloc_size + 8
    meta_children[2] = full(
        "iloc",
        0,
        0,
        b"\x44\x00\x00\x01\x00\x01\x00\x00\x00\x01" + head.to_bytes(4, "big") + len(item).to_bytes(4, "big"),
    )
    return ftyp + full("meta", 0, 0, b"".join(meta_children)) + box("mdat", item)


class AvifCodec(HeaderlessCodec):
    codec_id = bitstream.AVIF
    library = "AVIF"
    options = {"speed": SPEED, "pixelformat": PIXEL_FORMAT}

    def strip(self, data: bytes) -> bytes:
        item = isobmff.primary_item(data).data
        prefix = TEMPORAL_DELIMITER + SEQUENCE_HEADER + bytes([FRAME_OBU])
        if not item.startswith(prefix):
            raise SfcError(
                "the installed AVIF encoder wrote other OBUs than the format's (install the pinned imagecodecs)"
            )
        frame = item[len(prefix) :]
        size, length = _read_leb128(frame)
        if size != len(frame) - length:
            raise SfcError("the installed AVIF encoder wrote more than one frame OBU")
        return frame[length:]

    def rebuild(self, payload: bytes) -> bytes:
        return avif_file(
            TEMPORAL_DELIMITER + SEQUENCE_HEADER + bytes([FRAME_OBU]) + bitstream.leb128(len(payload)) + payload
        )


def _read_leb128(data: bytes) -> tuple[int, int]:
    """(value, bytes read) of the LEB128 number at the start of ``data`` (at most 8 bytes, as AV1 allows)."""
    value = 0
    for i, byte in enumerate(data[:8]):
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return value, i + 1
    raise SfcError("AV1 OBU size is not a LEB128 number")
