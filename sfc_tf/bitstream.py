"""The ``.sfc`` container: one coded face, base layer first, optional enhancement layer after it.

Version 4, byte by byte (full description and the reasons for each field in docs/bitstream.md; version 3 is the
same layout with format tag 0b111101, no authenticated variant and codec ids 1..4, and is read too):

  base part
    0   1  format tag: bits 7..2 = 0b111110 (version 4) or 0b111111 (version 4, authenticated),
           bits 1..0 = alignment (0 mtcnn, 1 center, 2 crop)
    1   1  model set (1..127: a registered set of sfc_tf.zoo; 128..255: an unregistered set, by a 7-bit hash)
    2   v  base payload length L (unsigned LEB128, 1..2 bytes, 1..MAX_BASE_PAYLOAD)
    .   L  base payload (the range-coded feature, and a colour thumbnail if the model set has one; base_layer.py)
    .   2  CRC-16/CCITT-FALSE of every byte of the base part before it
  enhancement part (present iff bytes remain after the base part)
    0   1  codec (bits 7..4, ``CODECS``: 1 jpeg-file .. 8 webp) | prediction mode (bits 3..0)
    1   2  learned model (learned and conditional codecs only: 12 bits of the checkpoint's sha256, 4 bits rate)
    .   4  residual min, max (two float16; only when the payload codes a residual, see ``has_span``)
    .   M  payload (the codec's bytes; everything up to the CRC, 1..MAX_ENHANCEMENT_PAYLOAD bytes)
    .   4  CRC-32 of the base part and every byte of the enhancement part before it
  authentication tag (authenticated files only)
    .  16  HMAC-SHA-256 of every byte before it under the user's key, truncated to its first 16 bytes

A base-only file costs the base payload + 5 bytes: the base-layer record (CRC-16 + payload) + 24 bits. The
enhancement CRC covers the base part too, so an enhancement layer is bound to the base layer it refines: grafted
onto another face's base layer it is refused. The crop geometry (160x160 RGB) and every model are fixed by the
model set. Stripping the enhancement layer is a truncation after the base part (tagged anew in an authenticated
file). Every length is checked against a hard limit and against the bytes that remain before anything is sliced;
every failure raises ``BitstreamError`` with the reason. Given a key, a reader refuses every file whose tag does
not verify (plain files included) before it parses anything else; without one it refuses authenticated files
(``AuthenticationError``): an authenticated file is only ever decoded checked.
"""

from __future__ import annotations

import binascii
import dataclasses
import hashlib
import hmac
import math
import struct
import zlib

from sfc_tf.errors import AuthenticationError, BitstreamError

VERSION = 4
# Bits 7..2 of byte 0: format version and whether the file ends with an authentication tag.
FORMAT_TAGS = {0b111101: (3, False), 0b111110: (4, False), 0b111111: (4, True)}
PLAIN_TAG, AUTHENTICATED_TAG = 0b111110, 0b111111
VERSIONS = (3, 4)  # what this decoder reads
LEGACY_MAGIC = b"SF"  # versions 1 and 2 started with these two bytes, then the version byte
ALIGNMENTS = ("mtcnn", "center", "crop")
MAX_BASE_PAYLOAD = 4096
MAX_ENHANCEMENT_PAYLOAD = 1 << 20  # 1 MiB: a raw 160x160 RGB crop is 76,800 bytes
BASE_CRC_BYTES, ENHANCEMENT_CRC_BYTES = 2, 4
SPAN_BYTES = 4
AUTHENTICATION_TAG_BYTES = 16
MIN_KEY_BYTES = 16

