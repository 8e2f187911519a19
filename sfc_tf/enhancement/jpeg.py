"""JPEG (Pillow/libjpeg), quality 1-100 as the rate knob, 4:2:0 chroma subsampling (Pillow's default),
optimised Huffman tables."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from sfc_tf.enhancement import CROP_SHAPE, JPEG, ImageCodec, checked_setting
from sfc_tf.errors import BitstreamError


class JpegCodec(ImageCodec):
    codec_id = JPEG

    def __init__(self, quality, shape=CROP_SHAPE):
        super().__init__(checked_setting(quality, int, 1, 100, "JPEG quality"), shape)

    def encode(self, image: np.ndarray) -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(self.check_image(image)).save(buffer, "JPEG", quality=self.parameter, optimize=True)
        return buffer.getvalue()

    def decode(self, data: bytes) -> np.ndarray:
        try:
            with Image.open(io.BytesIO(data), formats=["JPEG"]) as image:  # reads the header only
                self.check_geometry(image.height, image.width, len(image.getbands()), "JPEG payload")
                if image.mode != "RGB":
                    raise BitstreamError(f"JPEG payload is {image.mode}, not RGB")
                return self.check_decoded(np.asarray(image), "JPEG payload")
        except BitstreamError:
            raise
        except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError... on damaged data
            raise BitstreamError(f"cannot decode JPEG payload ({len(data)} bytes): {exc}") from exc
