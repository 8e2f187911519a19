"""Learned enhancement codec: Balle, Laparra, Simoncelli 2016/17, "End-to-end optimized image compression",
with tensorflow-compression, following tfc's ``models/bls2017.py`` and the paper's change to 128 filters.

Analysis: three strided convolutions (9x9 /4, 5x5 /2, 5x5 /2) with GDN after the first two; synthesis mirrors
it with inverse GDN; a factorized ("deep factorized", noisy) entropy model; real range coding. Trained with
loss = bits per pixel + lambda x MSE (pixels in 0..255).

Payload: the range-coded latent (its shape is the crop's / 16, fixed by the model set). Decoding runs on the CPU
(range decoding is exact; the synthesis convolutions are deterministic there, checked across processes by the
tests; ``tf.config.experimental.enable_op_determinism`` is not switched on globally because it forbids unseeded
random initialisers elsewhere in the process); the range-coding tables are stored with the weights at save
(``coding_tables``) and hashed, so every platform codes with the encoder's own tables (``WeightsError`` if they
do not match). ``RateCoder`` runs one rate of any learned model (this one or ``face_codec.FaceCodec``) as graph
functions shared by the in-process codec and the SavedModel export.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import pathlib
import shutil
import uuid

import numpy as np
import tensorflow as tf
import tensorflow_compression as tfc

from sfc_tf import checkpoint
from sfc_tf.bitstream import CONDITIONAL, LEARNED
from sfc_tf.enhancement import CROP_SHAPE, ImageCodec, coding_tables, range_guard
from sfc_tf.enhancement.rd_metrics import RateDistortionMetrics
from sfc_tf.enhancement.signal_conv import signal_conv
from sfc_tf.errors import BitstreamError, WeightsError, op_error_reason

NUM_FILTERS = 128
DOWNSCALE = 16
WEIGHTS = "weights"  # TF checkpoint prefix (object-based: transforms + prior, no optimizer state)
WEIGHT_FILES = ("weights.index", "weights.data-00000-of-00001")
HALF_WEIGHTS_FILE = "weights16.npz"  # the same variables stored as float16 (half the bytes of a shipped model)
MANIFEST = "manifest"  # in HALF_WEIGHTS_FILE: each stored variable's stable name, in key order, checked at load
WEIGHT_DTYPES = ("float32", "float16")
META_FILE = checkpoint.META_FILE


class AnalysisTransform(tf.keras.Sequential):
    def __init__(self, num_filters: int):
        super().__init__(name="analysis")
        self.add(tf.keras.layers.Lambda(lambda x: x / 255.0))
        self.add(signal_conv(num_filters, 9, down=4, activation=tfc.GDN(name="gdn_0"), name="layer_0"))
        self.add(signal_conv(num_filters, 5, down=2, activation=tfc.GDN(name="gdn_1"), name="layer_1"))
        self.add(signal_conv(num_filters, 5, down=2, bias=False, name="layer_2"))


class SynthesisTransform(tf.keras.Sequential):
    def __init__(self, num_filters: int):
        super().__init__(name="synthesis")
        self.add(signal_conv(num_filters, 5, up=2, activation=tfc.GDN(name="igdn_0", inverse=True), name="layer_0"))
        self.add(signal_conv(num_filters, 5, up=2, activation=tfc.GDN(name="igdn_1", inverse=True), name="layer_1"))
        self.add(signal_conv(3, 9, up=4, name="layer_2"))
        self.add(tf.keras.layers.Lambda(lambda x: x * 255.0))


class BLS2017(RateDistortionMetrics, tf.keras.Model):
    """The end-to-end model; ``call`` returns (loss, bpp, mse) like tfc's bls2017.py."""

    WEIGHT_PARTS = ("analysis_transform", "synthesis_transform", "prior")  # the layout of the shipped checkpoints

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

    def enable_coding(self, tables: dict | None = None):
        """The range-coding model: from stored tables (``coding_tables.read``), or built from the trained prior."""
        self.entropy_model = coding_tables.coding_models([self.prior], tables)[0]
        return self

    @property
    def entropy_models(self) -> list:
        return [self.entropy_model]

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
        _, bits = coding_tables.rate_model(self.prior, self.entropy_model)(y, training=False)
        return bits.numpy()


def _weight_parts(model) -> dict:
    """The trained parts of a model, without optimizer state, under the names and in the order its checkpoints use
    (``WEIGHT_PARTS``, then a conditional model's context transform)."""
    parts = {name: getattr(model, name) for name in model.WEIGHT_PARTS}
    if getattr(model, "context_transform", None) is not None:
        parts["context_transform"] = model.context_transform
    return parts


