"""The ``.sfc`` container: one coded face, base layer first, optional enhancement layer after it.

Version 1, byte by byte (multi-byte integers big endian; full description in docs/bitstream.md):

  base part
    0   2  magic  b"SF"
    2   1  format version (1)
    3   1  alignment id (0 mtcnn, 1 center, 2 crop given by the caller); other values are rejected
    4   1  crop height / 16          5   1  crop width / 16          (3 channels, 8-bit RGB, in version 1)
    6   2  FaceNet model id          8   2  base-layer model id      10  2  reconstructor id
   12   v  base payload length (unsigned LEB128, 1..2 bytes, at most 4096)
    .   L  base payload (a base-layer record: CRC-16 + range-coded feature, see base_layer.py)
    .   2  CRC-16/CCITT-FALSE of every byte of the base part before it
  enhancement part (present iff bytes remain after the base part)
    0   1  codec id (1 jpeg, 2 jpeg2000, 3 learned)
    1   2  enhancement model id (learned codec: its checkpoint id; 0 for JPEG/JPEG2000)
    3   4  residual min, max (two float16)
    7   v  payload length (unsigned LEB128, 1..4 bytes, at most 16 MiB)
    .   M  payload (the codec's bytes)
    .   4  CRC-32 of every byte of the enhancement part before it

Model ids are the first two bytes of the model's sha256 identifier. Stripping the enhancement layer is a
truncation after the base part; the base CRC stays valid. Every length is checked against the bytes that
remain before anything is sliced; every failure raises ``BitstreamError`` with the reason (see
``docs/bitstream.md`` for the list), and a model mismatch raises ``ModelMismatchError`` naming the model.
"""

from __future__ import annotations

import binascii
import dataclasses
import hashlib
import zlib

from sfc_tf.enhancement import JPEG, JPEG2000, LEARNED, NAMES
from sfc_tf.enhancement.minmax import MinMax
from sfc_tf.errors import BitstreamError, ModelMismatchError

MAGIC = b"SF"
VERSION = 1
ALIGNMENTS = ("mtcnn", "center", "crop")
GEOMETRY_UNIT = 16
MAX_BASE_PAYLOAD = 4096
MAX_ENHANCEMENT_PAYLOAD = 16 << 20


def short_id(identifier: str) -> int:
    """Two-byte model id: the first two bytes of a hex sha256 id, or of the sha256 of any other string."""
    try:
        digest = bytes.fromhex(identifier)
    except ValueError:
        digest = b""
    if len(digest) < 2:
        digest = hashlib.sha256(identifier.encode()).digest()
    return int.from_bytes(digest[:2], "big")


@dataclasses.dataclass(frozen=True)
class Enhancement:
    codec_id: int
    model_id: int           # 0 unless the codec is learned
    span: MinMax
    payload: bytes


@dataclasses.dataclass(frozen=True)
class SfcFile:
    alignment: str
    height: int
    width: int
    facenet_id: int
    base_model_id: int
    reconstructor_id: int
    base_payload: bytes
    enhancement: Enhancement | None = None


def _crc16(data: bytes) -> bytes:
    return binascii.crc_hqx(data, 0xFFFF).to_bytes(2, "big")


