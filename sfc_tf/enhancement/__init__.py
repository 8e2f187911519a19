"""Enhancement-layer codecs: one interface, implementations for JPEG (a whole file, or headerless), JPEG2000,
AVIF, JPEG XL, WebP, the learned Balle-2016 codec and the conditional learned codec; ``registry`` declares them.

An ``ImageCodec`` codes 8-bit RGB images of one fixed shape (the 160x160 crop) at one rate setting:
``encode_many(uint8 (N, H, W, 3)) -> N payloads`` and ``decode_many(payloads) -> uint8 (N, H, W, 3)``. A decoder
checks the geometry a payload declares against that shape before it allocates anything, and raises
``BitstreamError`` for any damaged payload. A conditional codec (``conditional = True``) takes the decoder's
prediction as a second argument of both. ``sfc_tf.enhancement.layer`` forms residuals and adds them back;
the codec ids are the container's (``sfc_tf.bitstream``).
"""

from __future__ import annotations

import abc

import numpy as np

from sfc_tf import bitstream
from sfc_tf.errors import BitstreamError

CROP_SHAPE = (160, 160, 3)


class ImageCodec(abc.ABC):
    """Codes 8-bit RGB images of ``shape`` at one rate setting (``parameter``)."""

    codec_id: int
    conditional = False

    def __init__(self, parameter, shape: tuple[int, int, int] = CROP_SHAPE):
        self.parameter, self.shape = parameter, tuple(shape)

    @property
    def name(self) -> str:
        return bitstream.CODECS[self.codec_id]

    @abc.abstractmethod
    def encode(self, image: np.ndarray) -> bytes: ...

    @abc.abstractmethod
    def decode(self, data: bytes) -> np.ndarray: ...

    def encode_many(self, images: np.ndarray) -> list[bytes]:
        return [self.encode(image) for image in images]

    def decode_many(self, payloads: list[bytes]) -> np.ndarray:
        if not payloads:
            return np.zeros((0, *self.shape), np.uint8)
        return np.stack([self.decode(payload) for payload in payloads])

    def encode_decode_many(self, images: np.ndarray) -> tuple[list[bytes], np.ndarray]:
        """``encode_many``, and the images a decoder gets from those payloads (what a mode decision measures). A
        codec that has them while encoding overrides this and skips decoding its own payloads again."""
        payloads = self.encode_many(images)
        return payloads, self.decode_many(payloads)

    def check_image(self, image: np.ndarray) -> np.ndarray:
        image = np.asarray(image)
        if image.dtype != np.uint8 or image.shape != self.shape:
            raise ValueError(f"expected a {self.shape} uint8 image, got {image.dtype} {image.shape}")
        return image

    def check_geometry(self, height: int, width: int, channels: int, what: str) -> None:
        """Refuse a payload whose declared geometry is not the codec's, before decoding it."""
        if (height, width, channels) != self.shape:
            raise BitstreamError(
                f"{what} declares {height}x{width}x{channels}, this codec decodes "
                f"{self.shape[0]}x{self.shape[1]}x{self.shape[2]} faces"
            )

    def check_decoded(self, image: np.ndarray, what: str) -> np.ndarray:
        if image.dtype != np.uint8 or image.shape != self.shape:
            raise BitstreamError(f"{what} decoded to {image.dtype} {image.shape}, not a {self.shape} image")
        return image