def _weights(model) -> tf.train.Checkpoint:
    return tf.train.Checkpoint(**_weight_parts(model))


def write_weights(model, directory: str | os.PathLike) -> None:
    """The trained parts' float32 values in ``directory/weights.*`` (no tables, no meta.json): a snapshot."""
    _weights(model).write(str(pathlib.Path(directory) / WEIGHTS))


def read_weights(model, directory: str | os.PathLike):
    """A snapshot written by ``write_weights`` into ``model`` (same architecture)."""
    _weights(model).read(str(pathlib.Path(directory) / WEIGHTS)).assert_existing_objects_matched()
    return model


def _variables(model) -> dict[str, tf.Variable]:
    """The variables of the trained parts under stable keys: part / index in the part's own order."""
    found = {}
    for part, value in _weight_parts(model).items():
        if isinstance(value, tf.Variable):
            variables = [value]
        elif isinstance(value, list):
            variables = [v for module in value for v in module.variables]
        else:
            variables = value.variables
        found.update({f"{part}/{i:03d}": variable for i, variable in enumerate(variables)})
    return found


def _stable_name(variable: tf.Variable) -> str:
    """A variable's name without the instance-dependent outer scopes (``face_codec_1/...``): its layer and own name."""
    return "/".join(variable.name.split("/")[-2:])


def restore_weights(model, directory: str | os.PathLike):
    """Reads the weights saved by ``save`` into ``model`` (same architecture), in the storage its meta.json lists."""
    directory = pathlib.Path(directory)
    meta_file = directory / META_FILE
    files = json.loads(meta_file.read_text()).get("files", WEIGHT_FILES) if meta_file.is_file() else WEIGHT_FILES
    if HALF_WEIGHTS_FILE not in files:
        _weights(model).read(str(directory / WEIGHTS)).assert_existing_objects_matched()
        return model
    variables = _variables(model)
    with np.load(directory / HALF_WEIGHTS_FILE, allow_pickle=False) as stored:
        keys = sorted(k for k in stored.files if k != MANIFEST)
        if keys != sorted(variables) or MANIFEST not in stored.files:
            raise WeightsError(f"{directory}: {HALF_WEIGHTS_FILE} holds other variables than this architecture's")
        manifest = [str(name) for name in stored[MANIFEST]]
        expected = [_stable_name(v) for v in variables.values()]
        if manifest != expected:
            raise WeightsError(f"{directory}: {HALF_WEIGHTS_FILE} lists its variables in another order or naming")
        for key, variable in variables.items():
            value = stored[key]
            if value.shape != tuple(variable.shape):
                raise WeightsError(f"{directory}: {key} has shape {value.shape}, the model {tuple(variable.shape)}")
            variable.assign(value.astype(variable.dtype.as_numpy_dtype))
    return model


def round_weights(model, dtype: str):
    """Rounds every float variable of ``model`` to ``dtype`` in place (what storing it in that dtype keeps), so the
    range-coding tables built afterwards are the loaded model's own."""
    _check_dtype(dtype)
    for key, variable in _variables(model).items():
        value = variable.numpy()
        if dtype == "float16" and np.issubdtype(value.dtype, np.floating):
            if np.max(np.abs(value), initial=0.0) > np.finfo(np.float16).max:
                raise ValueError(f"{key} exceeds the float16 range; store this model as float32")
            variable.assign(_half(value).astype(value.dtype))
    return model


def _check_dtype(dtype: str) -> None:
    if dtype not in WEIGHT_DTYPES:
        raise ValueError(f"weights are stored as one of {WEIGHT_DTYPES}, not {dtype}")


def _half(value: np.ndarray) -> np.ndarray:
    return value.astype(np.float16) if np.issubdtype(value.dtype, np.floating) else value


def table_sha256(model) -> str:
    """The hash of a model's CDF tables (all rates), recorded at save and checked at load."""
    digest = hashlib.sha256()
    for entropy_model in model.entropy_models:
        for table in (entropy_model.cdf, entropy_model.cdf_offset):
            digest.update(np.asarray(table).tobytes())
    return digest.hexdigest()


