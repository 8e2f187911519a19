"""JPEG2000 (glymur / OpenJPEG): raw J2K codestream, compression ratio as the rate knob (one quality layer)."""

from __future__ import annotations

import os
import tempfile
import warnings

import numpy as np

from sfc_tf.enhancement import JPEG2000, ImageCodec
from sfc_tf.errors import BitstreamError


class Jpeg2000Codec(ImageCodec):
    codec_id = JPEG2000

    def __init__(self, ratio: float):
        if not float(ratio) >= 1:
            raise ValueError(f"JPEG2000 compression ratio must be >= 1, got {ratio}")
        super().__init__(float(ratio))

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

        if data[:4] != b"\xff\x4f\xff\x51":      # SOC + SIZ markers of a J2K codestream
            raise BitstreamError("enhancement payload is not a JPEG2000 codestream")
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "image.j2k")
            with open(path, "wb") as handle:
                handle.write(data)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("error")        # glymur warns (not raises) on some damaged streams
                    image = glymur.Jp2k(path)[:]
            except Exception as exc:
                raise BitstreamError(f"cannot decode JPEG2000 payload ({len(data)} bytes): {exc}") from exc
        return self.check_decoded(np.asarray(image), "JPEG2000 payload")
