"""The enhancement layer of one face: the face coded against a prediction, and decoded back.

  residual codecs (all but the conditional):  payload = codec(min-max(x - p)), range sent; face = p + residual
  no prediction (mode ``none``):              payload = codec(x); face = decoded image
  conditional codec:                          payload = codec(x | p); face = codec^-1(payload | p)

This is the only place where residuals are formed, normalised and added back: the codec, the evaluation and
the benchmark all code the enhancement layer through ``encode`` and ``decode``.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from sfc_tf.bitstream import NO_PREDICTION, has_span
from sfc_tf.enhancement import minmax


@dataclasses.dataclass(frozen=True)
class Coded:
    """One face's enhancement layer before packing."""

    payload: bytes
    span: minmax.MinMax | None


def residual(crops: np.ndarray, predictions: np.ndarray) -> np.ndarray:
    return np.asarray(crops, np.float32) - np.asarray(predictions, np.float32)


def normalised_residuals(crops: np.ndarray, predictions: np.ndarray) -> tuple[np.ndarray, list[minmax.MinMax]]:
    """(N, H, W, 3) crops and predictions -> min-max normalised 8-bit residual images and their ranges."""
    pairs = [minmax.normalise(r) for r in residual(crops, predictions)]
    return np.stack([image for image, _ in pairs]), [span for _, span in pairs]


def encode(codec, mode: int, crops: np.ndarray, predictions: np.ndarray | None) -> list[Coded]:
    """Code (N, H, W, 3) uint8 crops against ``predictions`` (uint8, or None for mode ``none``)."""
    return _encode(codec, mode, crops, predictions, with_faces=False)[0]


def encode_decoded(
    codec, mode: int, crops: np.ndarray, predictions: np.ndarray | None
) -> tuple[list[Coded], np.ndarray]:
    """``encode``, and the faces ``decode`` will give for it (what the mode decision measures), through the codec's
    ``encode_decode_many`` where it has one."""
    return _encode(codec, mode, crops, predictions, with_faces=True)


def _encode(
    codec, mode: int, crops: np.ndarray, predictions: np.ndarray | None, with_faces: bool
) -> tuple[list[Coded], np.ndarray | None]:
    crops = np.asarray(crops, np.uint8)
    if codec.conditional:
        coded = [Coded(p, None) for p in codec.encode_many(crops, predictions)]
        return coded, decode(codec, mode, coded, predictions) if with_faces else None
    images, spans = crops, [None] * len(crops)
    if has_span(codec.codec_id, mode):
        images, spans = normalised_residuals(crops, predictions)
    payloads, decoded = codec.encode_decode_many(images) if with_faces else (codec.encode_many(images), None)
    coded = [Coded(payload, span) for payload, span in zip(payloads, spans)]
    return coded, None if decoded is None else _faces(mode, decoded, coded, predictions)


def decode(codec, mode: int, coded: list[Coded], predictions: np.ndarray | None) -> np.ndarray:
    """The decoded faces (N, H, W, 3) uint8 of ``coded`` enhancement layers, all of one codec and mode."""
    payloads = [c.payload for c in coded]
    if codec.conditional:
        return codec.decode_many(payloads, predictions)
    return _faces(mode, codec.decode_many(payloads), coded, predictions)


def _faces(mode: int, images: np.ndarray, coded: list[Coded], predictions: np.ndarray | None) -> np.ndarray:
    """Decoded images of a residual codec -> faces: the prediction plus each de-normalised residual."""
    if mode == NO_PREDICTION:
        return images
    return np.stack(
        [minmax.add_residual(p, minmax.denormalise(image, c.span)) for p, image, c in zip(predictions, images, coded)]
    )