def save(
    model, directory: str | os.PathLike, coding_enabled: bool = False, weights_dtype: str = "float32", **meta
) -> dict:
    """Weights, range-coding tables and meta.json (architecture, configuration, sha256 of the weights, hashes of
    the tables). ``coding_enabled``: the caller has just built the tables from the final weights (building them
    again costs minutes for a variable-rate model on a CPU). ``weights_dtype="float16"`` rounds the model's
    weights to float16 first (in place) and stores them so: half the bytes, tables built from the rounded model."""
    from sfc_tf.enhancement import face_codec, hyperprior

    _check_dtype(weights_dtype)
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if weights_dtype == "float32":
        files = WEIGHT_FILES
        _weights(model).write(str(directory / WEIGHTS))
    else:
        files = (HALF_WEIGHTS_FILE,)
        round_weights(model, weights_dtype)
        coding_enabled = False
        variables = _variables(model)
        values = {k: _half(v.numpy()) for k, v in variables.items()}
        values[MANIFEST] = np.array([_stable_name(v) for v in variables.values()])
        tmp = directory / (HALF_WEIGHTS_FILE + ".tmp.npz")
        np.savez(tmp, **values)
        os.replace(tmp, directory / HALF_WEIGHTS_FILE)
    for stale in set(WEIGHT_FILES + (HALF_WEIGHTS_FILE,)) - set(files):  # restore_weights must not find another
        (directory / stale).unlink(missing_ok=True)
    if not coding_enabled:
        model.enable_coding()
    if isinstance(model, face_codec.FaceCodec):
        config = {"architecture": "face_codec", **model.get_config()}
    elif isinstance(model, hyperprior.HyperpriorFaceCodec):
        config = {"architecture": "hyperprior", **model.get_config()}
    else:
        config = {"lmbda": model.lmbda, "num_filters": model.num_filters}
    tables = coding_tables.write(directory, model.entropy_models)
    record = {**meta, **config, "weights_dtype": weights_dtype}
    return checkpoint.write_meta(
        directory, files, {**record, "cdf_table_sha256": table_sha256(model), "tables_sha256": tables}
    )


def convert(source: str | os.PathLike, target: str | os.PathLike, weights_dtype: str) -> dict:
    """Stores a saved learned codec's weights in another dtype (``save(weights_dtype=...)``): a new folder, with
    the source's meta.json and where it came from; its range-coding tables are rebuilt from the stored weights."""
    _check_dtype(weights_dtype)
    source, target = pathlib.Path(source), pathlib.Path(target)
    if target.exists():
        raise FileExistsError(f"{target} exists; converting never overwrites a checkpoint")
    meta = checkpoint.read_meta(source, WEIGHT_FILES, "learned enhancement")
    model = restore_weights(build(meta), source)  # its own instance: rounding must not touch load_model's cache
    kept = {k: v for k, v in meta.items() if k not in ("files", "sha256", "cdf_table_sha256", "tables_sha256")}
    kept["converted_from"] = {"weights_dtype": meta.get("weights_dtype", "float32"), "sha256": meta["sha256"]}
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.parent / f".{target.name}.{uuid.uuid4().hex}.partial"  # mkdir: the usual permissions
    partial.mkdir()
    try:
        record = save(model, partial, **{**kept, "weights_dtype": weights_dtype})
        if target.exists():
            raise FileExistsError(f"{target} appeared while converting; nothing written")
        os.replace(partial, target)
    finally:
        shutil.rmtree(partial, ignore_errors=True)  # gone already after the rename
    return record


def build(meta: dict):
    """An untrained model of the architecture a meta.json describes."""
    if meta.get("architecture", "bls2017") == "bls2017":
        return BLS2017(meta["lmbda"], meta["num_filters"])
    if meta["architecture"] == "hyperprior":
        from sfc_tf.enhancement import hyperprior

        return hyperprior.HyperpriorFaceCodec(**{k: meta[k] for k in hyperprior.CONFIG_KEYS})
    from sfc_tf.enhancement import face_codec

    return face_codec.FaceCodec(
        meta["lmbdas"], meta["conditional"], meta["prior"], meta["num_filters"], meta["image_size"]
    )


@functools.lru_cache(maxsize=32)
def _load_cached(directory: str) -> tuple:
    meta = checkpoint.read_meta(directory, WEIGHT_FILES, "learned enhancement")
    model = restore_weights(build(meta), directory)
    model.enable_coding(coding_tables.read(directory, meta))
    if table_sha256(model) != meta["cdf_table_sha256"]:
        raise WeightsError(
            f"{directory}: the range-coding tables differ from the encoder's (this platform computes "
            f"others, or the stored ones are damaged)"
        )
    return model, meta


def load_model(directory: str | os.PathLike) -> tuple:
    """(model, meta) of a saved learned codec (BLS2017 or FaceCodec), checked against its sha256 and table hash;
    loaded once per process."""
    return _load_cached(str(pathlib.Path(directory).resolve()))


