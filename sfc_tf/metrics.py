"""Evaluation metrics: face verification accuracy (facenet's k-fold protocol), PSNR."""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

# facenet's validate_on_lfw: squared L2 distance thresholds 0, 0.01, ..., 3.99.
THRESHOLDS = np.arange(0.0, 4.0, 0.01)


@dataclasses.dataclass(frozen=True)
class VerificationResult:
    accuracy: float  # mean over test folds
    accuracy_std: float
    fold_accuracies: tuple[float, ...]
    thresholds: tuple[float, ...]  # threshold chosen for each test fold (on the other folds)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def squared_distances(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Row-wise squared L2 distance of two (N, D) feature arrays."""
    return np.sum((np.asarray(first, np.float64) - np.asarray(second, np.float64)) ** 2, axis=1)


def verification_accuracy(
    distances: np.ndarray, same: np.ndarray, folds: np.ndarray, thresholds: np.ndarray = THRESHOLDS
) -> VerificationResult:
    """k-fold verification: for each fold, pick the threshold with the best accuracy on the other folds
    (ties: the smallest), and report accuracy on the fold. A pair is "same" when distance < threshold."""
    distances, same, folds = np.asarray(distances), np.asarray(same, bool), np.asarray(folds)
    if not (len(distances) == len(same) == len(folds)):
        raise ValueError("distances, same and folds must have the same length")
    fold_ids = np.unique(folds)
    if len(fold_ids) < 2:
        raise ValueError("k-fold verification needs at least two folds")
    predictions = distances[None, :] < thresholds[:, None]  # (T, N)
    correct = predictions == same[None, :]
    accuracies, chosen = [], []
    for fold in fold_ids:
        test = folds == fold
        best = int(np.argmax(correct[:, ~test].mean(axis=1)))
        chosen.append(float(thresholds[best]))
        accuracies.append(float(correct[best, test].mean()))
    return VerificationResult(float(np.mean(accuracies)), float(np.std(accuracies)), tuple(accuracies), tuple(chosen))


def pair_arrays(pairs: Sequence, index: dict[str, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Row indices of each pair's two images, same flags and folds, for ``folders.Pair`` lists."""
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


def evaluate_pairs(
    pairs: Sequence,
    index: dict[str, int],
    features_a: np.ndarray,
    features_b: np.ndarray | None = None,
    mean: np.ndarray | None = None,
) -> VerificationResult:
    """Verification accuracy of ``pairs`` where the first image's feature comes from ``features_a`` and the
    second's from ``features_b`` (default: the same array), both indexed by ``index``; with ``mean``, the
    features are ``centered`` first."""
    first, second, same, folds = pair_arrays(pairs, index)
    features_b = features_a if features_b is None else features_b
    distances = squared_distances(centered(features_a[first], mean), centered(features_b[second], mean))
    return verification_accuracy(distances, same, folds)


def evaluate_type_i(
    pairs: Sequence, index: dict[str, int], rebuilt: np.ndarray, original: np.ndarray
) -> VerificationResult:
    """NbNet's type-I attack in the LFW pair protocol: a matched pair gives each image's reconstruction against
    its own original, a mismatched pair each image's reconstruction against the other image's original."""
    first, second, same, folds = pair_arrays(pairs, index)
    target_of_first, target_of_second = np.where(same, first, second), np.where(same, second, first)
    distances = np.concatenate(
        [
            squared_distances(rebuilt[first], original[target_of_first]),
            squared_distances(rebuilt[second], original[target_of_second]),
        ]
    )
    return verification_accuracy(distances, np.tile(same, 2), np.tile(folds, 2))


def distance_matrix(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Squared L2 distance of every row of ``first`` to every row of ``second``."""
    first, second = np.asarray(first, np.float64), np.asarray(second, np.float64)
    squared = np.sum(first**2, 1)[:, None] + np.sum(second**2, 1)[None, :] - 2 * first @ second.T
    return np.maximum(squared, 0.0)


def tar_at_far(genuine: np.ndarray, impostor: np.ndarray, far: float) -> tuple[float, float]:
    """True accept rate of ``genuine`` distances at the threshold accepting at most ``far`` of the ``impostor``
    distances (accepted: distance < threshold), and that threshold."""
    impostor = np.sort(np.asarray(impostor, np.float64))
    accepted = int(np.floor(far * len(impostor)))
    if accepted < 1:
        raise ValueError(f"{len(impostor)} impostor distances cannot resolve a false accept rate of {far}")
    threshold = float(impostor[accepted])
    return float(np.mean(np.asarray(genuine) < threshold)), threshold


def reconstruction_attacks(
    rebuilt: np.ndarray, original: np.ndarray, identities: Sequence[str], far: float = 1e-3
) -> dict:
    """NbNet's attacks on a set of images: TAR of each reconstruction against the original it was made from
    (type I) and against every other original of the same identity (type II), at the threshold where ``far``
    of all cross-identity pairs of originals are accepted (the system's own operating point)."""
    identities = np.asarray(identities)
    same = identities[:, None] == identities[None, :]
    originals = distance_matrix(original, original)
    impostor = originals[np.triu(~same, 1)]
    attacks = distance_matrix(rebuilt, original)
    other_same = same & ~np.eye(len(identities), dtype=bool)
    type_i, threshold = tar_at_far(np.diag(attacks), impostor, far)
    type_ii, _ = tar_at_far(attacks[other_same], impostor, far)
    original_genuine, _ = tar_at_far(originals[np.triu(same, 1)], impostor, far)
    return {
        "far": far,
        "threshold": threshold,
        "tar_type_i": type_i,
        "tar_type_ii": type_ii,
        "tar_originals": original_genuine,
        "type_ii_comparisons": int(other_same.sum()),
        "impostor_comparisons": int(len(impostor)),
    }


def psnr(reference: np.ndarray, test: np.ndarray, peak: float = 255.0) -> np.ndarray:
    """Per-image PSNR (dB) of (N, H, W, C) or (H, W, C) arrays; identical images give +inf."""
    reference, test = np.asarray(reference), np.asarray(test)
    axes = tuple(range(reference.ndim - 3, reference.ndim))
    if reference.dtype == test.dtype == np.uint8:  # exact in integers, and 5-10x faster than in float64
        difference = reference.astype(np.int32) - test
        mse = np.sum(difference * difference, axis=axes, dtype=np.int64) / np.prod(reference.shape[-3:])
    else:
        mse = np.mean((reference.astype(np.float64) - test) ** 2, axis=axes)
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(peak**2 / mse)


PSNR_CEILING_DB = 60.0  # libvmaf's cap for 8-bit video (6 dB per bit + 12): lossless images stay finite


def mean_psnr(reference: np.ndarray, test: np.ndarray, ceiling: float = PSNR_CEILING_DB) -> tuple[float, int]:
    """Mean per-image PSNR (dB) with each image capped at ``ceiling``, and how many images hit the cap; an
    uncapped mean is +inf as soon as one image decodes losslessly (e.g. JPEG2000 at low ratios)."""
    values = psnr(reference, test)
    return float(np.mean(np.minimum(values, ceiling))), int(np.count_nonzero(values >= ceiling))
