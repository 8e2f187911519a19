"""Base layer: the FaceNet feature, decorrelated, uniformly quantized and range coded.

Model (fitted on training-identity features only, stored in one ``.npz`` with everything the decoder needs):
  z = (f - mean) @ rotation          PCA rotation (orthogonal), or identity with ``pca=False``
  q = round(z / step)                uniform scalar quantization; ``step`` is the rate knob
  p(q_i)                             per-dimension discrete prior: training histogram of q_i (add-half smoothed)
                                     mixed with a discretised Gaussian of the dimension's spread, quantized to a
                                     16-bit CDF; symbols outside the histogram range take tfc's escape path
                                     (Elias-gamma overflow coding inside the range-coded stream)
  f^ = normalise(mean + (q * step) @ rotation.T)   decoded feature, unit L2 norm as FaceNet's distance expects

Bytes of one face: ``crc16(payload) (2 bytes, big endian) | payload`` where payload is the range-coded
stream (tensorflow-compression's range coder). Each face decodes alone. The two check bytes count in every
rate we report. ``decode`` raises ``BitstreamError`` when a record is shorter than 3 bytes, its CRC does not
match, the range decoder fails or its end-of-stream check fails: a damaged record never yields a feature
(short of a CRC-16 collision, 1 in 65,536 for random damage).
"""

from __future__ import annotations

import binascii
import hashlib
import io
import json
import os
import pathlib

import numpy as np

from sfc_tf.errors import BitstreamError, WeightsError

