"""Colour thumbnail: a g x g x 3 coarse image of the face, coded in the base layer beside the feature (ours).

FaceNet's feature is trained to ignore colour and lighting, so a reconstruction from the feature alone cannot know
them; they are most of what it gets wrong (``eval/thumbnail_oracle.py``). A model set whose base layer carries a
thumbnail (a few dozen bits) shows the reconstruction with its coarse image replaced by the transmitted one.

  c = P x P^T            per channel, 8-bit levels; U (S, g): the bilinear upsampling of one axis, P = pinv(U):
                         the g x g image whose bilinear upsampling is closest to the crop (least squares)
  q = clip(rint((c - mean) @ rotation / step), +-h)   PCA over the 3 g^2 values, a uniform step in 8-bit levels,
                         a per-dimension prior over [-h_d, h_d] (``priors``); a value beyond h_d is clipped (a
                         slightly coarser thumbnail, never an error), so the prior needs no escape symbol
  x_hat' = round(x_hat + U (c_hat - P x_hat P^T) U^T)   decoder: the reconstruction's own coarse image replaced
                         by the decoded one, the detail above it kept
"""

from __future__ import annotations

import numpy as np

from sfc_tf.base import coarse, priors

HALF_RANGE_MARGIN = 1.5  # a dimension's prior covers 1.5 x the largest training |q| (+2), beyond it values clip


class Thumbnail:
    """Fitted thumbnail quantizer and prior. ``fit`` creates one; ``BaseLayerModel`` stores and codes it."""

    ARRAYS = ("grid", "step", "mean", "rotation", "half_ranges", "cdfs")

    def __init__(self, grid, step, mean, rotation, half_ranges, cdfs) -> None:
        self.grid, self.step = int(grid), float(step)
        self.mean = np.asarray(mean, np.float64)
        self.rotation = np.asarray(rotation, np.float64)
        self.half_ranges = np.asarray(half_ranges, np.int32)
        self.cdfs = np.asarray(cdfs, np.int32)
        self.dim = 3 * self.grid * self.grid
        shapes = (self.mean.shape, self.rotation.shape, self.half_ranges.shape, self.cdfs.shape[:1])
        if shapes != ((self.dim,), (self.dim, self.dim), (self.dim,), (self.dim,)):
            raise ValueError(f"thumbnail arrays do not match a {self.grid}x{self.grid}x3 thumbnail")

    @classmethod
    def fit(cls, crops: np.ndarray, grid: int, step: float) -> "Thumbnail":
        """Fit mean, PCA rotation and priors on (N, S, S, 3) uint8 training crops."""
        if grid < 1 or not step > 0:
            raise ValueError(f"thumbnail grid must be >= 1 and step > 0, got {grid} and {step}")
        coefficients = _coefficients(crops, grid)
        mean = coefficients.mean(axis=0)
        _, _, vt = np.linalg.svd(coefficients - mean, full_matrices=False)
        symbols = np.rint((coefficients - mean) @ vt.T / step).astype(np.int64)
        half_ranges = np.ceil(np.abs(symbols).max(axis=0) * HALF_RANGE_MARGIN + 2).astype(np.int32)
        return cls(grid, step, mean, vt.T, half_ranges, priors.histogram_cdfs(symbols, half_ranges))

    def arrays(self) -> dict[str, np.ndarray]:
        """Everything that determines the thumbnail's bits and pixels (saved and hashed with the base layer)."""
        return {
            "grid": np.int32(self.grid),
            "step": np.float64(self.step),
            "mean": self.mean,
            "rotation": self.rotation,
            "half_ranges": self.half_ranges,
            "cdfs": self.cdfs,
        }

    def quantize(self, crops: np.ndarray) -> np.ndarray:
        """(N, S, S, 3) uint8 crops -> (N, 3 g^2) int32 symbols in [-h_d, h_d]."""
        z = (_coefficients(crops, self.grid) - self.mean) @ self.rotation / self.step
        return np.clip(np.rint(z), -self.half_ranges, self.half_ranges).astype(np.int32)

    def entropy_bits(self, crops: np.ndarray) -> np.ndarray:
        """Ideal code length (bits) of each crop's thumbnail under the prior."""
        pmf = priors.pmfs(self.cdfs)
        return -np.log2(pmf[np.arange(self.dim), self.quantize(crops) + self.half_ranges]).sum(axis=1)

    def dequantize(self, symbols: np.ndarray) -> np.ndarray:
        """Symbols -> (N, 3 g^2) coarse images (8-bit levels, float64)."""
        return self.mean + (np.asarray(symbols, np.float64) * self.step) @ self.rotation.T

    def apply(self, images: np.ndarray, coefficients: np.ndarray, batch: int = 256) -> np.ndarray:
        """uint8 images with their coarse image replaced by ``coefficients`` (N, 3 g^2), rounded to uint8 (in
        batches: the float64 intermediates take about 2 MB per face)."""
        images = np.asarray(images)
        wanted = np.asarray(coefficients, np.float64).reshape(-1, self.grid, self.grid, 3)
        out = np.empty(images.shape, np.uint8)
        for i in range(0, len(images), batch):
            change = wanted[i : i + batch] - coarse.coarse_images(images[i : i + batch], self.grid)
            corrected = images[i : i + batch] + coarse.upsample(change, images.shape[1])
            out[i : i + batch] = np.clip(np.rint(corrected), 0, 255)
        return out


def _coefficients(crops: np.ndarray, grid: int) -> np.ndarray:
    """(N, S, S, 3) crops -> (N, 3 g^2) least-squares coarse images, the thumbnail's values before quantization."""
    return coarse.coarse_images(crops, grid).reshape(len(crops), -1)
