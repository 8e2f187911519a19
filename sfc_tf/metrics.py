"""Evaluation metrics: face verification accuracy (facenet's k-fold protocol), PSNR."""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

# facenet's validate_on_lfw: squared L2 distance thresholds 0, 0.01, ..., 3.99.
THRESHOLDS = np.arange(0.0, 4.0, 0.01)


@dataclasses.dataclass(frozen=True)
class VerificationResult:
    accuracy: float            # mean over test folds
    accuracy_std: float
    fold_accuracies: tuple[float, ...]
    thresholds: tuple[float, ...]  # threshold chosen for each test fold (on the other folds)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def squared_distances(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Row-wise squared L2 distance of two (N, D) feature arrays."""
    return np.sum((np.asarray(first, np.float64) - np.asarray(second, np.float64)) ** 2, axis=1)


def verification_accuracy(distances: np.ndarray, same: np.ndarray, folds: np.ndarray,
                          thresholds: np.ndarray = THRESHOLDS) -> VerificationResult:
    """k-fold verification: for each fold, pick the threshold with the best accuracy on the other folds
    (ties: the smallest), and report accuracy on the fold. A pair is "same" when distance < threshold."""
    distances, same, folds = np.asarray(distances), np.asarray(same, bool), np.asarray(folds)
    if not (len(distances) == len(same) == len(folds)):
        raise ValueError("distances, same and folds must have the same length")
    fold_ids = np.unique(folds)
    if len(fold_ids) < 2:
        raise ValueError("k-fold verification needs at least two folds")
    predictions = distances[None, :] < thresholds[:, None]          # (T, N)
    correct = predictions == same[None, :]
    accuracies, chosen = [], []
    for fold in fold_ids:
        test = folds == fold
        best = int(np.argmax(correct[:, ~test].mean(axis=1)))
        chosen.append(float(thresholds[best]))
        accuracies.append(float(correct[best, test].mean()))
    return VerificationResult(float(np.mean(accuracies)), float(np.std(accuracies)), tuple(accuracies),
                              tuple(chosen))


def pair_arrays(pairs: Sequence, index: dict[str, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Row indices of each pair's two images, same flags and folds, for ``data.Pair`` lists."""
    first = np.array([index[p.first] for p in pairs])
    second = np.array([index[p.second] for p in pairs])
    return first, second, np.array([p.same for p in pairs]), np.array([p.fold for p in pairs])


def centered(features: np.ndarray, mean: np.ndarray | None) -> np.ndarray:
    """Features minus ``mean`` (the mean training-identity feature), re-normalised to unit L2 norm: facenet's
    ``subtract_mean`` option, with the mean taken from training identities so no test statistic leaks in.
    ``mean=None`` returns the features unchanged."""
    if mean is None:
        return np.asarray(features)
    shifted = np.asarray(features, np.float64) - np.asarray(mean, np.float64)
    return shifted / np.maximum(np.linalg.norm(shifted, axis=-1, keepdims=True), 1e-12)


def evaluate_pairs(pairs: Sequence, index: dict[str, int], features_a: np.ndarray,
                   features_b: np.ndarray | None = None, mean: np.ndarray | None = None) -> VerificationResult:
    """Verification accuracy of ``pairs`` where the first image's feature comes from ``features_a`` and the
    second's from ``features_b`` (default: the same array), both indexed by ``index``; with ``mean``, the
    features are ``centered`` first."""
    first, second, same, folds = pair_arrays(pairs, index)
    features_b = features_a if features_b is None else features_b
    distances = squared_distances(centered(features_a[first], mean), centered(features_b[second], mean))
    return verification_accuracy(distances, same, folds)


def psnr(reference: np.ndarray, test: np.ndarray, peak: float = 255.0) -> np.ndarray:
    """Per-image PSNR (dB) of (N, H, W, C) or (H, W, C) arrays; identical images give +inf."""
    reference, test = np.asarray(reference, np.float64), np.asarray(test, np.float64)
    axes = tuple(range(reference.ndim - 3, reference.ndim))
    mse = np.mean((reference - test) ** 2, axis=axes)
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(peak ** 2 / mse)


PSNR_CEILING_DB = 60.0    # libvmaf's cap for 8-bit video (6 dB per bit + 12): lossless images stay finite


def mean_psnr(reference: np.ndarray, test: np.ndarray, ceiling: float = PSNR_CEILING_DB) -> tuple[float, int]:
    """Mean per-image PSNR (dB) with each image capped at ``ceiling``, and how many images hit the cap; an
    uncapped mean is +inf as soon as one image decodes losslessly (e.g. JPEG2000 at low ratios)."""
    values = psnr(reference, test)
    return float(np.mean(np.minimum(values, ceiling))), int(np.count_nonzero(values >= ceiling))


def _bd_integral(x_a, y_a, x_b, y_b, x_name: str) -> float:
    """Mean difference (b - a) of two cubic fits y(x) over the x range both curves cover."""
    low, high = max(min(x_a), min(x_b)), min(max(x_a), max(x_b))
    if low >= high:
        raise ValueError(f"the two curves do not overlap in {x_name}")
    fit_a, fit_b = np.polyfit(x_a, y_a, 3), np.polyfit(x_b, y_b, 3)
    area_a = np.polyval(np.polyint(fit_a), high) - np.polyval(np.polyint(fit_a), low)
    area_b = np.polyval(np.polyint(fit_b), high) - np.polyval(np.polyint(fit_b), low)
    return float((area_b - area_a) / (high - low))


def bd_rate(rates_anchor, psnr_anchor, rates_test, psnr_test) -> float:
    """Bjontegaard delta rate (%): average rate change of the test curve against the anchor at equal PSNR
    (negative = the test saves bits). Needs at least 4 points per curve."""
    difference = _bd_integral(psnr_anchor, np.log(rates_anchor), psnr_test, np.log(rates_test), "PSNR")
    return float((np.exp(difference) - 1) * 100)


def bd_psnr(rates_anchor, psnr_anchor, rates_test, psnr_test) -> float:
    """Bjontegaard delta PSNR (dB): average PSNR gain of the test curve at equal rate."""
    return _bd_integral(np.log(rates_anchor), psnr_anchor, np.log(rates_test), psnr_test, "rate")