def loaded_checkpoints() -> int:
    """How many learned checkpoints this process holds (each is loaded once)."""
    return _load_cached.cache_info().currsize


def unload_all() -> None:
    """Forget every loaded checkpoint and codec (e.g. before a folder's contents change)."""
    _codec_cached.cache_clear()
    _load_cached.cache_clear()
    _quality_functions.cache_clear()


class RateCoder:
    """One rate of a trained learned codec as two graph functions: ``compress(images, predictions)`` -> strings and
    ``decompress(strings, latent_shape, predictions)`` -> uint8 images (``predictions``: conditional models only).
    The in-process codec and the SavedModel export (``sfc_tf.serving.exports``) both call these, so both run the same
    graph (eager execution rounds differently in a few pixels)."""

    def __init__(self, model, rate: int = 0):
        self.model, self.rate = model, int(rate)
        self.conditional = bool(getattr(model, "conditional", False))
        if hasattr(model, "num_qualities"):  # the hyperprior codec: ``rate`` is a quality index
            self.entropy_model = None
            compress, decompress = _quality_functions(model)
            quality = tf.constant(self.rate, tf.int32)
            self._compress = lambda images, p: compress(images, p, quality)
            self._decompress = lambda strings, shape, p: decompress(strings, shape, p, quality)
        elif isinstance(model, BLS2017):
            self.entropy_model = model.entropy_model
            self._compress = lambda images, p: model.compress(images)
            self._decompress = lambda strings, shape, p: model.decompress(strings, shape)
        else:
            self.entropy_model = model.entropy_models[self.rate]
            self._compress = tf.function(lambda images, p: model.compress(images, p, self.rate), reduce_retracing=True)
            self._decompress = tf.function(
                lambda strings, shape, p: model.decompress(strings, p, self.rate), reduce_retracing=True
            )

    def compress(self, images, predictions=None):
        return self._compress(images, predictions)

    def replay(self, strings: list[bytes], latent_shape: tuple[int, int], predictions=None) -> tuple[list, object]:
        """(indexes of the ``strings`` on which tfc's range decoder would not return (``range_guard``), the decoded
        images when the guard's replay already decoded them (the hyperprior codec, every string clean) or None)."""
        if self.entropy_model is None:
            return self.model.replay(strings, predictions, self.rate, latent_shape)
        rows = self._guard_rows
        symbols = latent_shape[0] * latent_shape[1] * self.model.num_filters
        indexes = np.arange(symbols) % len(rows.precisions)
        return [i for i, s in enumerate(strings) if not range_guard.gamma_bounded(s, rows, indexes)], None

    @functools.cached_property
    def _guard_rows(self) -> range_guard.CdfRows:
        return range_guard.cdf_rows(self.entropy_model.cdf.numpy())

    def decompress(self, strings, latent_shape, predictions=None):
        return self._decompress(strings, latent_shape, predictions)


@functools.lru_cache(maxsize=None)
def _quality_functions(model) -> tuple:
    """A variable-rate model's (compress, decompress) graph functions with the quality an input: one graph for all
    its qualities (a graph per quality held ~30 MB each)."""
    compress = tf.function(lambda images, p, quality: model.compress(images, p, quality), reduce_retracing=True)
    decompress = tf.function(
        lambda strings, shape, p, quality: _finished(*model.decode(strings, p, quality, shape)), reduce_retracing=True
    )
    return compress, decompress


def _finished(images, ended):
    """``images``, once every payload's range decoder has finished cleanly (an op error otherwise)."""
    check = tf.debugging.Assert(tf.reduce_all(ended), ["a payload's range decoder did not finish at its end"])
    with tf.control_dependencies([check]):
        return tf.identity(images)


