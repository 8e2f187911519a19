"""JPEG2000 (glymur / OpenJPEG): raw J2K codestream, compression ratio as the rate knob (one quality layer)."""

from __future__ import annotations

import os
import tempfile
import warnings

import numpy as np

from sfc_tf import bitstream
from sfc_tf.enhancement import ImageCodec
from sfc_tf.errors import BitstreamError

SOC_SIZ = b"\xff\x4f\xff\x51"  # start of codestream + image and tile size markers


def declared_geometry(data: bytes) -> tuple[int, int, int]:
    """(height, width, components) from the SIZ marker segment, read before any decoding. The codestreams this
    codec writes have one tile and 8-bit unsigned, unsubsampled components; anything else is refused here, so
    a crafted header cannot make OpenJPEG allocate for tiles, depths or sizes the codec never produces."""
    if data[:4] != SOC_SIZ or len(data) < 42:
        raise BitstreamError("enhancement payload is not a JPEG2000 codestream")
    xsiz, ysiz, xosiz, yosiz, xtsiz, ytsiz, xtosiz, ytosiz = (
        int.from_bytes(data[8 + 4 * i : 12 + 4 * i], "big") for i in range(8)
    )
    components = int.from_bytes(data[40:42], "big")
    if xosiz or yosiz or xtosiz or ytosiz or xtsiz < xsiz or ytsiz < ysiz:
        raise BitstreamError("JPEG2000 payload: offsets or tiling that this codec never writes")
    if len(data) < 42 + 3 * components or components > 4:
        raise BitstreamError("JPEG2000 payload: truncated or oversized component list")
    if any(data[42 + 3 * c : 45 + 3 * c] != b"\x07\x01\x01" for c in range(components)):
        raise BitstreamError("JPEG2000 payload: components are not 8-bit unsigned and unsubsampled")
    return ysiz, xsiz, components


class Jpeg2000Codec(ImageCodec):
    codec_id = bitstream.JPEG2000

    def encode(self, image: np.ndarray) -> bytes:
        import glymur

        image = self.check_image(image)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "image.j2k")
            glymur.Jp2k(path, data=image, cratios=[self.parameter])
            with open(path, "rb") as handle:
                return handle.read()

    def decode(self, data: bytes) -> np.ndarray:
        import glymur

        self.check_geometry(*declared_geometry(data), "JPEG2000 payload")
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "image.j2k")
            with open(path, "wb") as handle:
                handle.write(data)
            try:
                # glymur warns (not raises) on some damaged streams: an error at once. OpenJPEG's own warnings come
                # through a ctypes callback, where an exception cannot propagate: recorded, refused after the decode.
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("error")
                    warnings.filterwarnings("always", message="OpenJPEG library warning")
                    image = glymur.Jp2k(path)[:]
            except Exception as exc:
                raise BitstreamError(f"cannot decode JPEG2000 payload ({len(data)} bytes): {exc}") from exc
            if caught:
                raise BitstreamError(f"cannot decode JPEG2000 payload ({len(data)} bytes): {caught[0].message}")
        return self.check_decoded(np.asarray(image), "JPEG2000 payload")
