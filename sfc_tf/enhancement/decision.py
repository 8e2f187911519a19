"""Per-face mode decision, as video encoders make it: code each face in every candidate prediction mode, keep the
one with the best rate-distortion trade-off.

The cost of a candidate is J = PSNR - slope * ln(bits), with bits the whole file (base part + enhancement part)
and ``slope`` the codec's own rate-distortion slope dPSNR / d ln(rate) (``registry.Codec.rd_slope_db``): a mode
that costs 10 % more bits must buy at least ``slope * ln 1.1`` dB. Using ln(bits) rather than bits makes the
trade-off the same at every quality, which is what a Bjontegaard comparison (log rate against PSNR) rewards.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from sfc_tf import metrics


@dataclasses.dataclass
class Candidate:
    """One mode's coding of a batch of faces."""

    mode: int
    coded: list  # layer.Coded per face
    decoded: np.ndarray | None  # (N, H, W, 3) uint8 faces as the decoder will see them; None: no decision to make
    file_bits: np.ndarray  # (N,) bits of each whole .sfc file in this mode


def psnr(crops: np.ndarray, decoded: np.ndarray) -> np.ndarray:
    """Per-face PSNR, capped like every PSNR we report (a losslessly coded face is not infinitely good)."""
    return np.minimum(metrics.psnr(crops, decoded), metrics.PSNR_CEILING_DB)


def choose(crops: np.ndarray, candidates: list[Candidate], slope: float) -> np.ndarray:
    """Index into ``candidates`` of the best mode for each face (ties: the earlier candidate)."""
    costs = np.stack([psnr(crops, c.decoded) - slope * np.log(c.file_bits) for c in candidates])
    return np.argmax(costs, axis=0)
