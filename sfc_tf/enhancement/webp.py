"""WebP (libwebp's lossy VP8, through imagecodecs): quality 0..100 as the rate knob, method 6 (the slowest, best).

The payload is the VP8 frame without what a decoder can rebuild: the RIFF container (``RIFF`` size ``WEBP``, the
``VP8 `` chunk header and its padding byte), and the key frame's start code and dimensions, which are the crop's.
What remains is the 3-byte frame tag (key frame, version, size of the first partition) and the partitions.
"""

from __future__ import annotations

import struct

import numpy as np

from sfc_tf import bitstream
from sfc_tf.enhancement.headerless import HeaderlessCodec
from sfc_tf.errors import BitstreamError, SfcError

METHOD = 6
FRAME_TAG_BYTES = 3
# Start code and the 14-bit width and height (no scaling) of a 160x160 key frame.
KEY_FRAME_HEADER = b"\x9d\x01\x2a" + struct.pack("<HH", 160, 160)


def riff(vp8: bytes) -> bytes:
    """The simple-format WebP file of a VP8 frame: RIFF header, one ``VP8 `` chunk, padded to an even size."""
    chunk = b"VP8 " + struct.pack("<I", len(vp8)) + vp8 + b"\x00" * (len(vp8) % 2)
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk


def vp8_frame(data: bytes) -> bytes:
    """The VP8 frame of a simple-format lossy WebP file."""
    if data[:4] != b"RIFF" or data[8:16] != b"WEBP" + b"VP8 ":
        raise SfcError("the installed WebP encoder wrote another container than a simple lossy WebP")
    return data[20 : 20 + struct.unpack_from("<I", data, 16)[0]]


class WebpCodec(HeaderlessCodec):
    codec_id = bitstream.WEBP
    library = "WebP"
    options = {"method": METHOD, "lossless": False}

    def strip(self, data: bytes) -> bytes:
        frame = vp8_frame(data)
        if frame[FRAME_TAG_BYTES : FRAME_TAG_BYTES + len(KEY_FRAME_HEADER)] != KEY_FRAME_HEADER:
            raise SfcError("the installed WebP encoder wrote a frame that is not a 160x160 key frame")
        return frame[:FRAME_TAG_BYTES] + frame[FRAME_TAG_BYTES + len(KEY_FRAME_HEADER) :]

    def rebuild(self, payload: bytes) -> bytes:
        return riff(payload[:FRAME_TAG_BYTES] + KEY_FRAME_HEADER + payload[FRAME_TAG_BYTES:])

    def decode(self, payload: bytes) -> np.ndarray:
        if len(payload) <= FRAME_TAG_BYTES:
            raise BitstreamError(f"WebP payload of {len(payload)} bytes has no frame")
        first_partition = int.from_bytes(payload[:FRAME_TAG_BYTES], "little") >> 5
        if first_partition > len(payload) - FRAME_TAG_BYTES:
            raise BitstreamError(
                f"WebP payload declares a first partition of {first_partition} bytes, {len(payload)} bytes in all"
            )
        return super().decode(payload)
