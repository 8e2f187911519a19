"""Discrete priors for the base layer's range coder: per-dimension histograms of training symbols, smoothed and
mixed with a discretised Gaussian, as tensorflow-compression CDF table rows (16-bit precision)."""

from __future__ import annotations

import numpy as np

PRECISION = 16
GAUSSIAN_SHARE = 0.05  # weight of the Gaussian component of each dimension's prior


def gaussian_pmf(half_range: int, sigma_bins: float) -> np.ndarray:
    from scipy.stats import norm

    edges = np.arange(-half_range - 0.5, half_range + 1.5)
    pmf = np.diff(norm.cdf(edges / max(sigma_bins, 1e-3)))
    return pmf / pmf.sum()


def cdf_row(pmf: np.ndarray) -> np.ndarray:
    """tfc table row: precision, then the quantized CDF of ``pmf``."""
    import tensorflow_compression as tfc

    cdf = tfc.pmf_to_quantized_cdf(np.asarray(pmf, np.float32), precision=PRECISION).numpy()
    return np.concatenate([[PRECISION], cdf]).astype(np.int32)


def histogram_cdfs(symbols: np.ndarray, half_ranges: np.ndarray, escape_probability: float = 0.0) -> np.ndarray:
    """(N, D) training symbols -> (D, L) CDF rows, padded with 2**16: dimension d's prior over [-h_d, h_d]
    (add-half smoothed histogram mixed with a Gaussian of its spread), plus an escape symbol of
    ``escape_probability`` when it is positive."""
    sigmas = symbols.std(axis=0) + 0.5
    rows = []
    for dim, half in enumerate(half_ranges):
        counts = np.bincount(np.clip(symbols[:, dim], -half, half) + half, minlength=2 * half + 1) + 0.5
        pmf = (1 - GAUSSIAN_SHARE) * counts / counts.sum() + GAUSSIAN_SHARE * gaussian_pmf(half, sigmas[dim])
        if escape_probability > 0:
            pmf = np.append(pmf * (1 - escape_probability), escape_probability)
        rows.append(cdf_row(pmf))
    return pad_rows(rows)


def pmfs(cdfs: np.ndarray) -> np.ndarray:
    """CDF table rows (precision first, as ``cdf_row`` makes them) -> the probability of each symbol (float64;
    padding after a row's end gives 0)."""
    return np.diff(np.asarray(cdfs)[..., 1:].astype(np.float64), axis=-1) / 2.0**PRECISION


def pad_rows(rows) -> np.ndarray:
    """CDF rows of different lengths -> one (R, L) table padded with 2**16 (the range coder reads each row up to
    its final 2**16)."""
    table = np.full((len(rows), max(len(r) for r in rows)), 1 << PRECISION, np.int32)
    for i, row in enumerate(rows):
        table[i, : len(row)] = row
    return table
