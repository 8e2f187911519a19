"""Min-max normalisation of the residual r = x - x_hat into the 8-bit image every enhancement codec codes.

min and max are transmitted as two IEEE float16 (4 bytes per face, counted in the rate): min rounded down and
max rounded up to representable float16 values, so the range always covers the residual, and the encoder
normalises with the rounded values, so encoder and decoder agree exactly. The normalised residual is
``round(255 * (r - min) / (max - min))``; a constant residual (max == min) codes as zeros and decodes to min.
"""

from __future__ import annotations

import numpy as np

from sfc_tf.bitstream import MinMax


def _round16(value: float, direction: str) -> float:
    """Nearest float16 at or below (``down``) / at or above (``up``) ``value``."""
    rounded = np.float16(value)
    if direction == "down" and float(rounded) > value:
        rounded = np.nextafter(rounded, np.float16(-np.inf))
    if direction == "up" and float(rounded) < value:
        rounded = np.nextafter(rounded, np.float16(np.inf))
    return float(rounded)


def normalise(residual: np.ndarray) -> tuple[np.ndarray, MinMax]:
    """float residual (H, W, 3), values in [-255, 255] -> (uint8 image, transmitted range)."""
    residual = np.asarray(residual, np.float32)
    if not np.isfinite(residual).all():
        raise ValueError("residual contains non-finite values")
    span = MinMax(_round16(float(residual.min()), "down"), _round16(float(residual.max()), "up"))
    if span.high == span.low:
        return np.zeros(residual.shape, np.uint8), span
    scaled = (residual - span.low) / (span.high - span.low) * 255.0
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8), span


def denormalise(image: np.ndarray, span: MinMax) -> np.ndarray:
    """uint8 image + range -> float32 residual."""
    return (span.low + np.asarray(image, np.float32) / 255.0 * (span.high - span.low)).astype(np.float32)


def add_residual(reconstruction: np.ndarray, residual: np.ndarray) -> np.ndarray:
    """Decoder side: reconstruction (uint8) + decoded residual, rounded and clipped to uint8 pixels."""
    return np.clip(np.rint(np.asarray(reconstruction, np.float32) + residual), 0, 255).astype(np.uint8)
