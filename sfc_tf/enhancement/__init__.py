"""Enhancement-layer codecs: one interface, three implementations (JPEG, JPEG2000, learned Balle-2016).

Every codec codes an 8-bit RGB image (the crop itself for the anchors, the min-max normalised residual for
the enhancement layer; see ``minmax``): ``encode(uint8 HxWx3) -> bytes`` and ``decode(bytes) -> uint8 HxWx3``.
Damaged bytes raise ``BitstreamError``. Codec ids are the bitstream's.
"""

from __future__ import annotations

import abc

import numpy as np

from sfc_tf.errors import BitstreamError

NONE, JPEG, JPEG2000, LEARNED = 0, 1, 2, 3
NAMES = {NONE: "none", JPEG: "jpeg", JPEG2000: "jpeg2000", LEARNED: "learned"}


class ImageCodec(abc.ABC):
    """Codes 8-bit RGB images at one rate setting (``parameter``)."""

    codec_id: int

    def __init__(self, parameter):
        self.parameter = parameter

    @property
    def name(self) -> str:
        return NAMES[self.codec_id]

    @abc.abstractmethod
    def encode(self, image: np.ndarray) -> bytes:
        ...

    @abc.abstractmethod
    def decode(self, data: bytes) -> np.ndarray:
        ...

    def encode_many(self, images: np.ndarray) -> list[bytes]:
        return [self.encode(image) for image in images]

    def decode_many(self, records: list[bytes]) -> np.ndarray:
        return np.stack([self.decode(record) for record in records])

    @staticmethod
    def check_image(image: np.ndarray) -> np.ndarray:
        image = np.asarray(image)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an HxWx3 uint8 image, got {image.dtype} {image.shape}")
        return image

    @staticmethod
    def check_decoded(image: np.ndarray, what: str) -> np.ndarray:
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise BitstreamError(f"{what} decoded to {image.dtype} {image.shape}, not an RGB image")
        return image


def make_codec(name: str, parameter) -> ImageCodec:
    """``jpeg`` (quality), ``jpeg2000`` (compression ratio), ``learned`` (checkpoint directory)."""
    if name == "jpeg":
        from sfc_tf.enhancement.jpeg import JpegCodec

        return JpegCodec(int(parameter))
    if name == "jpeg2000":
        from sfc_tf.enhancement.jpeg2000 import Jpeg2000Codec

        return Jpeg2000Codec(float(parameter))
    if name == "learned":
        from sfc_tf.enhancement.learned import LearnedCodec

        return LearnedCodec.load(parameter)
    raise ValueError(f"unknown enhancement codec {name!r}; use jpeg, jpeg2000 or learned")