# Enhancement codecs (bits 7..4 of the enhancement part's first byte) and the one name each goes by, in files,
# on the command line and in the codec registry (sfc_tf.enhancement.registry).
JPEG_FILE, JPEG2000, LEARNED, CONDITIONAL, JPEG, AVIF, JPEGXL, WEBP = range(1, 9)
VERSION_3_CODECS = (JPEG_FILE, JPEG2000, LEARNED, CONDITIONAL)
CODECS = {
    JPEG_FILE: "jpeg-file",
    JPEG2000: "jpeg2000",
    LEARNED: "learned",
    CONDITIONAL: "conditional",
    JPEG: "jpeg",
    AVIF: "avif",
    JPEGXL: "jpegxl",
    WEBP: "webp",
}
LEARNED_CODECS = (LEARNED, CONDITIONAL)
CODECS_OF_VERSION = {3: VERSION_3_CODECS, 4: tuple(CODECS)}

# Prediction modes (bits 3..0): what the enhancement layer is coded against (sfc_tf.enhancement.prediction).
RECONSTRUCTION, NO_PREDICTION, MEAN_FACE, SMOOTHED, MMSE = 0, 1, 2, 3, 4
MODES = {
    RECONSTRUCTION: "reconstruction",
    NO_PREDICTION: "none",
    MEAN_FACE: "mean_face",
    SMOOTHED: "smoothed",
    MMSE: "mmse",
}


@dataclasses.dataclass(frozen=True)
class MinMax:
    """The range of a min-max normalised residual (sfc_tf.enhancement.minmax): two IEEE float16, big endian."""

    low: float
    high: float

    def to_bytes(self) -> bytes:
        return struct.pack(">ee", self.low, self.high)

    @classmethod
    def from_bytes(cls, data: bytes) -> "MinMax":
        if len(data) != SPAN_BYTES:
            raise BitstreamError(f"min/max field must be {SPAN_BYTES} bytes, got {len(data)}")
        low, high = struct.unpack(">ee", data)
        if not (math.isfinite(low) and math.isfinite(high) and low <= high):
            raise BitstreamError(f"invalid residual range [{low}, {high}]")
        return cls(float(low), float(high))


def has_span(codec: int, mode: int) -> bool:
    """Whether the enhancement part carries a residual range: the payload is a min-max normalised residual
    (x - prediction) for JPEG, JPEG2000 and the learned residual codec, except with no prediction, where it codes
    the face itself; the conditional codec codes the face given the prediction."""
    return codec != CONDITIONAL and mode != NO_PREDICTION


def combination_error(codec: int, mode: int, version: int = VERSION) -> str | None:
    """Why the format does not allow an enhancement layer of ``codec`` in prediction ``mode`` (None if it does):
    an unknown codec or mode, a codec the version does not define, or a conditional layer without a prediction."""
    if codec not in CODECS_OF_VERSION[version]:
        return f"unknown enhancement codec id {codec}" + (f" in a version-{version} file" if codec in CODECS else "")
    if mode not in MODES:
        return f"unknown prediction mode {mode}"
    if codec == CONDITIONAL and mode == NO_PREDICTION:
        return "a conditional enhancement layer is coded given a prediction, so its mode cannot be none"
    return None


@dataclasses.dataclass(frozen=True)
class Enhancement:
    """The enhancement part: which codec coded ``payload`` against which prediction; ``span`` is the residual's
    min-max range where ``has_span`` says one is carried, ``model_id`` names the learned checkpoint."""

    codec: int
    mode: int
    payload: bytes
    span: MinMax | None = None
    model_id: int = 0  # learned codecs: 12 bits of the checkpoint's sha256 << 4 | its rate index

    @property
    def codec_name(self) -> str:
        return CODECS[self.codec]

    @property
    def mode_name(self) -> str:
        return MODES[self.mode]


@dataclasses.dataclass(frozen=True)
class SfcFile:
    """One ``.sfc`` file: the face alignment, the model set that coded it, the base layer's range-coded feature
    and the optional enhancement part."""

    alignment: str
    model_set: int
    base_payload: bytes
    enhancement: Enhancement | None = None


def check_key(key: bytes) -> bytes:
    """An authentication key as bytes (``ValueError`` if it is shorter than ``MIN_KEY_BYTES``)."""
    if not isinstance(key, (bytes, bytearray)) or len(key) < MIN_KEY_BYTES:
        raise ValueError(f"an authentication key is at least {MIN_KEY_BYTES} bytes")
    return bytes(key)


