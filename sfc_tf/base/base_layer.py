"""Base layer: the FaceNet feature, decorrelated, uniformly quantized and range coded.

Model (fitted on training-identity features only, stored in one ``.npz`` with everything the decoder needs):
  z = (f - mean) @ rotation          PCA rotation (orthogonal), or identity with ``pca=False``
  q = clip(round(z / step), +-max_symbol)   uniform scalar quantization; ``step`` is the rate knob;
                                     max_symbol = ceil(2 / step) + 1 bounds |q| for any unit-norm feature
  p(q_i)                             per-dimension discrete prior on [-h_i, h_i] (h_i: largest training |q_i|,
                                     at most MAX_HALF_RANGE): training histogram (add-half smoothed) mixed with
                                     a discretised Gaussian of the dimension's spread, plus an escape symbol;
                                     16-bit CDFs
  escape                             a value outside [-h_i, h_i] is coded as the escape symbol, and after the
                                     D symbols (and the thumbnail's), each escaped value in dimension order
                                     under a uniform distribution over [-max_symbol, max_symbol]
  f^ = normalise(mean + (q * step) @ rotation.T)   decoded feature, unit L2 norm as FaceNet's distance expects
  thumbnail                          optional (ours): a g x g colour thumbnail of the crop (``sfc_tf.base.thumbnail``),
                                     its symbols coded after the D feature symbols, before the escapes; a model
                                     with one needs the crops to encode, and its decoder returns the thumbnail

Every table is bounded (tfc's own unbounded overflow code is not used: its Elias-gamma decoder loops forever
on some damaged streams), so decoding any bytes terminates.

Bytes of one face: ``crc16(payload) (2 bytes, big endian) | payload`` where payload is the range-coded
stream (tensorflow-compression's range coder). Each face decodes alone. The two check bytes count in every
rate we report. ``decode`` raises ``BitstreamError`` when a record is shorter than 3 bytes, its CRC does not
match, the range decoder's end-of-stream check fails or an escaped value lies inside its dimension's range
(the encoder never does that): a damaged record never yields a feature (short of a CRC-16 collision, 1 in
65,536 for random damage, which then also has to pass the range decoder's checks).
"""

from __future__ import annotations

import binascii
import functools
import hashlib
import io
import json
import math
import os
import pathlib
from typing import TYPE_CHECKING

import numpy as np

from sfc_tf.base import priors
from sfc_tf.base.thumbnail import Thumbnail
from sfc_tf.errors import BitstreamError, WeightsError, op_error_reason

if TYPE_CHECKING:
    import tensorflow as tf

