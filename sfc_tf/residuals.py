"""Residuals of the enhancement layer: crop - reconstruction of the base-layer-decoded feature, exactly as the
decoder computes it (uint8 reconstruction, integer residual), min-max normalised to 8-bit images."""

from __future__ import annotations

import numpy as np

from sfc_tf import reconstructor as reconstructor_module
from sfc_tf.enhancement import minmax


def reconstruct(model, features: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Decoded features -> uint8 faces, in batches (one model call per batch)."""
    out = [reconstructor_module.to_uint8(model(features[i:i + batch_size], training=False))
           for i in range(0, len(features), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, 160, 160, 3), np.uint8)


def residual(crop: np.ndarray, reconstruction: np.ndarray) -> np.ndarray:
    return crop.astype(np.float32) - reconstruction.astype(np.float32)


def residual_images(crops: np.ndarray, reconstructions: np.ndarray) -> tuple[np.ndarray, list[minmax.MinMax]]:
    """(N, H, W, 3) crops and reconstructions -> normalised 8-bit residual images and their ranges."""
    pairs = [minmax.normalise(residual(c, r)) for c, r in zip(crops, reconstructions)]
    return np.stack([image for image, _ in pairs]), [span for _, span in pairs]