PRECISION = 16
MAX_HALF_RANGE = 256         # histogram support is at most [-256, 256] quantization bins per dimension
GAUSSIAN_SHARE = 0.05        # weight of the Gaussian component of each dimension's prior
FORMAT_VERSION = 1


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE (binascii.crc_hqx with initial value 0xFFFF)."""
    return binascii.crc_hqx(data, 0xFFFF)


def _gaussian_pmf(half_range: int, sigma_bins: float) -> np.ndarray:
    from scipy.stats import norm

    edges = np.arange(-half_range - 0.5, half_range + 1.5)
    pmf = np.diff(norm.cdf(edges / max(sigma_bins, 1e-3)))
    return pmf / pmf.sum()


class BaseLayerModel:
    """Fitted quantizer + prior. Use ``fit`` to create, ``save``/``load`` to persist."""

    def __init__(self, mean: np.ndarray, rotation: np.ndarray, step: float, half_ranges: np.ndarray,
                 cdfs: np.ndarray, info: dict | None = None):
        self.mean = np.asarray(mean, np.float32)
        self.rotation = np.asarray(rotation, np.float32)
        self.step = float(step)
        self.half_ranges = np.asarray(half_ranges, np.int32)
        self.cdfs = np.asarray(cdfs, np.int32)     # (D, L): -precision, then the CDF, padded with its last value
        self.info = dict(info or {})
        self.dim = len(self.mean)
        self._lookup = None

    # -- fitting -----------------------------------------------------------------------------------------
    @classmethod
    def fit(cls, features: np.ndarray, step: float, pca: bool = True, info: dict | None = None) -> "BaseLayerModel":
        """Fit mean, rotation and per-dimension priors on (N, D) training features for quantizer ``step``."""
        import tensorflow_compression as tfc

        features = np.asarray(features, np.float64)
        if features.ndim != 2 or len(features) < 2:
            raise ValueError("fit needs an (N, D) array of at least two features")
        mean = features.mean(axis=0)
        if pca:
            _, _, vt = np.linalg.svd(features - mean, full_matrices=False)
            rotation = vt.T
        else:
            rotation = np.eye(features.shape[1])
        symbols = np.rint((features - mean) @ rotation / step).astype(np.int64)
        half_ranges = np.clip(np.abs(symbols).max(axis=0), 0, MAX_HALF_RANGE).astype(np.int32)
        sigmas = symbols.std(axis=0) + 0.5
        pmfs = []
        for dim, half in enumerate(half_ranges):
            counts = np.bincount(np.clip(symbols[:, dim], -half, half) + half, minlength=2 * half + 1) + 0.5
            pmf = (1 - GAUSSIAN_SHARE) * counts / counts.sum() + GAUSSIAN_SHARE * _gaussian_pmf(half, sigmas[dim])
            pmfs.append(np.append(pmf * (1 - 1e-4), 1e-4))   # last symbol: escape for out-of-range values
        width = max(len(p) for p in pmfs) + 2
        cdfs = np.zeros((len(pmfs), width), np.int32)
        for dim, pmf in enumerate(pmfs):
            cdf = tfc.pmf_to_quantized_cdf(np.asarray(pmf, np.float32), precision=PRECISION).numpy()
            cdfs[dim, 0] = -PRECISION                          # negative precision enables overflow coding
            cdfs[dim, 1:] = 1 << PRECISION                     # padding: trailing zero-probability symbols
            cdfs[dim, 1:1 + len(cdf)] = cdf
        return cls(mean, rotation, step, half_ranges, cdfs, {**(info or {}), "pca": pca, "fit_samples": len(features)})

    # -- persistence -------------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        path = pathlib.Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        np.savez(buffer, mean=self.mean, rotation=self.rotation, step=np.float64(self.step),
                 half_ranges=self.half_ranges, cdfs=self.cdfs, info=np.array(json.dumps(self.info)),
                 version=np.int32(FORMAT_VERSION))
        path.write_bytes(buffer.getvalue())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "BaseLayerModel":
        try:
            with np.load(path, allow_pickle=False) as archive:
                if int(archive["version"]) != FORMAT_VERSION:
                    raise WeightsError(f"{path}: base-layer model version {int(archive['version'])} unsupported")
                return cls(archive["mean"], archive["rotation"], float(archive["step"]), archive["half_ranges"],
                           archive["cdfs"], json.loads(str(archive["info"])))
        except (OSError, KeyError, ValueError) as exc:
            raise WeightsError(f"cannot load base-layer model {path}: {exc}") from exc

    @property
    def model_id(self) -> str:
        """sha256 over everything that determines the bitstream (the bitstream records its first bytes)."""
        digest = hashlib.sha256()
        for array in (self.mean, self.rotation, np.float64(self.step), self.half_ranges, self.cdfs):
            digest.update(np.ascontiguousarray(array).tobytes())
        return digest.hexdigest()

    # -- quantization ------------------------------------------------------------------------------------
    def quantize(self, features: np.ndarray) -> np.ndarray:
        features = np.asarray(features, np.float32)
        if features.ndim != 2 or features.shape[1] != self.dim:
            raise ValueError(f"expected (N, {self.dim}) features, got {features.shape}")
        return np.rint((features - self.mean) @ self.rotation / self.step).astype(np.int32)

    def dequantize(self, symbols: np.ndarray) -> np.ndarray:
        features = self.mean + (np.asarray(symbols, np.float32) * self.step) @ self.rotation.T
        norms = np.linalg.norm(features, axis=1, keepdims=True)
        return (features / np.maximum(norms, 1e-12)).astype(np.float32)

    def quantize_dequantize(self, features: np.ndarray) -> np.ndarray:
        """Exactly what ``decode(encode(features))`` returns, without entropy coding."""
        return self.dequantize(self.quantize(features))

    def entropy_bits(self, features: np.ndarray) -> np.ndarray:
        """Ideal code length (bits) of each feature's symbols under the prior (escapes: gamma-code length)."""
        symbols = self.quantize(features)
        pmf = np.diff(self.cdfs[:, 1:].astype(np.float64), axis=1).clip(min=0) / 2.0 ** PRECISION
        bits = np.zeros(len(symbols))
        for dim, half in enumerate(self.half_ranges):
            values = symbols[:, dim] + half
            inside = (values >= 0) & (values <= 2 * half)
            bits[inside] -= np.log2(pmf[dim, values[inside]])
            outside = values[~inside]
            escape = -np.log2(pmf[dim, 2 * half + 1])
            overflow = np.where(outside < 0, -outside - 1, outside - 2 * half - 1)
            bits[~inside] += escape + 2 * np.floor(np.log2(overflow + 1)) + 1
        return bits

    # -- coding ------------------------------------------------------------------------------------------
    def _tables(self):
        import tensorflow as tf

        if self._lookup is None:
            self._lookup = tf.constant(self.cdfs)
            self._index = np.arange(self.dim, dtype=np.int32)
        return self._lookup

    def encode(self, features: np.ndarray) -> list[bytes]:
        """(N, D) features -> N independent byte strings (CRC-16 + range-coded symbols), one op call."""
        import tensorflow as tf
        import tensorflow_compression as tfc

        symbols = self.quantize(features)
        if len(symbols) == 0:
            return []
        values = symbols + self.half_ranges              # offset so the histogram range starts at 0
        handle = tfc.create_range_encoder([len(values)], self._tables())
        index = np.broadcast_to(self._index, values.shape)
        handle = tfc.entropy_encode_index(handle, tf.constant(index), tf.constant(values))
        payloads = tfc.entropy_encode_finalize(handle).numpy()
        return [crc16(p).to_bytes(2, "big") + p for p in payloads]

    def decode(self, records: list[bytes]) -> np.ndarray:
        """N byte strings -> (N, D) unit-norm features. Raises ``BitstreamError`` for damaged records."""
        import tensorflow as tf
        import tensorflow_compression as tfc

        payloads = []
        for i, record in enumerate(records):
            if not isinstance(record, (bytes, bytearray)) or len(record) < 3:
                raise BitstreamError(f"base-layer record {i}: {len(record) if record else 0} bytes, need at least 3")
            if crc16(bytes(record[2:])) != int.from_bytes(record[:2], "big"):
                raise BitstreamError(f"base-layer record {i}: CRC mismatch (corrupt or truncated)")
            payloads.append(bytes(record[2:]))
        if not payloads:
            return np.zeros((0, self.dim), np.float32)
        try:
            handle = tfc.create_range_decoder(tf.constant(payloads), self._tables())
            index = tf.constant(np.broadcast_to(self._index, (len(payloads), self.dim)))
            handle, values = tfc.entropy_decode_index(handle, index, tf.constant([self.dim]), tf.int32)
            ok = tfc.entropy_decode_finalize(handle).numpy()
        except tf.errors.OpError as exc:
            raise BitstreamError(f"base-layer range decoding failed: {exc.message}") from exc
        if not np.all(ok):
            raise BitstreamError(f"base-layer records {np.flatnonzero(~ok).tolist()}: range decoder end check failed")
        return self.dequantize(values.numpy() - self.half_ranges)


def load(path: str | os.PathLike) -> BaseLayerModel:
    return BaseLayerModel.load(path)
