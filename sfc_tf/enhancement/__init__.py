"""Enhancement-layer codecs: one interface, three implementations (JPEG, JPEG2000, learned Balle-2016).

Every ``ImageCodec`` codes an 8-bit RGB image (the crop itself for the anchors):
``encode(uint8 HxWx3) -> bytes`` and ``decode(bytes) -> uint8 HxWx3``. ``ResidualCodec`` wraps one for the
enhancement layer: ``encode(float32 residual HxWx3) -> bytes`` (4-byte min/max field + the image codec's payload
of the min-max normalised residual; see ``minmax``) and ``decode(bytes) -> float32 residual``; the min/max
handling lives only there. Damaged bytes raise ``BitstreamError``. Codec ids are the bitstream's.
"""

from __future__ import annotations

import abc

import numpy as np

from sfc_tf.enhancement import minmax
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


class ResidualCodec:
    """The enhancement layer: residual r = x - x_hat -> ``min/max (4 bytes) | image codec payload``."""

    def __init__(self, codec: ImageCodec):
        self.codec = codec

    @property
    def codec_id(self) -> int:
        return self.codec.codec_id

    @property
    def parameter(self):
        return self.codec.parameter

    @property
    def name(self) -> str:
        return self.codec.name

    @staticmethod
    def split(data: bytes) -> tuple[minmax.MinMax, bytes]:
        """``encode`` output -> (transmitted range, image codec payload); the bitstream stores them apart."""
        if len(data) <= minmax.NUM_BYTES:
            raise BitstreamError(f"enhancement layer of {len(data)} bytes is truncated")
        return minmax.MinMax.from_bytes(data[:minmax.NUM_BYTES]), data[minmax.NUM_BYTES:]

    def encode_many(self, residuals: np.ndarray) -> list[bytes]:
        """float residuals (N, H, W, 3) -> N records."""
        pairs = [minmax.normalise(r) for r in residuals]
        payloads = self.codec.encode_many(np.stack([image for image, _ in pairs]))
        return [span.to_bytes() + payload for (_, span), payload in zip(pairs, payloads)]

    def decode_many(self, records: list[bytes]) -> np.ndarray:
        """N records -> float32 residuals (N, H, W, 3)."""
        if not records:
            raise BitstreamError("no enhancement-layer records to decode")
        spans, payloads = zip(*(self.split(record) for record in records))
        images = self.codec.decode_many(list(payloads))
        return np.stack([minmax.denormalise(image, span) for image, span in zip(images, spans)])

    def encode(self, residual: np.ndarray) -> bytes:
        return self.encode_many(np.asarray(residual)[None])[0]

    def decode(self, data: bytes) -> np.ndarray:
        return self.decode_many([data])[0]


def make_residual_codec(name: str, parameter) -> ResidualCodec:
    """``make_codec`` for the enhancement layer (codes residuals, not images)."""
    return ResidualCodec(make_codec(name, parameter))