MAX_HALF_RANGE = 256  # a dimension's prior covers at most [-256, 256] quantization bins, then escapes
ESCAPE_PROBABILITY = 1e-4  # prior probability of the escape symbol in every dimension
FORMAT_VERSION = 2


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE (binascii.crc_hqx with initial value 0xFFFF)."""
    return binascii.crc_hqx(data, 0xFFFF)


def max_symbol_for(step: float) -> int:
    """Largest |q| a unit-norm feature can produce: |z| <= |f| + |mean| <= 2."""
    return math.ceil(2.0 / step) + 1


class BaseLayerModel:
    """Fitted quantizer + prior. Use ``fit`` to create, ``save``/``load`` to persist."""

    def __init__(
        self,
        mean: np.ndarray,
        rotation: np.ndarray,
        step: float,
        half_ranges: np.ndarray,
        cdfs: np.ndarray,
        escape_cdf: np.ndarray,
        info: dict | None = None,
        thumbnail: Thumbnail | None = None,
    ) -> None:
        self.mean = np.asarray(mean, np.float32)
        self.rotation = np.asarray(rotation, np.float32)
        self.step = float(step)
        self.max_symbol = max_symbol_for(self.step)
        self.half_ranges = np.asarray(half_ranges, np.int32)
        self.cdfs = np.asarray(cdfs, np.int32)  # (D, L): precision, CDF of 2h+2 symbols, padded with 2**16
        self.escape_cdf = np.asarray(escape_cdf, np.int32)  # precision, uniform CDF of 2*max_symbol+1 values
        self.info = dict(info or {})
        self.dim = len(self.mean)
        self.thumbnail = thumbnail
        self.coded_dims = self.dim + (thumbnail.dim if thumbnail else 0)  # symbols before any escape
        self._lookup = None

    # -- fitting -----------------------------------------------------------------------------------------
    @classmethod
    def fit(cls, features: np.ndarray, step: float, pca: bool = True, info: dict | None = None) -> "BaseLayerModel":
        """Fit mean, rotation and per-dimension priors on (N, D) training features for quantizer ``step``."""
        features = np.asarray(features, np.float64)
        if features.ndim != 2 or len(features) < 2:
            raise ValueError("fit needs an (N, D) array of at least two features")
        if not step > 0 or 2 * max_symbol_for(step) + 1 > 1 << priors.PRECISION:
            raise ValueError(f"step {step} out of range: need 2 * (ceil(2 / step) + 1) + 1 <= {1 << priors.PRECISION}")
        max_symbol = max_symbol_for(step)
        mean = features.mean(axis=0)
        if pca:
            _, _, vt = np.linalg.svd(features - mean, full_matrices=False)
            rotation = vt.T
        else:
            rotation = np.eye(features.shape[1])
        symbols = np.clip(np.rint((features - mean) @ rotation / step), -max_symbol, max_symbol).astype(np.int64)
        half_ranges = np.clip(np.abs(symbols).max(axis=0), 0, MAX_HALF_RANGE).astype(np.int32)
        cdfs = priors.histogram_cdfs(symbols, half_ranges, ESCAPE_PROBABILITY)
        escape_cdf = priors.cdf_row(np.full(2 * max_symbol + 1, 1.0 / (2 * max_symbol + 1)))
        return cls(
            mean,
            rotation,
            step,
            half_ranges,
            cdfs,
            escape_cdf,
            {**(info or {}), "pca": pca, "fit_samples": len(features)},
        )

    def with_thumbnail(self, thumbnail: Thumbnail, info: dict | None = None) -> "BaseLayerModel":
        """This model with a colour thumbnail coded beside the feature (the feature's bits are unchanged)."""
        arrays = (self.mean, self.rotation, self.step, self.half_ranges, self.cdfs, self.escape_cdf)
        return BaseLayerModel(*arrays, {**self.info, "thumbnail": info or {}}, thumbnail)

    # -- persistence -------------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        path = pathlib.Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        np.savez(
            buffer,
            mean=self.mean,
            rotation=self.rotation,
            step=np.float64(self.step),
            half_ranges=self.half_ranges,
            cdfs=self.cdfs,
            escape_cdf=self.escape_cdf,
            info=np.array(json.dumps(self.info)),
            version=np.int32(FORMAT_VERSION),
            **self._thumbnail_arrays(),
        )
        path.write_bytes(buffer.getvalue())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "BaseLayerModel":
        try:
            with np.load(path, allow_pickle=False) as archive:
                if int(archive["version"]) != FORMAT_VERSION:
                    raise WeightsError(f"{path}: base-layer model version {int(archive['version'])} unsupported")
                thumbnail = None
                if "thumbnail_grid" in archive:
                    thumbnail = Thumbnail(*(archive[f"thumbnail_{name}"] for name in Thumbnail.ARRAYS))
                return cls(
                    archive["mean"],
                    archive["rotation"],
                    float(archive["step"]),
                    archive["half_ranges"],
                    archive["cdfs"],
                    archive["escape_cdf"],
                    json.loads(str(archive["info"])),
                    thumbnail,
                )
        except (OSError, KeyError, ValueError) as exc:
            raise WeightsError(f"cannot load base-layer model {path}: {exc}") from exc

    @functools.cached_property
    def model_id(self) -> str:
        """sha256 over everything that determines the bitstream (the bitstream records its first bytes);
        computed once (hashing the rotation costs more than decoding a face)."""
        digest = hashlib.sha256(f"base_layer v{FORMAT_VERSION}".encode())
        for array in (self.mean, self.rotation, np.float64(self.step), self.half_ranges, self.cdfs, self.escape_cdf):
            digest.update(np.ascontiguousarray(array).tobytes())
        for name, array in self._thumbnail_arrays().items():  # none for a feature-only model: its id is unchanged
            digest.update(name.encode() + np.ascontiguousarray(array).tobytes())
        return digest.hexdigest()

    def correct(self, images: np.ndarray, thumbnails: np.ndarray | None) -> np.ndarray:
        """uint8 predictions of decoded faces with the coarse image of their decoded ``thumbnails`` (as
        ``decode_layers`` returns them; None: a model without a thumbnail, the images unchanged)."""
        return images if thumbnails is None else self.thumbnail.apply(images, thumbnails)

    def _thumbnail_arrays(self) -> dict[str, np.ndarray]:
        return {f"thumbnail_{k}": v for k, v in self.thumbnail.arrays().items()} if self.thumbnail else {}

    # -- quantization ------------------------------------------------------------------------------------
    def quantize(self, features: np.ndarray) -> np.ndarray:
        """(N, D) features -> (N, D) int32 symbols in [-max_symbol, max_symbol]."""
        features = np.asarray(features, np.float32)
        if features.ndim != 2 or features.shape[1] != self.dim:
            raise ValueError(f"expected (N, {self.dim}) features, got {features.shape}")
        if not np.isfinite(features).all():
            raise ValueError("features contain NaN or infinity")
        symbols = np.rint((features - self.mean) @ self.rotation / self.step)
        return np.clip(symbols, -self.max_symbol, self.max_symbol).astype(np.int32)

    def dequantize(self, symbols: np.ndarray) -> np.ndarray:
        """Symbols -> unit-norm float32 features. The product runs in float64 and is rounded once to float32:
        a float32 BLAS product changes its last bits with the batch size (and the reconstruction then changes
        pixels); in float64 the batch changes at most the 16th digit, which the rounding absorbs (the chance that
        one of a face's 512 values sits that close to a float32 rounding boundary is about 1e-6)."""
        features = self.mean.astype(np.float64) + (np.asarray(symbols, np.float64) * self.step) @ self._rotation_t
        norms = np.linalg.norm(features, axis=1, keepdims=True)
        return (features / np.maximum(norms, 1e-12)).astype(np.float32)

    @functools.cached_property
    def _rotation_t(self) -> np.ndarray:
        return np.ascontiguousarray(self.rotation.T, np.float64)

    def quantize_dequantize(self, features: np.ndarray) -> np.ndarray:
        """Exactly what ``decode(encode(features))`` returns, without entropy coding."""
        return self.dequantize(self.quantize(features))

    def entropy_bits(self, features: np.ndarray) -> np.ndarray:
        """Ideal code length (bits) of each feature's symbols under the prior, escapes included."""
        symbols = self.quantize(features)
        pmf, escape_pmf = priors.pmfs(self.cdfs), priors.pmfs(self.escape_cdf)
        bits = np.zeros(len(symbols))
        for dim, half in enumerate(self.half_ranges):
            values = symbols[:, dim] + half
            inside = (values >= 0) & (values <= 2 * half)
            bits[inside] -= np.log2(pmf[dim, values[inside]])
            bits[~inside] -= np.log2(pmf[dim, 2 * half + 1])
            bits[~inside] -= np.log2(escape_pmf[symbols[~inside, dim] + self.max_symbol])
        return bits

    # -- coding ------------------------------------------------------------------------------------------
    def _tables(self) -> tf.Tensor:
        """Ragged tfc lookup: rows 0..D-1 the dimensions' CDFs, then the thumbnail's T rows, then the escape CDF
        (row ``coded_dims``)."""
        import tensorflow as tf

        if self._lookup is None:
            cdfs = self.cdfs if self.thumbnail is None else priors.pad_rows([*self.cdfs, *self.thumbnail.cdfs])
            self._lookup = tf.constant(np.concatenate([cdfs.ravel(), self.escape_cdf]))
        return self._lookup

    def _layout(self, escapes: int) -> np.ndarray:
        """Table index of each coded symbol of a face with ``escapes`` escaped values."""
        return np.concatenate([np.arange(self.coded_dims), np.full(escapes, self.coded_dims)]).astype(np.int32)

    def encode(self, features: np.ndarray, crops: np.ndarray | None = None) -> list[bytes]:
        """(N, D) features (and their crops, for a model with a thumbnail) -> N records: CRC-16 + range-coded
        payload (the unit the rate tables count)."""
        return [crc16(p).to_bytes(2, "big") + p for p in self.encode_payloads(features, crops)]

    def encode_payloads(self, features: np.ndarray, crops: np.ndarray | None = None) -> list[bytes]:
        """(N, D) features (and, for a model with a thumbnail, the (N, S, S, 3) uint8 crops they come from) -> N
        independent range-coded payloads (the .sfc container adds its own CRC), one op call per distinct number
        of escaped values in the batch (usually one)."""
        import tensorflow as tf
        import tensorflow_compression as tfc

        symbols = self.quantize(features)
        outside = np.abs(symbols) > self.half_ranges
        values = np.where(outside, 2 * self.half_ranges + 1, symbols + self.half_ranges).astype(np.int32)
        if self.thumbnail is not None:
            if crops is None:
                raise ValueError("this base layer codes a colour thumbnail: pass the crops beside their features")
            if len(crops) != len(symbols):
                raise ValueError(f"{len(crops)} crops for {len(symbols)} features: one crop per feature")
            values = np.concatenate([values, self.thumbnail.quantize(crops) + self.thumbnail.half_ranges], axis=1)
        counts = outside.sum(axis=1)
        payloads = [b""] * len(symbols)
        for escapes in np.unique(counts):
            rows = np.flatnonzero(counts == escapes)
            escaped = symbols[rows][outside[rows]].reshape(len(rows), escapes) + self.max_symbol
            handle = tfc.create_range_encoder([len(rows)], self._tables())
            index = np.broadcast_to(self._layout(escapes), (len(rows), self.coded_dims + escapes))
            handle = tfc.entropy_encode_index(
                handle, tf.constant(index), tf.constant(np.concatenate([values[rows], escaped], axis=1))
            )
            for row, payload in zip(rows, tfc.entropy_encode_finalize(handle).numpy()):
                payloads[row] = payload
        return payloads

    def _decode_symbols(self, payloads: list[bytes], escapes: int) -> tuple[np.ndarray, tf.Tensor]:
        """Range-decode D + T + ``escapes`` symbols of each payload: (values, the decoders, for ``_ended``)."""
        import tensorflow as tf
        import tensorflow_compression as tfc

        length = self.coded_dims + escapes
        try:
            handle = tfc.create_range_decoder(tf.constant(payloads), self._tables())
            index = tf.constant(np.broadcast_to(self._layout(escapes), (len(payloads), length)))
            handle, values = tfc.entropy_decode_index(handle, index, tf.constant([length]), tf.int32)
            return values.numpy(), handle
        except tf.errors.OpError as exc:
            raise BitstreamError(f"base-layer range decoding failed: {op_error_reason(exc.message)}") from exc

    @staticmethod
    def _ended(decoders: tf.Tensor) -> np.ndarray:
        """Whether each decoder stopped exactly at the end of its payload (tfc's end check)."""
        import tensorflow as tf
        import tensorflow_compression as tfc

        try:
            return tfc.entropy_decode_finalize(decoders).numpy()
        except tf.errors.OpError as exc:
            raise BitstreamError(f"base-layer range decoding failed: {op_error_reason(exc.message)}") from exc

    def decode(self, records: list[bytes]) -> np.ndarray:
        """N records (CRC-16 + payload) -> (N, D) unit-norm features. Raises ``BitstreamError`` for damaged
        records."""
        payloads = []
        for i, record in enumerate(records):
            if not isinstance(record, (bytes, bytearray)) or len(record) < 3:
                raise BitstreamError(f"base-layer record {i}: not bytes of at least 3 bytes")
            if crc16(bytes(record[2:])) != int.from_bytes(record[:2], "big"):
                raise BitstreamError(f"base-layer record {i}: CRC mismatch (corrupt or truncated)")
            payloads.append(bytes(record[2:]))
        return self.decode_payloads(payloads)

    def decode_payloads(self, payloads: list[bytes]) -> np.ndarray:
        """N range-coded payloads -> (N, D) unit-norm features (a thumbnail is decoded and dropped: analysis).
        Raises ``BitstreamError`` when the range decoder or the escape check rejects a payload."""
        return self.decode_layers(payloads)[0]

    def decode_layers(self, payloads: list[bytes]) -> tuple[np.ndarray, np.ndarray | None]:
        """N range-coded payloads -> ((N, D) unit-norm features, (N, 3 g^2) thumbnails, or None for a model
        without one). Raises ``BitstreamError`` when the range decoder or the escape check rejects a payload."""
        payloads = [bytes(p) for p in payloads]
        if any(not p for p in payloads):
            raise BitstreamError("empty base-layer payload")
        if not payloads:
            thumbnails = None if self.thumbnail is None else np.zeros((0, self.thumbnail.dim))
            return np.zeros((0, self.dim), np.float32), thumbnails
        values, decoders = self._decode_symbols(payloads, 0)
        thumbnails = None
        if self.thumbnail is not None:
            thumbnails = self.thumbnail.dequantize(values[:, self.dim :] - self.thumbnail.half_ranges)
            values = values[:, : self.dim]
        escaped = values == 2 * self.half_ranges + 1
        symbols = values - self.half_ranges
        counts = escaped.sum(axis=1)
        # The number of escaped values a payload holds after its D + T symbols is known once those are read. When
        # no payload has any, the first pass read every payload whole and its end check is the check. Otherwise
        # the first pass stopped short of some ends, and tfc's end check would report those decoders as failed
        # ("RangeDecoder #N final status was an error" in its log): it is skipped, and every payload is decoded
        # again with its own number of escapes and checked there.
        ok = self._ended(decoders) if not counts.any() else np.zeros(len(payloads), bool)
        for escapes in np.unique(counts) if counts.any() else ():
            rows = np.flatnonzero(counts == escapes)
            more, decoders = self._decode_symbols([payloads[r] for r in rows], escapes)
            ok[rows] = self._ended(decoders)
            if not escapes:
                continue
            extra = more[:, self.coded_dims :] - self.max_symbol
            dims = np.nonzero(escaped[rows])[1].reshape(len(rows), escapes)
            if np.any(np.abs(extra) <= self.half_ranges[dims]):
                raise BitstreamError(f"base-layer records {rows.tolist()}: escaped value inside the prior's range")
            symbols[rows[:, None], dims] = extra
        if not np.all(ok):
            raise BitstreamError(f"base-layer records {np.flatnonzero(~ok).tolist()}: range decoder end check failed")
        return self.dequantize(symbols), thumbnails


def load(path: str | os.PathLike) -> BaseLayerModel:
    return BaseLayerModel.load(path)
