"""Shift-and-scale augmentation of aligned face crops: more views of each training face for the reconstructor.

Each copy of a crop is the crop moved by up to ``MAX_SHIFT`` pixels each way and scaled by a factor within
1 +- ``MAX_SCALE``, reflected where the window leaves the crop; its mask marks the pixels that come from the crop
itself (1) rather than the reflection (0), so training losses ignore the invented border like the extra faces'
padding. The copies are drawn from ``seed`` and rebuilt identically on every call; their FaceNet features are
computed once and cached under ``cache_tag`` (``folders.cached_features``).
"""

from __future__ import annotations

import numpy as np

MAX_SHIFT = 8.0  # pixels of the 160-pixel crop: a twentieth of its side
MAX_SCALE = 0.1  # zoom out to 0.9 or in to 1.1


def cache_tag(copies: int, seed: int) -> str:
    """What the cached features of the copies depend on, besides the crops."""
    return f"jitter{copies}-{seed}-{MAX_SHIFT:g}-{MAX_SCALE:g}"


def draws(count: int, copies: int, seed: int) -> np.ndarray:
    """(count * copies, 3) shift x, shift y (pixels) and scale of every copy, copy-major."""
    rng = np.random.default_rng(seed)
    shifts = rng.uniform(-MAX_SHIFT, MAX_SHIFT, (copies * count, 2))
    scales = rng.uniform(1 - MAX_SCALE, 1 + MAX_SCALE, (copies * count, 1))
    return np.concatenate([shifts, scales], axis=1)


def transform(crop: np.ndarray, shift_x: float, shift_y: float, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """A (H, W, 3) uint8 crop moved by (shift_x, shift_y) pixels (the face moves left / up for positive shifts)
    and magnified by ``scale``, and its validity mask (H, W) uint8."""
    from PIL import Image

    height, width = crop.shape[:2]
    pad = max(height, width) // 2
    padded = np.pad(crop, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
    valid = np.pad(np.full((height, width), 255, np.uint8), pad)
    centre_x, centre_y = pad + width / 2 + shift_x, pad + height / 2 + shift_y
    half_w, half_h = width / (2 * scale), height / (2 * scale)
    box = (centre_x - half_w, centre_y - half_h, centre_x + half_w, centre_y + half_h)
    image = Image.fromarray(padded).resize((width, height), Image.BICUBIC, box=box)
    mask = Image.fromarray(valid).resize((width, height), Image.BILINEAR, box=box)
    return np.asarray(image), (np.asarray(mask) >= 128).astype(np.uint8)


def jittered(crops: np.ndarray, copies: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``copies`` jittered versions of every crop (copy-major: all crops' first copies, then the second...) and
    their masks."""
    out = [transform(crops[i % len(crops)], *row) for i, row in enumerate(draws(len(crops), copies, seed))]
    if not out:
        return np.zeros((0, *crops.shape[1:]), np.uint8), np.zeros((0, *crops.shape[1:3]), np.uint8)
    images, masks = zip(*out)
    return np.stack(images), np.stack(masks)
