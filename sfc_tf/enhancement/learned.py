"""Learned enhancement codec: Balle, Laparra, Simoncelli 2016/17, "End-to-end optimized image compression",
with tensorflow-compression, following tfc's ``models/bls2017.py`` and the paper's change to 128 filters.

Analysis: three strided convolutions (9x9 /4, 5x5 /2, 5x5 /2) with GDN after the first two; synthesis mirrors
it with inverse GDN; a factorized ("deep factorized", noisy) entropy model; real range coding. Trained with
loss = bits per pixel + lambda x MSE (pixels in 0..255).

Payload: ``latent height (1 byte) | latent width (1 byte) | range-coded latent`` (image = 16 x latent size).
Decoding runs on the CPU (range decoding is exact; the synthesis convolutions are deterministic there, checked
across processes by the tests; ``tf.config.experimental.enable_op_determinism`` is not switched on globally
because it forbids unseeded random initialisers elsewhere in the process); the entropy model's quantized CDF tables are hashed at export and checked at load
(``WeightsError`` if this platform computes different tables, which would break bit-exact decoding).
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib

import numpy as np
import tensorflow as tf
import tensorflow_compression as tfc

from sfc_tf.enhancement import LEARNED, ImageCodec
from sfc_tf.errors import BitstreamError, WeightsError

NUM_FILTERS = 128
DOWNSCALE = 16
WEIGHTS = "weights"          # TF checkpoint prefix (object-based: transforms + prior, no optimizer state)
WEIGHT_FILES = ("weights.index", "weights.data-00000-of-00001")
META_FILE = "meta.json"


class AnalysisTransform(tf.keras.Sequential):
    def __init__(self, num_filters: int):
        super().__init__(name="analysis")
        self.add(tf.keras.layers.Lambda(lambda x: x / 255.0))
        self.add(tfc.SignalConv2D(num_filters, (9, 9), name="layer_0", corr=True, strides_down=4,
                                  padding="same_zeros", use_bias=True, activation=tfc.GDN(name="gdn_0")))
        self.add(tfc.SignalConv2D(num_filters, (5, 5), name="layer_1", corr=True, strides_down=2,
                                  padding="same_zeros", use_bias=True, activation=tfc.GDN(name="gdn_1")))
        self.add(tfc.SignalConv2D(num_filters, (5, 5), name="layer_2", corr=True, strides_down=2,
                                  padding="same_zeros", use_bias=False, activation=None))


class SynthesisTransform(tf.keras.Sequential):
    def __init__(self, num_filters: int):
        super().__init__(name="synthesis")
        self.add(tfc.SignalConv2D(num_filters, (5, 5), name="layer_0", corr=False, strides_up=2,
                                  padding="same_zeros", use_bias=True,
                                  activation=tfc.GDN(name="igdn_0", inverse=True)))
        self.add(tfc.SignalConv2D(num_filters, (5, 5), name="layer_1", corr=False, strides_up=2,
                                  padding="same_zeros", use_bias=True,
                                  activation=tfc.GDN(name="igdn_1", inverse=True)))
        self.add(tfc.SignalConv2D(3, (9, 9), name="layer_2", corr=False, strides_up=4,
                                  padding="same_zeros", use_bias=True, activation=None))
        self.add(tf.keras.layers.Lambda(lambda x: x * 255.0))


class BLS2017(tf.keras.Model):
    """The end-to-end model; ``call`` returns (loss, bpp, mse) like tfc's bls2017.py."""

    def __init__(self, lmbda: float, num_filters: int = NUM_FILTERS):
        super().__init__()
        self.lmbda, self.num_filters = float(lmbda), int(num_filters)
        self.analysis_transform = AnalysisTransform(num_filters)
        self.synthesis_transform = SynthesisTransform(num_filters)
        self.prior = tfc.NoisyDeepFactorized(batch_shape=(num_filters,))
        self.build((None, None, None, 3))
        self.entropy_model = None

    def call(self, x, training=False):
        entropy_model = tfc.ContinuousBatchedEntropyModel(self.prior, coding_rank=3, compression=False)
        x = tf.cast(x, self.compute_dtype)
        y = self.analysis_transform(x)
        y_hat, bits = entropy_model(y, training=training)
        x_hat = self.synthesis_transform(y_hat)
        num_pixels = tf.cast(tf.reduce_prod(tf.shape(x)[:-1]), bits.dtype)
        bpp = tf.reduce_sum(bits) / num_pixels
        mse = tf.cast(tf.reduce_mean(tf.math.squared_difference(x, x_hat)), bpp.dtype)
        return bpp + self.lmbda * mse, bpp, mse

    def train_step(self, data):
        x, _, _ = tf.keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            loss, bpp, mse = self(x, training=True)
        self.optimizer.minimize(loss, self.trainable_variables, tape=tape)
        return self._update(loss, bpp, mse)

    def test_step(self, data):
        x, _, _ = tf.keras.utils.unpack_x_y_sample_weight(data)
        return self._update(*self(x, training=False))

    def _update(self, loss, bpp, mse):
        for metric, value in zip(self.tracked, (loss, bpp, mse)):
            metric.update_state(value)
        return {m.name: m.result() for m in self.tracked}

    def compile(self, **kwargs):
        super().compile(loss=None, metrics=None, loss_weights=None, weighted_metrics=None, **kwargs)
        self.tracked = [tf.keras.metrics.Mean(name) for name in ("loss", "bpp", "mse")]

    @property
    def metrics(self):
        return getattr(self, "tracked", [])

    def enable_coding(self):
        """Build the range-coding tables from the trained prior (after training or loading)."""
        self.entropy_model = tfc.ContinuousBatchedEntropyModel(self.prior, coding_rank=3, compression=True)
        return self

    def table_sha256(self) -> str:
        digest = hashlib.sha256()
        for table in (self.entropy_model.cdf, self.entropy_model.cdf_offset):
            digest.update(np.asarray(table).tobytes())
        return digest.hexdigest()

    @tf.function(input_signature=[tf.TensorSpec((None, None, None, 3), tf.uint8)])
    def compress(self, x):
        """uint8 images (N, H, W, 3), H and W multiples of 16 -> N strings."""
        return self.entropy_model.compress(self.analysis_transform(tf.cast(x, self.compute_dtype)))

    @tf.function(input_signature=[tf.TensorSpec((None,), tf.string), tf.TensorSpec((2,), tf.int32)])
    def decompress(self, strings, latent_shape):
        """N strings + latent (height, width) -> uint8 images (N, 16 h, 16 w, 3)."""
        y_hat = self.entropy_model.decompress(strings, latent_shape)
        return tf.saturate_cast(tf.round(self.synthesis_transform(y_hat)), tf.uint8)

    def estimated_bits(self, x) -> np.ndarray:
        """Per image, the entropy model's rate estimate (bits) of the quantized latent."""
        y = self.analysis_transform(tf.cast(x, self.compute_dtype))
        _, bits = self.entropy_model(y, training=False)
        return bits.numpy()