def _leb128(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


class _Reader:
    """Bounds-checked reading; every read names what it reads in its error."""

    def __init__(self, data: bytes, start: int = 0):
        self.data, self.pos = data, start

    def take(self, count: int, what: str) -> bytes:
        if count < 0 or self.pos + count > len(self.data):
            raise BitstreamError(f"truncated file: {what} needs {count} bytes at offset {self.pos}, "
                                 f"{len(self.data) - self.pos} remain")
        chunk = self.data[self.pos:self.pos + count]
        self.pos += count
        return chunk

    def uint(self, count: int, what: str) -> int:
        return int.from_bytes(self.take(count, what), "big")

    def leb128(self, max_bytes: int, limit: int, what: str) -> int:
        value = 0
        for i in range(max_bytes):
            byte = self.uint(1, what)
            value |= (byte & 0x7F) << (7 * i)
            if not byte & 0x80:
                if value > limit:
                    raise BitstreamError(f"{what} {value} exceeds the limit {limit}")
                return value
        raise BitstreamError(f"{what} is longer than {max_bytes} bytes")


def pack(sfc: SfcFile) -> bytes:
    if sfc.alignment not in ALIGNMENTS:
        raise ValueError(f"alignment must be one of {ALIGNMENTS}")
    if sfc.height % GEOMETRY_UNIT or sfc.width % GEOMETRY_UNIT or not (0 < max(sfc.height, sfc.width) <= 255 * 16):
        raise ValueError(f"crop sides must be positive multiples of {GEOMETRY_UNIT} up to {255 * GEOMETRY_UNIT}")
    if not 0 < len(sfc.base_payload) <= MAX_BASE_PAYLOAD:
        raise ValueError(f"base payload must be 1..{MAX_BASE_PAYLOAD} bytes")
    base = (MAGIC + bytes([VERSION, ALIGNMENTS.index(sfc.alignment), sfc.height // GEOMETRY_UNIT,
                          sfc.width // GEOMETRY_UNIT])
            + b"".join(i.to_bytes(2, "big") for i in (sfc.facenet_id, sfc.base_model_id, sfc.reconstructor_id))
            + _leb128(len(sfc.base_payload)) + sfc.base_payload)
    out = base + _crc16(base)
    if sfc.enhancement is not None:
        e = sfc.enhancement
        if e.codec_id not in (JPEG, JPEG2000, LEARNED) or not 0 < len(e.payload) <= MAX_ENHANCEMENT_PAYLOAD:
            raise ValueError("bad enhancement codec id or payload size")
        part = bytes([e.codec_id]) + e.model_id.to_bytes(2, "big") + e.span.to_bytes() + _leb128(len(e.payload)) + e.payload
        out += part + zlib.crc32(part).to_bytes(4, "big")
    return out


def _base_end(data: bytes) -> tuple[SfcFile, int]:
    reader = _Reader(data)
    if reader.take(2, "magic") != MAGIC:
        raise BitstreamError("not an .sfc file (bad magic)")
    version = reader.uint(1, "version")
    if version != VERSION:
        raise BitstreamError(f"unsupported .sfc format version {version} (this decoder reads version {VERSION})")
    alignment = reader.uint(1, "alignment id")
    if alignment >= len(ALIGNMENTS):
        raise BitstreamError(f"unknown alignment id {alignment}")
    height, width = reader.uint(1, "height") * GEOMETRY_UNIT, reader.uint(1, "width") * GEOMETRY_UNIT
    if not height or not width:
        raise BitstreamError("zero image geometry")
    ids = [reader.uint(2, what) for what in ("FaceNet id", "base-layer id", "reconstructor id")]
    length = reader.leb128(2, MAX_BASE_PAYLOAD, "base payload length")
    if length == 0:
        raise BitstreamError("empty base payload")
    payload = reader.take(length, "base payload")
    end = reader.pos
    if reader.take(2, "base CRC") != _crc16(data[:end]):
        raise BitstreamError("base layer CRC mismatch (corrupt file)")
    return SfcFile(ALIGNMENTS[alignment], height, width, *ids, bytes(payload)), reader.pos


def unpack(data: bytes) -> SfcFile:
    """Parse and verify a whole file (both CRCs)."""
    data = bytes(data)
    base, end = _base_end(data)
    if end == len(data):
        return base
    reader = _Reader(data, end)
    codec_id = reader.uint(1, "enhancement codec id")
    if codec_id not in (JPEG, JPEG2000, LEARNED):
        raise BitstreamError(f"unknown enhancement codec id {codec_id}")
    model_id = reader.uint(2, "enhancement model id")
    span = MinMax.from_bytes(reader.take(4, "residual min/max"))
    length = reader.leb128(4, MAX_ENHANCEMENT_PAYLOAD, "enhancement payload length")
    if length == 0:
        raise BitstreamError("empty enhancement payload")
    payload = reader.take(length, "enhancement payload")
    if reader.take(4, "enhancement CRC") != zlib.crc32(data[end:reader.pos - 4]).to_bytes(4, "big"):
        raise BitstreamError("enhancement layer CRC mismatch (corrupt file)")
    if reader.pos != len(data):
        raise BitstreamError(f"{len(data) - reader.pos} unexpected bytes after the enhancement layer")
    return dataclasses.replace(base, enhancement=Enhancement(codec_id, model_id, span, bytes(payload)))


def unpack_base(data: bytes) -> SfcFile:
    """Parse only the base part (what analysis needs); the enhancement part is neither read nor verified."""
    return _base_end(bytes(data))[0]


def strip_enhancement(data: bytes) -> bytes:
    """A valid base-only file: the base part, verified, with everything after it dropped."""
    return bytes(data[:_base_end(bytes(data))[1]])


def info(data: bytes) -> dict:
    """Layers, sizes in bits and model ids of a file (for ``sfc info``)."""
    sfc = unpack(data)
    base_bits = 8 * len(strip_enhancement(data))
    result = {"alignment": sfc.alignment, "crop": [sfc.height, sfc.width, 3],
              "layers": ["base"] + (["enhancement"] if sfc.enhancement else []),
              "file_bits": 8 * len(data), "base_payload_bits": 8 * len(sfc.base_payload),
              "base_part_bits": base_bits,
              "model_ids": {"facenet": f"{sfc.facenet_id:04x}", "base_layer": f"{sfc.base_model_id:04x}",
                            "reconstructor": f"{sfc.reconstructor_id:04x}"}}
    if sfc.enhancement:
        e = sfc.enhancement
        result.update(enhancement_codec=NAMES[e.codec_id], enhancement_payload_bits=8 * len(e.payload),
                      enhancement_part_bits=8 * len(data) - base_bits, residual_range=[e.span.low, e.span.high])
        result["model_ids"]["enhancement"] = f"{e.model_id:04x}"
    return result


def require_models(sfc: SfcFile, available: dict[str, int | None]) -> None:
    """Check the models a decode step will use (name -> short id, None when not loaded) against the file's.
    Names: facenet, base_layer, reconstructor, enhancement. Raises ``ModelMismatchError`` naming each one."""
    needed = {"facenet": sfc.facenet_id, "base_layer": sfc.base_model_id, "reconstructor": sfc.reconstructor_id,
              "enhancement": sfc.enhancement.model_id if sfc.enhancement else 0}
    wrong = [f"{name} model {needed[name]:04x} ({'none loaded' if have is None else f'have {have:04x}'})"
             for name, have in available.items() if have != needed[name]]
    if wrong:
        raise ModelMismatchError("this file needs " + ", ".join(wrong))
