"""Coarse images: the bilinear upsampling of a g x g image to the crop size, and its least-squares inverse (the
g x g image whose upsampling is closest to a crop), separable per axis. Shared by the linear coding predictor and
the base layer's colour thumbnail."""

from __future__ import annotations

import functools

import numpy as np


@functools.lru_cache(maxsize=8)
def upsampling_matrix(grid: int, size: int) -> np.ndarray:
    """(size, grid) float64 matrix of ``tf.image.resize(..., method="bilinear")`` along one axis."""
    import tensorflow as tf

    basis = np.eye(grid, dtype=np.float32)[:, :, None, None]  # grid one-hot "images" of height grid
    columns = tf.image.resize(basis, (size, 1), method="bilinear").numpy()[:, :, 0, 0]
    return columns.T.astype(np.float64)


@functools.lru_cache(maxsize=8)
def projection_matrix(grid: int, size: int) -> np.ndarray:
    """(grid, size): the pseudo-inverse of ``upsampling_matrix``."""
    return np.linalg.pinv(upsampling_matrix(grid, size))


def coarse_images(images: np.ndarray, grid: int, batch: int = 512) -> np.ndarray:
    """(N, S, S, C) images -> (N, g, g, C) least-squares coarse images, float64, in the images' own units."""
    project = projection_matrix(grid, images.shape[1])
    out = np.empty((len(images), grid, grid, images.shape[-1]))
    for i in range(0, len(images), batch):
        rows = np.einsum("ah,nhwc->nawc", project, images[i : i + batch].astype(np.float64), optimize=True)
        out[i : i + batch] = np.einsum("nawc,bw->nabc", rows, project, optimize=True)
    return out


def upsample(coarse: np.ndarray, size: int) -> np.ndarray:
    """(N, g, g, C) -> (N, size, size, C) float64, bilinear."""
    up = upsampling_matrix(coarse.shape[1], size)
    return np.einsum("nhbc,wb->nhwc", np.einsum("ha,nabc->nhbc", up, coarse, optimize=True), up, optimize=True)