def authentication_tag(key: bytes, data: bytes) -> bytes:
    """HMAC-SHA-256 of ``data`` under ``key``, truncated to ``AUTHENTICATION_TAG_BYTES``."""
    return hmac.new(check_key(key), data, hashlib.sha256).digest()[:AUTHENTICATION_TAG_BYTES]


def crc16(data: bytes) -> bytes:
    return binascii.crc_hqx(data, 0xFFFF).to_bytes(BASE_CRC_BYTES, "big")


def crc32(data: bytes) -> bytes:
    return zlib.crc32(data).to_bytes(ENHANCEMENT_CRC_BYTES, "big")


def leb128(value: int) -> bytes:
    """Unsigned LEB128: 7 bits per byte, low bits first, high bit set while more follow."""
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


class _Reader:
    """Bounds-checked reading; every read names what it reads in its error."""

    def __init__(self, data: bytes, start: int = 0) -> None:
        self.data, self.pos = data, start

    def remaining(self) -> int:
        return len(self.data) - self.pos

    def take(self, count: int, what: str) -> bytes:
        if count < 0 or count > self.remaining():
            raise BitstreamError(
                f"truncated file: {what} needs {count} bytes at offset {self.pos}, " f"{self.remaining()} remain"
            )
        chunk = self.data[self.pos : self.pos + count]
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
                if byte == 0 and i > 0:
                    raise BitstreamError(f"{what} is not minimally encoded")
                if value > limit:
                    raise BitstreamError(f"{what} {value} exceeds the limit {limit}")
                return value
        raise BitstreamError(f"{what} is longer than {max_bytes} bytes")


def _pack_base(sfc: SfcFile, authenticated: bool) -> bytes:
    if sfc.alignment not in ALIGNMENTS:
        raise ValueError(f"alignment must be one of {ALIGNMENTS}")
    if not 1 <= sfc.model_set <= 255:
        raise ValueError(f"model set id must be in 1..255, got {sfc.model_set}")
    if not 0 < len(sfc.base_payload) <= MAX_BASE_PAYLOAD:
        raise ValueError(f"base payload must be 1..{MAX_BASE_PAYLOAD} bytes")
    part = (
        bytes(
            [(AUTHENTICATED_TAG if authenticated else PLAIN_TAG) << 2 | ALIGNMENTS.index(sfc.alignment), sfc.model_set]
        )
        + leb128(len(sfc.base_payload))
        + sfc.base_payload
    )
    return part + crc16(part)


def _pack_enhancement(e: Enhancement, base: bytes) -> bytes:
    if (reason := combination_error(e.codec, e.mode)) is not None:
        raise ValueError(reason)
    if not 0 < len(e.payload) <= MAX_ENHANCEMENT_PAYLOAD:
        raise ValueError(f"enhancement payload must be 1..{MAX_ENHANCEMENT_PAYLOAD} bytes")
    if (e.span is not None) != has_span(e.codec, e.mode):
        raise ValueError(
            f"a {e.codec_name} payload in mode {e.mode_name} "
            f"{'needs' if has_span(e.codec, e.mode) else 'has no'} residual range"
        )
    if not 0 <= e.model_id <= 0xFFFF or (e.model_id and e.codec not in LEARNED_CODECS):
        raise ValueError("enhancement model ids belong to learned codecs only (0..65535)")
    part = bytes([e.codec << 4 | e.mode])
    if e.codec in LEARNED_CODECS:
        part += e.model_id.to_bytes(2, "big")
    if e.span is not None:
        part += e.span.to_bytes()
    part += e.payload
    return part + crc32(base + part)


def pack(sfc: SfcFile, key: bytes | None = None) -> bytes:
    """The bytes of ``sfc`` (version 4); with a ``key``, the authenticated variant (the tag appended)."""
    base = _pack_base(sfc, key is not None)
    data = base if sfc.enhancement is None else base + _pack_enhancement(sfc.enhancement, base)
    return data if key is None else data + authentication_tag(key, data)