class LearnedCodec(ImageCodec):
    """``ImageCodec`` over a trained learned codec coding images on their own: a BLS2017 checkpoint, or one rate of
    an end-to-end FaceCodec. ``parameter``: the checkpoint directory, or (directory, rate). ``coder``: the
    model's ``RateCoder``, or a stand-in with the same two methods (a model server: ``serving_client``)."""

    codec_id = LEARNED

    def __init__(self, coder, parameter, model_id: str, shape=CROP_SHAPE):
        super().__init__(parameter, shape)
        if shape[0] % DOWNSCALE or shape[1] % DOWNSCALE:
            raise ValueError(f"image sides must be multiples of {DOWNSCALE}")
        self.coder, self.model_id = coder, model_id
        self.rate = 0 if isinstance(parameter, (str, os.PathLike)) else int(parameter[1])
        self.latent_shape = (shape[0] // DOWNSCALE, shape[1] // DOWNSCALE)

    def encode_many(self, images: np.ndarray, predictions: np.ndarray | None = None) -> list[bytes]:
        images = np.asarray(images)
        if images.ndim != 4 or images.dtype != np.uint8 or images.shape[1:] != self.shape:
            raise ValueError(
                f"expected (N, {', '.join(map(str, self.shape))}) uint8 images, got " f"{images.dtype} {images.shape}"
            )
        if not len(images):
            return []
        with tf.device("/CPU:0"):
            return [bytes(s) for s in np.asarray(self.coder.compress(images, predictions))]

    def encode(self, image: np.ndarray) -> bytes:
        return self.encode_many(self.check_image(image)[None])[0]

    def decode_many(self, payloads: list[bytes], predictions: np.ndarray | None = None) -> np.ndarray:
        if not payloads:
            return np.zeros((0, *self.shape), np.uint8)
        if any(not p for p in payloads):
            raise BitstreamError("empty learned-codec payload")
        strings = [bytes(p) for p in payloads]
        try:
            with tf.device("/CPU:0"):
                images = self._replayed(strings, predictions)
                if images is None:
                    images = self.coder.decompress(
                        tf.constant(strings), tf.constant(self.latent_shape, tf.int32), predictions
                    )
                return np.asarray(images)
        except tf.errors.OpError as exc:
            raise BitstreamError(f"learned-codec range decoding failed: {op_error_reason(exc.message)}") from exc

    def decode(self, data: bytes) -> np.ndarray:
        return self.decode_many([data])[0]

    def _replayed(self, strings: list[bytes], predictions):
        """Refuse payloads on which tensorflow-compression's range decoder would not return (``range_guard``); the
        images, where the guard's replay decoded them. A coder without local tables (a model server) is not
        checked here."""
        replay = getattr(self.coder, "replay", None)
        bad, images = replay(strings, self.latent_shape, predictions) if replay else ([], None)
        if bad:
            raise BitstreamError(f"learned-codec payload {bad[0]} is malformed (an escape code that never ends)")
        return images


class ConditionalCodec(LearnedCodec):
    """One rate of a conditional FaceCodec: codes images given the decoder's prediction."""

    codec_id = CONDITIONAL
    conditional = True

    def encode_many(self, images: np.ndarray, predictions: np.ndarray | None = None) -> list[bytes]:
        if predictions is None or np.shape(predictions) != np.shape(images):
            raise ValueError("the conditional codec encodes with one prediction per image, of the image's shape")
        return super().encode_many(images, np.asarray(predictions, np.uint8))

    def decode_many(self, payloads: list[bytes], predictions: np.ndarray | None = None) -> np.ndarray:
        if predictions is None or len(predictions) != len(payloads):
            raise ValueError("the conditional codec decodes with one prediction per payload")
        return super().decode_many(payloads, np.asarray(predictions, np.uint8))


def checkpoint_spec(spec: str):
    """``FOLDER`` or ``FOLDER:RATE`` (a variable-rate checkpoint's rate index), as command lines name a learned
    checkpoint -> ``load_codec``'s parameter."""
    folder, colon, rate = str(spec).rpartition(":")
    if not colon or not rate.isdigit():
        return str(spec)
    return folder, int(rate)


def load_codec(parameter, shape=CROP_SHAPE) -> LearnedCodec:
    """A learned codec from a checkpoint directory, or (directory, rate index) for a variable-rate checkpoint; one
    instance per checkpoint, rate and shape in a process (its graph functions are traced once)."""
    directory, rate = (parameter, None) if isinstance(parameter, (str, os.PathLike)) else parameter
    return _codec_cached(str(pathlib.Path(directory).resolve()), None if rate is None else int(rate), tuple(shape))


@functools.lru_cache(maxsize=32)
def _codec_cached(directory: str, rate: int | None, shape: tuple) -> LearnedCodec:
    model, meta = load_model(directory)
    if meta.get("architecture", "bls2017") == "bls2017":
        if rate not in (None, 0):
            raise ValueError(f"{directory} is a single-rate model; rate {rate} does not exist")
        return LearnedCodec(RateCoder(model), str(directory), meta["sha256"], shape)
    rate = 0 if rate is None else int(rate)
    rates = getattr(model, "num_qualities", model.num_rates)
    if not 0 <= rate < rates:
        raise ValueError(f"{directory} has rates 0..{rates - 1}, not {rate}")
    cls = ConditionalCodec if model.conditional else LearnedCodec
    return cls(RateCoder(model, rate), (str(directory), rate), meta["sha256"], shape)