def _weights(model: BLS2017) -> tf.train.Checkpoint:
    return tf.train.Checkpoint(analysis_transform=model.analysis_transform,
                               synthesis_transform=model.synthesis_transform, prior=model.prior)


def restore_weights(model: BLS2017, directory: str | os.PathLike) -> BLS2017:
    """Reads the weights saved by ``save`` into ``model`` (same number of filters)."""
    _weights(model).read(str(pathlib.Path(directory) / WEIGHTS)).assert_existing_objects_matched()
    return model


def weights_sha256(directory: pathlib.Path) -> str:
    digest = hashlib.sha256()
    for name in WEIGHT_FILES:
        digest.update((directory / name).read_bytes())
    return digest.hexdigest()


def save(model: BLS2017, directory: str | os.PathLike, **meta) -> dict:
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    _weights(model).write(str(directory / WEIGHTS))
    model.enable_coding()
    record = {**meta, "lmbda": model.lmbda, "num_filters": model.num_filters,
              "sha256": weights_sha256(directory),
              "cdf_table_sha256": model.table_sha256()}
    (directory / META_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return record


def load_model(directory: str | os.PathLike) -> tuple[BLS2017, dict]:
    directory = pathlib.Path(directory)
    if not all((directory / name).is_file() for name in (META_FILE, *WEIGHT_FILES)):
        raise WeightsError(f"no learned enhancement checkpoint in {directory}")
    meta = json.loads((directory / META_FILE).read_text())
    if weights_sha256(directory) != meta["sha256"]:
        raise WeightsError(f"{directory}: weights do not match the sha256 in {META_FILE}")
    model = restore_weights(BLS2017(meta["lmbda"], meta["num_filters"]), directory)
    model.enable_coding()
    if model.table_sha256() != meta["cdf_table_sha256"]:
        raise WeightsError(f"{directory}: this platform computes different range-coding tables than the encoder's")
    return model, meta


class LearnedCodec(ImageCodec):
    """``ImageCodec`` over a trained BLS2017 model; ``parameter`` is the checkpoint directory."""

    codec_id = LEARNED

    def __init__(self, model: BLS2017, directory: str, model_id: str):
        super().__init__(str(directory))
        self.model, self.model_id = model, model_id

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "LearnedCodec":
        model, meta = load_model(directory)
        return cls(model, str(directory), meta["sha256"])

    def encode_many(self, images: np.ndarray) -> list[bytes]:
        images = np.asarray(images)
        if images.ndim != 4 or images.dtype != np.uint8 or images.shape[-1] != 3:
            raise ValueError(f"expected (N, H, W, 3) uint8 images, got {images.dtype} {images.shape}")
        height, width = images.shape[1:3]
        if height % DOWNSCALE or width % DOWNSCALE or max(height, width) // DOWNSCALE > 255:
            raise ValueError(f"image sides must be multiples of {DOWNSCALE} up to {255 * DOWNSCALE}")
        header = bytes([height // DOWNSCALE, width // DOWNSCALE])
        with tf.device("/CPU:0"):
            strings = self.model.compress(tf.constant(images)).numpy()
        return [header + s for s in strings]

    def encode(self, image: np.ndarray) -> bytes:
        return self.encode_many(self.check_image(image)[None])[0]

    def decode_many(self, records: list[bytes]) -> np.ndarray:
        if not records:
            raise BitstreamError("no learned-codec payloads to decode")
        headers = {bytes(r[:2]) for r in records}
        if any(len(r) < 3 for r in records) or len(headers) != 1 or 0 in next(iter(headers)):
            raise BitstreamError("learned-codec payloads are truncated or of different sizes")
        latent = list(next(iter(headers)))
        try:
            with tf.device("/CPU:0"):
                images = self.model.decompress(tf.constant([bytes(r[2:]) for r in records]),
                                               tf.constant(latent, tf.int32)).numpy()
        except tf.errors.OpError as exc:
            raise BitstreamError(f"learned-codec range decoding failed: {exc.message}") from exc
        return images

    def decode(self, data: bytes) -> np.ndarray:
        return self.decode_many([data])[0]