def _legacy_version(data: bytes) -> int | None:
    return data[2] if len(data) >= 3 and data[:2] == LEGACY_MAGIC and data[2] in (1, 2) else None


def _format(data: bytes) -> tuple[int, bool]:
    """(format version, authenticated) from the format tag in byte 0."""
    tag = _Reader(data).uint(1, "format tag") >> 2
    if tag not in FORMAT_TAGS:
        legacy = _legacy_version(data)
        if legacy is not None:
            raise BitstreamError(
                f"this is an .sfc file of format version {legacy} (sfc_tf 0.1); this decoder reads versions "
                f"{' and '.join(map(str, VERSIONS))}: re-encode the image, or decode it with sfc_tf 0.1"
            )
        raise BitstreamError("not an .sfc file (bad format tag)")
    return FORMAT_TAGS[tag]


@dataclasses.dataclass(frozen=True)
class _Container:
    """A file's format version, whether it carries an authentication tag, and its bytes before the tag."""

    version: int
    authenticated: bool
    body: bytes


def _opened(data: bytes, key: bytes | None, require_key: bool = True) -> _Container:
    """``data`` with its authentication settled before anything else is parsed. Given a ``key``, a file whose tag
    does not verify, or that has none, is refused; without one, an authenticated file is refused unless
    ``require_key`` is false (``info``: the fields are shown, marked unverified)."""
    data = bytes(data)
    version, authenticated = _format(data)
    if not authenticated:
        if key is not None:
            raise AuthenticationError("the file is not authenticated, and a key was given: it cannot be checked")
        return _Container(version, False, data)
    if len(data) <= AUTHENTICATION_TAG_BYTES:
        raise BitstreamError(f"truncated file: an authenticated file ends with a {AUTHENTICATION_TAG_BYTES}-byte tag")
    body, tag = data[:-AUTHENTICATION_TAG_BYTES], data[-AUTHENTICATION_TAG_BYTES:]
    if key is not None:
        if not hmac.compare_digest(tag, authentication_tag(key, body)):
            raise AuthenticationError(
                "the authentication tag does not verify: the file was changed, or it was made with another key"
            )
    elif require_key:
        raise AuthenticationError("the file is authenticated: give its key to check and decode it")
    return _Container(version, True, body)


def _unpack_base(data: bytes) -> tuple[SfcFile, int]:
    """The base part of a file's bytes (before any authentication tag) and where it ends."""
    reader = _Reader(data)
    tag = reader.uint(1, "format tag")
    if tag & 3 >= len(ALIGNMENTS):
        raise BitstreamError(f"unknown alignment id {tag & 3}")
    model_set = reader.uint(1, "model set")
    if model_set == 0:
        raise BitstreamError("model set 0 is invalid")
    length = reader.leb128(2, MAX_BASE_PAYLOAD, "base payload length")
    if length == 0:
        raise BitstreamError("empty base payload")
    payload = reader.take(length, "base payload")
    end = reader.pos
    if reader.take(BASE_CRC_BYTES, "base CRC") != crc16(data[:end]):
        raise BitstreamError("base layer CRC mismatch (corrupt file)")
    return SfcFile(ALIGNMENTS[tag & 3], model_set, bytes(payload)), reader.pos


