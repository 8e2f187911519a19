"""Enhancement-layer codecs: one interface, implementations for JPEG, JPEG2000, the learned Balle-2016 codec and
the conditional learned codec.

An ``ImageCodec`` codes 8-bit RGB images of one fixed shape (the 160x160 crop) at one rate setting:
``encode_many(uint8 (N, H, W, 3)) -> N payloads`` and ``decode_many(payloads) -> uint8 (N, H, W, 3)``. A decoder
checks the geometry a payload declares against that shape before it allocates anything, and raises
``BitstreamError`` for any damaged payload. A conditional codec (``conditional = True``) takes the decoder's
prediction as a second argument of both. ``sfc_tf.enhancement.layer`` forms residuals and adds them back;
the codec ids below are the ones the bitstream stores.
"""

from __future__ import annotations

import abc

import numpy as np

from sfc_tf.errors import BitstreamError

# Codec ids, as the .sfc enhancement part stores them (bits 7..4 of its first byte).
JPEG, JPEG2000, LEARNED, CONDITIONAL = 1, 2, 3, 4
NAMES = {JPEG: "jpeg", JPEG2000: "jpeg2000", LEARNED: "learned", CONDITIONAL: "conditional"}
CROP_SHAPE = (160, 160, 3)


def checked_setting(value: object, convert: type, low: float, high: float, what: str) -> int | float:
    """A rate setting converted with ``convert`` (int or float) and checked to lie in [low, high]."""
    try:
        number = convert(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be {'an integer' if convert is int else 'a number'}, got {value!r}") from None
    if not low <= number <= high:
        bounds = f"in {low:g}..{high:g}" if high < float("inf") else f">= {low:g}"
        raise ValueError(f"{what} must be {bounds}, got {number}")
    return number


class ImageCodec(abc.ABC):
    """Codes 8-bit RGB images of ``shape`` at one rate setting (``parameter``)."""

    codec_id: int
    conditional = False

    def __init__(self, parameter, shape: tuple[int, int, int] = CROP_SHAPE):
        self.parameter, self.shape = parameter, tuple(shape)

    @property
    def name(self) -> str:
        return NAMES[self.codec_id]

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


def make_codec(name: str, parameter, shape: tuple[int, int, int] = CROP_SHAPE) -> ImageCodec:
    """``jpeg`` (quality 1..100), ``jpeg2000`` (compression ratio), ``learned`` / ``conditional`` (checkpoint
    directory, or ``(directory, rate index)`` for a variable-rate checkpoint)."""
    if name == "jpeg":
        from sfc_tf.enhancement.jpeg import JpegCodec

        return JpegCodec(parameter, shape)
    if name == "jpeg2000":
        from sfc_tf.enhancement.jpeg2000 import Jpeg2000Codec

        return Jpeg2000Codec(parameter, shape)
    if name in ("learned", "conditional"):
        from sfc_tf.enhancement.learned import load_codec

        return load_codec(parameter, shape)
    raise ValueError(f"unknown enhancement codec {name!r}; use jpeg, jpeg2000, learned or conditional")
