"""Per-face mode decision, as video encoders make it: code each face in every candidate prediction mode, keep the
one with the best rate-distortion trade-off.

The cost of a candidate is J = PSNR - slope * ln(bits), with bits the whole file (base part + enhancement part)
and ``slope`` the codec's own rate-distortion slope dPSNR / d ln(rate) (``RD_SLOPE_DB``): a mode that costs 10 %
more bits must buy at least ``slope * ln 1.1`` dB. Using ln(bits) rather than bits makes the trade-off the same
at every quality, which is what a Bjontegaard comparison (log rate against PSNR) rewards.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from sfc_tf import metrics

# dPSNR / d ln(bits) of each codec coding LFW crops directly, read off the anchor curves of
# eval/results/rate_distortion*.json: JPEG 9-11 dB per e-fold between qualities 5 and 60, JPEG2000 7.4-7.6 between
# ratios 200 and 25, the shipped end-to-end learned family (bls2017-original) 4.7, 4.6, 4.4 between its qualities
# 1 and 4 (rate_distortion_learned.json; 6.5 until the family was trained on, which over-rewarded PSNR).
RD_SLOPE_DB = {"jpeg": 10.0, "jpeg2000": 7.5, "learned": 4.5, "conditional": 4.5}


@dataclasses.dataclass
class Candidate:
    """One mode's coding of a batch of faces."""

    mode: int
    coded: list  # layer.Coded per face
    decoded: np.ndarray  # (N, H, W, 3) uint8 faces as the decoder will see them
    file_bits: np.ndarray  # (N,) bits of each whole .sfc file in this mode


def psnr(crops: np.ndarray, decoded: np.ndarray) -> np.ndarray:
    """Per-face PSNR, capped like every PSNR we report (a losslessly coded face is not infinitely good)."""
    return np.minimum(metrics.psnr(crops, decoded), metrics.PSNR_CEILING_DB)


def choose(crops: np.ndarray, candidates: list[Candidate], slope: float) -> np.ndarray:
    """Index into ``candidates`` of the best mode for each face (ties: the earlier candidate)."""
    costs = np.stack([psnr(crops, c.decoded) - slope * np.log(c.file_bits) for c in candidates])
    return np.argmax(costs, axis=0)