def _unpack_enhancement(data: bytes, start: int, version: int) -> Enhancement:
    reader = _Reader(data, start)
    head = reader.uint(1, "enhancement codec and mode")
    codec, mode = head >> 4, head & 0x0F
    if (reason := combination_error(codec, mode, version)) is not None:
        raise BitstreamError(reason)
    model_id = reader.uint(2, "enhancement model id") if codec in LEARNED_CODECS else 0
    span = MinMax.from_bytes(reader.take(SPAN_BYTES, "residual min/max")) if has_span(codec, mode) else None
    length = reader.remaining() - ENHANCEMENT_CRC_BYTES
    if length <= 0:
        raise BitstreamError("truncated file: no enhancement payload before the CRC")
    if length > MAX_ENHANCEMENT_PAYLOAD:
        raise BitstreamError(f"enhancement payload of {length} bytes exceeds the limit {MAX_ENHANCEMENT_PAYLOAD}")
    payload = reader.take(length, "enhancement payload")
    if reader.take(ENHANCEMENT_CRC_BYTES, "enhancement CRC") != crc32(data[: reader.pos - ENHANCEMENT_CRC_BYTES]):
        raise BitstreamError(
            "enhancement layer CRC mismatch: the layer is corrupt or was made for another base " "layer (spliced file)"
        )
    return Enhancement(codec, mode, bytes(payload), span, model_id)


def _unpack(container: _Container) -> tuple[SfcFile, int]:
    base, end = _unpack_base(container.body)
    if end == len(container.body):
        return base, end
    return dataclasses.replace(base, enhancement=_unpack_enhancement(container.body, end, container.version)), end


def unpack(data: bytes, key: bytes | None = None) -> SfcFile:
    """Parse and verify a whole file (its authentication tag under ``key``, both CRCs, the enhancement layer's
    binding to the base layer)."""
    return _unpack(_opened(data, key))[0]


def unpack_base(data: bytes, key: bytes | None = None) -> SfcFile:
    """Parse only the base part (what analysis needs); the enhancement part is neither read nor verified, except
    by the authentication tag of an authenticated file, which covers the whole file and is checked first."""
    return _unpack_base(_opened(data, key).body)[0]


def is_authenticated(data: bytes) -> bool:
    """Whether the format tag says ``data`` ends with an authentication tag (nothing is verified)."""
    return _format(bytes(data))[1]


def strip_enhancement(data: bytes, key: bytes | None = None) -> bytes:
    """A valid base-only file: the base part, verified, with everything after it dropped. An authenticated file
    needs its ``key``: its tag is checked and the base part tagged anew with the same key."""
    data = bytes(data)
    authenticated = is_authenticated(data)
    if authenticated and key is None:
        raise AuthenticationError(
            "the file is authenticated: stripping it needs its key (to check it and tag the rest)"
        )
    base = data[: _unpack_base(_opened(data, key).body)[1]]
    return base + authentication_tag(key, base) if authenticated else base


def base_part_bytes(data: bytes) -> int:
    """Size of the (CRC-verified) base part of a file; an authentication tag is not checked here."""
    return _unpack_base(_opened(data, None, require_key=False).body)[1]


def info(data: bytes, key: bytes | None = None) -> dict:
    """Layers, sizes in bits, model set and enhancement coding of a file (for ``sfc info``). An authenticated file
    is checked when ``key`` is given; without one its fields are shown with ``tag_verified`` false."""
    data = bytes(data)
    container = _opened(data, key, require_key=False)
    sfc, base_end = _unpack(container)
    result = {
        "format_version": container.version,
        "authenticated": container.authenticated,
        "alignment": sfc.alignment,
        "model_set": sfc.model_set,
        "layers": ["base"] + (["enhancement"] if sfc.enhancement else []),
        "file_bits": 8 * len(data),
        "base_part_bits": 8 * base_end,
        "base_record_bits": 8 * (len(sfc.base_payload) + BASE_CRC_BYTES),
    }
    if container.authenticated:
        result.update(authentication_tag_bits=8 * AUTHENTICATION_TAG_BYTES, tag_verified=key is not None)
    if sfc.enhancement:
        e = sfc.enhancement
        result.update(
            enhancement_codec=e.codec_name,
            prediction_mode=e.mode_name,
            enhancement_part_bits=8 * (len(container.body) - base_end),
            enhancement_payload_bits=8 * len(e.payload),
        )
        if e.span is not None:
            result["residual_range"] = [e.span.low, e.span.high]
        if e.codec in LEARNED_CODECS:
            result["enhancement_model_id"] = f"{e.model_id:04x}"
    return result
