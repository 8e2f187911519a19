"""JPEG XL (libjxl, through imagecodecs): libjxl's quality 0..100 as the rate knob, default effort (7).

The payload is the bare codestream without its first four bytes, which the decoder puts back: the signature
(``ff 0a``), the size header of a 160x160 image and the all-default image metadata (8-bit sRGB, XYB), and the
first bit of the frame header, which libjxl writes the same at every quality.
"""

from __future__ import annotations

from sfc_tf import bitstream
from sfc_tf.enhancement.headerless import HeaderlessCodec
from sfc_tf.errors import SfcError

CODESTREAM_START = bytes.fromhex("ff0a6706")


class JpegXlCodec(HeaderlessCodec):
    codec_id = bitstream.JPEGXL
    library = "JPEG XL"
    options = {"usecontainer": False}

    def strip(self, data: bytes) -> bytes:
        if not data.startswith(CODESTREAM_START):
            raise SfcError("the installed JPEG XL encoder wrote another codestream header than the format rebuilds")
        return data[len(CODESTREAM_START) :]

    def rebuild(self, payload: bytes) -> bytes:
        return CODESTREAM_START + payload
