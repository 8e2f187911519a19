"""The face codec with a mean-scale hyperprior and channel-wise context: one model for every rate, end to end or
conditional on the decoder's prediction (ours; Balle et al. 2018, Minnen et al. 2018, Minnen & Singh 2020).

Transforms: ``face_codec``'s Balle-2016 analysis and synthesis (and, conditional, its context pyramid of p and
gated skip of p), with ``latent_depth`` latent channels.
  u = g_a(x [, p]);  y = u * gain_q                           analysis; the latent scaled for quality q
  z = h_a(u) * zgain_q;  z^ = round(z)                        hyper-latent, a factorized prior per channel
  f = h_s(z^ / zgain_q)                                       mean and scale features at the latent's size
  for each slice k of y:  m_k, i_k = M_k(f, y^_<k / gain) + P_mean, S_k(f, y^_<k / gain) + P_index
                          mu_k = m_k * gain,  scale_k = scale_fn(i_k) * gain
                          y^_k = round(y_k - mu_k) + mu_k + lrp_k(f, y^_<=k / gain)
  x^ = g_s(y^ * inverse_gain_q [, c(p)]) [+ gate * p]

Rates: a gain and an inverse gain per trained rate on the latent and a gain on the hyper-latent (Cui et al.
2021); the qualities between two trained rates interpolate their gains geometrically, so ``2 * len(lmbdas) - 1``
qualities come from one model. The entropy parameters are predicted for the unscaled latent u and scaled
exactly by the quality's gain, so one set of slice networks serves every rate, and the hyper-latent costs few
bits where the latent does.

Positional prior (ours): faces are aligned, so every latent position and channel has a learned mean and scale
index (P_mean, P_index) that the slice networks correct. ``fit_entropy_model`` starts them at the measured
statistics of training faces, and fits the hyper-latent's factorized prior to their hyper-latents: a fresh
prior is ~20 wide and costs ~4 bits per hyper-latent symbol, and at the entropy model's learning rate it takes
tens of thousands of steps to narrow.

Entropy coding never depends on p, and every number it depends on is computed in float64 (``ParamConv`` layers
run in the dtype of their input): the hyper-synthesis and slice networks see only decoded integers, so encoder
and decoder derive the same scale indexes on any CPU and at any batch size (a float32 network may differ in its
last bit between batch sizes, and one flipped index would derail the range decoder). All symbols of a face (z,
then each slice) go into one range-coded string; a value beyond a table row's range is coded with its escape code.

Training: loss = (bpp + lambda_q * MSE) / lambda_q ** RATE_BALANCE, a trained rate drawn per batch; the division
gives every rate a comparable share of the shared weights' updates.
"""

from __future__ import annotations

import functools
import threading

import numpy as np
import tensorflow as tf
import tensorflow_compression as tfc

from sfc_tf.enhancement import range_guard
from sfc_tf.enhancement.face_codec import Analysis, Context, Synthesis
from sfc_tf.enhancement.rd_metrics import RateDistortionMetrics

DOWNSCALE = 16
NUM_SCALES, SCALE_MIN, SCALE_MAX = 64, 0.11, 256.0
RATE_BALANCE = 0.4
PRECISION = 12  # range coder precision (bits)
INITIAL_SCALE_INDEX = 24.0  # scale_fn(24) is about 2
INDEX_STEP = (np.log(SCALE_MAX) - np.log(SCALE_MIN)) / (NUM_SCALES - 1)  # log-scale between two scale indexes
NEW_CHANNEL_SCALE = 0.1  # warm start: the synthesis weights of latent channels the source lacks, of their init
CONFIG_KEYS = (
    "lmbdas",
    "conditional",
    "num_filters",
    "latent_depth",
    "hyper_filters",
    "hyper_depth",
    "num_slices",
    "slice_hidden",
    "image_size",
)
HYPER_FEATURES = 64  # mean and scale feature channels of the hyper-synthesis


class ParamConv(tf.keras.layers.Layer):
    """A ``kernel`` x ``kernel`` convolution that runs in its input's dtype: float32 in training, float64 when
    coding. ``up=2`` first repeats every input pixel 2x2 (nearest-neighbour upsampling)."""

    def __init__(
        self,
        filters: int,
        kernel: int = 3,
        up: int = 1,
        activation=None,
        zero: bool = False,
        bias: float = 0,
        name=None,
    ):
        super().__init__(name=name, autocast=False)
        self.filters, self.kernel_size, self.up = filters, kernel, up
        self.activation, self.zero, self.initial_bias = activation, zero, bias

    def build(self, input_shape):
        shape = (self.kernel_size, self.kernel_size, int(input_shape[-1]), self.filters)
        self.kernel = self.add_weight("kernel", shape, initializer="zeros" if self.zero else "glorot_uniform")
        self.bias = self.add_weight("bias", (self.filters,), initializer=tf.constant_initializer(self.initial_bias))
        super().build(input_shape)

    def call(self, x):
        if self.up > 1:
            x = tf.repeat(tf.repeat(x, self.up, axis=1), self.up, axis=2)
        y = tf.nn.conv2d(x, tf.cast(self.kernel, x.dtype), 1, "SAME")
        y = y + tf.cast(self.bias, x.dtype)
        return self.activation(y) if self.activation is not None else y


class HyperAnalysis(tf.keras.Sequential):
    def __init__(self, filters: int, depth: int):
        super().__init__(name="hyper_analysis")
        conv = lambda *args, **kwargs: tfc.SignalConv2D(*args, corr=True, padding="same_zeros", **kwargs)  # noqa: E731
        self.add(conv(filters, (3, 3), activation=tf.nn.relu, name="ha_0"))
        self.add(conv(filters, (3, 3), strides_down=2, activation=tf.nn.relu, name="ha_1"))
        self.add(conv(depth, (3, 3), use_bias=False, name="ha_2"))


class HyperSynthesis(tf.keras.layers.Layer):
    """z^ -> (mean features, scale features), each ``features`` channels at twice z's size."""

    def __init__(self, filters: int, features: int):
        super().__init__(name="hyper_synthesis", autocast=False)
        self.features = features
        self.stages = [
            ParamConv(filters, activation=tf.nn.relu, name="hs_0"),
            ParamConv(filters, up=2, activation=tf.nn.relu, name="hs_1"),
            ParamConv(2 * features, activation=tf.nn.relu, name="hs_2"),
        ]

    def call(self, z_hat):
        out = z_hat
        for stage in self.stages:
            out = stage(out)
        return out[..., : self.features], out[..., self.features :]


class SliceTransform(tf.keras.layers.Layer):
    """A slice's mean, scale index or latent residual from its support: a ``kernel`` x ``kernel`` convolution
    to ``hidden`` channels, then a 1x1 one to the slice's ``depth`` (``zero``: starting at zero, so that a
    warm-started model first rounds its latent as its source did; ``bias``: the output's starting value)."""

    def __init__(self, depth: int, hidden: int, kernel: int, name: str, zero: bool = False, bias: float = 0):
        super().__init__(name=name, autocast=False)
        self.stages = [
            ParamConv(hidden, kernel, activation=tf.nn.relu, name="st_0"),
            ParamConv(depth, 1, zero=zero, bias=bias, name="st_1"),
        ]

    def call(self, x):
        for stage in self.stages:
            x = stage(x)
        return x


def scale_fn(index):
    """Scale of each integer (or, in training, continuous) scale index: log-spaced from SCALE_MIN to SCALE_MAX."""
    offset = tf.math.log(tf.constant(SCALE_MIN, index.dtype))
    factor = (tf.math.log(tf.constant(SCALE_MAX, index.dtype)) - offset) / (NUM_SCALES - 1.0)
    return tf.math.exp(offset + factor * index)


class HyperpriorFaceCodec(RateDistortionMetrics, tf.keras.Model):
    """``call(x, p, rate)`` returns (loss, bpp, mse); ``compress`` / ``decompress`` code real strings."""

    WEIGHT_PARTS = (  # the trained parts, under the names and in the order their checkpoints use
        "analysis_transform",
        "synthesis_transform",
        "hyper_analysis",
        "hyper_synthesis",
        "mean_transforms",
        "scale_transforms",
        "lrp_transforms",
        "gains",
        "inverse_gains",
        "hyper_gains",
        "position_means",
        "position_indexes",
        "hyperprior",
    )

    def __init__(
        self,
        lmbdas,
        conditional: bool = False,
        num_filters: int = 128,
        latent_depth: int = 192,
        hyper_filters: int = 96,
        hyper_depth: int = 32,
        num_slices: int = 4,
        slice_hidden: int = 48,
        image_size: int = 160,
    ):
        super().__init__()
        if latent_depth % num_slices:
            raise ValueError(f"{num_slices} slices do not divide {latent_depth} latent channels")
        self.lmbdas = [float(v) for v in lmbdas]
        self.conditional = bool(conditional)
        self.num_filters, self.latent_depth = int(num_filters), int(latent_depth)
        self.hyper_filters, self.hyper_depth = int(hyper_filters), int(hyper_depth)
        self.num_slices, self.slice_hidden, self.image_size = int(num_slices), int(slice_hidden), int(image_size)
        self.slice_depth = self.latent_depth // self.num_slices
        self.analysis_transform = Analysis(num_filters, latent_depth)
        self.synthesis_transform = Synthesis(num_filters)
        self.context_transform = Context() if self.conditional else None
        self.hyper_analysis = HyperAnalysis(hyper_filters, hyper_depth)
        self.hyper_synthesis = HyperSynthesis(hyper_filters, HYPER_FEATURES)
        self.mean_transforms = [
            SliceTransform(self.slice_depth, slice_hidden, 3, f"mean_{k}", zero=True) for k in range(num_slices)
        ]
        self.scale_transforms = [
            SliceTransform(self.slice_depth, slice_hidden, 3, f"scale_{k}", zero=True) for k in range(num_slices)
        ]
        self.lrp_transforms = [
            SliceTransform(self.slice_depth, 64, 1, f"lrp_{k}", zero=True) for k in range(num_slices)
        ]
        start = np.sqrt(np.array(self.lmbdas) / 0.01)[:, None] * np.ones((1, latent_depth))
        self.gains = tf.Variable(start.astype(np.float32), name="gains")
        self.inverse_gains = tf.Variable((1.0 / start).astype(np.float32), name="inverse_gains")
        self.hyper_gains = tf.Variable(start[:, :1].repeat(hyper_depth, 1).astype(np.float32), name="hyper_gains")
        grid = (-(-self.image_size // DOWNSCALE),) * 2 + (latent_depth,)
        self.position_means = tf.Variable(tf.zeros(grid), name="position_means")
        self.position_indexes = tf.Variable(tf.fill(grid, INITIAL_SCALE_INDEX), name="position_indexes")
        self.hyperprior = tfc.NoisyDeepFactorized(batch_shape=(hyper_depth,), name="hyperprior")
        self.rate_weights = tf.constant(np.array(self.lmbdas) ** -RATE_BALANCE, tf.float32)
        self.coder = None
        self.transform_optimizer = None  # training: the transforms' own Adam (a warm start holds them still first)
        x = tf.zeros((1, self.image_size, self.image_size, 3))
        self(x, x, 0)

    @property
    def num_rates(self) -> int:
        return len(self.lmbdas)

    @property
    def num_qualities(self) -> int:
        """Trained rates and the geometric midpoints between neighbours."""
        return 2 * self.num_rates - 1

    def get_config(self):
        return {key: getattr(self, key) for key in CONFIG_KEYS}

    # -- transforms -----------------------------------------------------------------------------------------
    def gain_pair(self, quality: int):
        """(gain, inverse gain) of quality index 0..num_qualities-1: even indexes are trained rates, odd ones the
        geometric mean of their neighbours."""
        return self._interpolated(self.gains, quality), self._interpolated(self.inverse_gains, quality)

    def hyper_gain(self, quality: int):
        return self._interpolated(self.hyper_gains, quality)

    @staticmethod
    def _interpolated(gains, quality: int):
        low, high = quality // 2, (quality + 1) // 2
        return tf.sqrt(gains[low] * gains[high])

    def analyse(self, x, p, gain):
        x = tf.cast(x, tf.float32) / 255.0
        if self.conditional:
            x = tf.concat([x, tf.cast(p, tf.float32) / 255.0], -1)
        return self.analysis_transform(x) * gain

    def fit_entropy_model(self, x, p=None, batch_size: int = 32, steps: int = 300) -> None:
        """Starts the entropy model from the faces ``x`` (and their predictions ``p``): the positional prior at the
        mean and spread of each position and channel of their unscaled latent, and the hyper-latent's prior
        fitted (``steps`` of Adam) to their rounded hyper-latents at every trained rate."""
        u = tf.concat(
            [
                self.analyse(x[i : i + batch_size], None if p is None else p[i : i + batch_size], 1.0)
                for i in range(0, len(x), batch_size)
            ],
            0,
        )
        mean, spread = tf.nn.moments(u, axes=[0])
        self.position_means.assign(mean)
        spread = tf.maximum(tf.sqrt(spread), SCALE_MIN / 8)
        self.position_indexes.assign((tf.math.log(spread) - np.log(SCALE_MIN)) / INDEX_STEP)
        h = self.hyper_analysis(u)
        z = tf.round(tf.concat([h * self.hyper_gains[rate] for rate in range(self.num_rates)], 0))
        optimizer = tf.keras.optimizers.Adam(0.01)
        variables = self.hyperprior.trainable_variables
        for _ in range(steps):
            with tf.GradientTape() as tape:
                loss = -tf.reduce_mean(self.hyperprior.log_prob(z))
            optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))

    def synthesise(self, y_hat, p, inverse_gain):
        y_hat = tf.cast(y_hat, tf.float32) * inverse_gain
        if not self.conditional:
            return self.synthesis_transform(y_hat) * 255.0
        skip, pyramid = self.context_transform(tf.cast(p, tf.float32) / 255.0)
        return (skip + self.synthesis_transform(y_hat, pyramid)) * 255.0

    def slice_parameters(self, k: int, features, previous, gain):
        """(mean, scale index, support for the slice's latent residual prediction) of slice ``k`` of the latent
        scaled by ``gain``, given its ``previous`` slices divided by their gain."""
        means, scales = features
        mean_support = tf.concat([means] + previous, -1)
        scale_support = tf.concat([scales] + previous, -1)
        dtype = means.dtype
        size = tf.shape(means)[1:3]
        channels = self._channels(k)
        prior_mean = tf.cast(self.position_means[: size[0], : size[1], channels], dtype)
        prior_index = tf.cast(self.position_indexes[: size[0], : size[1], channels], dtype)
        gain = tf.cast(gain[channels], dtype)
        mu = (self.mean_transforms[k](mean_support) + prior_mean) * gain
        index = self.scale_transforms[k](scale_support) + prior_index + tf.math.log(gain) / INDEX_STEP
        return mu, index, mean_support

    def latent_residual(self, k: int, mean_support, y_hat_slice, gain):
        support = tf.concat([mean_support, self._normalized(k, y_hat_slice, gain)], -1)
        return 0.5 * tf.math.tanh(self.lrp_transforms[k](support))

    def _normalized(self, k: int, y_hat_slice, gain):
        """Slice ``k`` of a latent scaled by ``gain``, divided by it."""
        return y_hat_slice / tf.cast(gain[self._channels(k)], y_hat_slice.dtype)

    def _channels(self, k: int) -> slice:
        return slice(k * self.slice_depth, (k + 1) * self.slice_depth)

    def hyper_features(self, z_hat, hyper_gain, latent_shape):
        """Mean and scale features of the decoded hyper-latent, cropped to the latent's (height, width)."""
        means, scales = self.hyper_synthesis(z_hat / tf.cast(hyper_gain, z_hat.dtype))
        return means[:, : latent_shape[0], : latent_shape[1]], scales[:, : latent_shape[0], : latent_shape[1]]

    # -- training -------------------------------------------------------------------------------------------
    def call(self, x, p=None, rate=0, training=False):
        x = tf.cast(x, tf.float32)
        gain, hyper_gain = tf.gather(self.gains, rate), tf.gather(self.hyper_gains, rate)
        u = self.analyse(x, p, 1.0)
        y = u * gain
        z = self.hyper_analysis(u) * hyper_gain
        em_z = tfc.ContinuousBatchedEntropyModel(
            self.hyperprior, coding_rank=3, compression=False, offset_heuristic=False
        )
        _, z_bits = em_z(z, training=training)
        z_hat = em_z.quantize(z)
        features = self.hyper_features(z_hat, hyper_gain, tf.shape(y)[1:3])
        em_y = tfc.LocationScaleIndexedEntropyModel(
            tfc.NoisyNormal, num_scales=NUM_SCALES, scale_fn=scale_fn, coding_rank=3, compression=False
        )
        bits, y_hat_slices, normalized = [z_bits], [], []
        for k, y_slice in enumerate(tf.split(y, self.num_slices, -1)):
            mu, index, mean_support = self.slice_parameters(k, features, normalized, gain)
            _, slice_bits = em_y(y_slice, index, loc=mu, training=training)
            bits.append(slice_bits)
            y_hat_slice = em_y.quantize(y_slice, loc=mu)
            y_hat_slice += self.latent_residual(k, mean_support, y_hat_slice, gain)
            y_hat_slices.append(y_hat_slice)
            normalized.append(self._normalized(k, y_hat_slice, gain))
        x_hat = self.synthesise(tf.concat(y_hat_slices, -1), p, tf.gather(self.inverse_gains, rate))
        num_pixels = tf.cast(tf.reduce_prod(tf.shape(x)[:-1]), tf.float32)
        bpp = tf.add_n([tf.reduce_sum(b) for b in bits]) / num_pixels
        mse = tf.reduce_mean(tf.math.squared_difference(x, x_hat))
        loss = (bpp + tf.gather(tf.constant(self.lmbdas), rate) * mse) * tf.gather(self.rate_weights, rate)
        return loss, bpp, mse

    def train_step(self, data):
        x, p = data
        rate = tf.random.uniform((), 0, self.num_rates, tf.int32)
        with tf.GradientTape() as tape:
            loss, bpp, mse = self(x, p, rate, training=True)
        transforms = self.transform_variables()
        moved = {v.ref() for v in transforms}
        entropy = [v for v in self.trainable_variables if v.ref() not in moved]
        gradients = tape.gradient(loss, transforms + entropy)
        self.optimizer.apply_gradients(zip(gradients[len(transforms) :], entropy))
        self.transform_optimizer.apply_gradients(zip(gradients[: len(transforms)], transforms))
        return self._update(loss, bpp, mse)

    def transform_variables(self) -> list:
        """The image transforms' variables (analysis, synthesis, context, gains): what a warm start brings."""
        parts = [self.analysis_transform, self.synthesis_transform] + [self.context_transform] * self.conditional
        return [v for part in parts for v in part.trainable_variables] + [self.gains, self.inverse_gains]

    def test_step(self, data):
        x, p = data
        results = [self(x, p, r, training=False) for r in range(self.num_rates)]
        return self._update(*(tf.reduce_mean(v) for v in zip(*results)))

    # -- coding ---------------------------------------------------------------------------------------------
    def enable_coding(self, tables: dict | None = None):
        """The range-coding tables: from stored ``tables`` (``coding_tables.read``), or built from the trained
        hyperprior and the fixed Gaussian scale table."""
        self.coder = RangeTables.from_model(self) if tables is None else RangeTables.from_stored(tables)
        return self

    @property
    def entropy_models(self) -> list:
        """What ``coding_tables.write`` and ``learned.table_sha256`` store and hash: the one combined table."""
        return [self.coder]

    def latent_shape(self, image_shape) -> tuple[int, int]:
        return -(-int(image_shape[0]) // DOWNSCALE), -(-int(image_shape[1]) // DOWNSCALE)

    def compress(self, x, p, quality: int):
        """uint8 (N, H, W, 3) crops (and predictions) -> N strings, each one range-coded stream (z, then y)."""
        return self._range_code(*self._quantize(x, p, quality)[:2], tf.shape(x)[:1])

    def encode(self, x, p, quality: int):
        """(``compress``'s strings, the uint8 images their decoder gets), in one pass of the encoder."""
        rows, symbols, y_hat = self._quantize(x, p, quality)
        images = tf.saturate_cast(tf.round(self.synthesise(y_hat, p, self.gain_pair(quality)[1])), tf.uint8)
        return self._range_code(rows, symbols, tf.shape(x)[:1]), images

    def _range_code(self, rows, symbols, count):
        handle = tfc.create_range_encoder(count, self.coder.cdf)
        for r, s in zip(rows, symbols):
            handle = tfc.entropy_encode_index(handle, r, s)
        return tfc.entropy_encode_finalize(handle)

    def _quantize(self, x, p, quality: int):
        """(table rows, symbols) of z and of each slice, in coding order, and the decoded latent (float64)."""
        gain, _ = self.gain_pair(quality)
        u = self.analyse(x, p, 1.0)
        y = u * gain
        z = self.hyper_analysis(u) * self.hyper_gain(quality)
        coder = self.coder
        z_rows = coder.z_rows(tf.shape(z))
        z_symbols = tf.cast(tf.round(z), tf.int32) - coder.z_offsets()
        z_hat = tf.cast(z_symbols + coder.z_offsets(), tf.float64)
        rows, symbols = [z_rows], [z_symbols]
        y_slices = tf.split(tf.cast(y, tf.float64), self.num_slices, -1)

        def code_slice(k, mu, slice_rows):
            integers = tf.cast(tf.round(y_slices[k] - mu), tf.int32)
            slice_symbols = integers - coder.offsets(slice_rows)
            rows.append(slice_rows)
            symbols.append(slice_symbols)
            return slice_symbols

        y_hat = self._slices(z_hat, quality, tf.shape(y)[1:3], code_slice)
        return rows, symbols, y_hat

    def decompress(self, strings, p, quality: int):
        """N strings (and predictions) of ``image_size`` crops -> uint8 (N, S, S, 3) images."""
        size = self.image_size // DOWNSCALE
        return self.decode(strings, p, quality, tf.constant([size, size]))[0]

    def decode(self, strings, p, quality: int, latent_shape):
        """N strings (and predictions) -> (uint8 (N, 16 h, 16 w, 3) images, per string whether the range decoder
        finished cleanly: False for most damaged strings, though not for every truncated one)."""
        _, inverse_gain = self.gain_pair(quality)
        coder = self.coder
        count = tf.shape(strings)[:1]
        z_shape = tf.concat([count, (latent_shape + 1) // 2, [self.hyper_depth]], 0)
        handle = tfc.create_range_decoder(strings, coder.cdf)
        handle, z_symbols = tfc.entropy_decode_index(handle, coder.z_rows(z_shape), z_shape[1:], tf.int32)
        z_hat = tf.cast(z_symbols + coder.z_offsets(), tf.float64)

        def decode_slice(k, mu, slice_rows):
            nonlocal handle
            handle, slice_symbols = tfc.entropy_decode_index(handle, slice_rows, tf.shape(slice_rows)[1:], tf.int32)
            return slice_symbols

        y_hat = self._slices(z_hat, quality, latent_shape, decode_slice)
        ended = tfc.entropy_decode_finalize(handle)
        x_hat = self.synthesise(y_hat, p, inverse_gain)
        return tf.saturate_cast(tf.round(x_hat), tf.uint8), ended

    def replay(self, strings: list[bytes], p, quality: int, latent_shape) -> tuple[list[int], tf.Tensor | None]:
        """``decode`` replayed in Python (``range_guard``), symbol by symbol, each slice's table rows derived from
        the symbols replayed before it: (indexes of the strings on which tfc's range decoder would not return, the
        uint8 images when every string was replayed cleanly to its end, else None). A clean replay decoded tfc's
        symbols, so its images are ``decode``'s, without running tfc's decoder and the networks a second time."""
        return self._range_guard(strings, p, quality, latent_shape)

    @functools.cached_property
    def _range_guard(self) -> "_RangeGuard":
        return _RangeGuard(self)

    def _slices(self, z_hat, quality: int, latent_shape, code):
        """The slices' decoded latent, in float64: ``code(k, mean, table rows)`` codes slice ``k`` and returns its
        symbols (the encoder's from y, the decoder's from the string), so both sides compute the same numbers."""
        coder = self.coder
        gain, _ = self.gain_pair(quality)
        features = self.hyper_features(z_hat, self.hyper_gain(quality), latent_shape)
        y_hat_slices, normalized = [], []
        for k in range(self.num_slices):
            mu, index, mean_support = self.slice_parameters(k, features, normalized, gain)
            slice_rows = coder.y_rows(index)
            y_hat_slice = tf.cast(code(k, mu, slice_rows) + coder.offsets(slice_rows), tf.float64) + mu
            y_hat_slice += self.latent_residual(k, mean_support, y_hat_slice, gain)
            y_hat_slices.append(y_hat_slice)
            normalized.append(self._normalized(k, y_hat_slice, gain))
        return tf.concat(y_hat_slices, -1)


class _RangeGuard:
    """``decode`` with its symbols replayed by ``range_guard.Lanes``, inside one traced graph of the model's networks
    (an eager Keras call leaves memory behind in TF 2.14); one guarded batch at a time per model."""

    def __init__(self, model: HyperpriorFaceCodec):
        self.model, self.lock, self.lanes = model, threading.Lock(), None
        self.graph = tf.function(self._replayed_images, reduce_retracing=True)

    def __call__(self, strings: list[bytes], p, quality: int, latent_shape) -> tuple[list[int], tf.Tensor | None]:
        with self.lock:
            self.lanes = range_guard.Lanes(strings, self.model.coder.replay_rows)
            quality, shape = tf.constant(quality, tf.int32), tf.constant(latent_shape, tf.int32)
            images = self.graph(quality, shape, tf.constant(len(strings)), p)
            return sorted(self.lanes.unbounded), images if self.lanes.clean() else None

    def _replay(self, table_rows):
        symbols = tf.numpy_function(lambda rows: self.lanes.next(rows), [table_rows], tf.int32)  # this call's lanes
        return tf.ensure_shape(symbols, table_rows.shape)

    def _replayed_images(self, quality, latent_shape, count, p):
        model = self.model
        z_shape = tf.concat([[count], (latent_shape + 1) // 2, [model.hyper_depth]], 0)
        z_hat = tf.cast(self._replay(model.coder.z_rows(z_shape)) + model.coder.z_offsets(), tf.float64)
        y_hat = model._slices(z_hat, quality, latent_shape, lambda k, mu, slice_rows: self._replay(slice_rows))
        return tf.saturate_cast(tf.round(model.synthesise(y_hat, p, model.gain_pair(quality)[1])), tf.uint8)


class RangeTables:
    """One table for every symbol of a face: the hyperprior's rows (one per z channel), then the Gaussian rows
    (one per scale index), as tfc builds them: a value outside a row's range is coded exactly with its escape
    code (clamping it instead costs over 2 dB where the predicted scales are too small). A value is its symbol +
    the row's offset."""

    def __init__(self, cdf: np.ndarray, offsets: np.ndarray, z_channels: int):
        self.cdf = tf.constant(cdf, tf.int32)
        self.cdf_offset = tf.constant(offsets, tf.int32)
        self.quantization_offset = None
        self.num_z = int(z_channels)

    @classmethod
    def from_model(cls, model: HyperpriorFaceCodec) -> "RangeTables":
        em_z = tfc.ContinuousBatchedEntropyModel(
            model.hyperprior, coding_rank=3, compression=True, offset_heuristic=False, range_coder_precision=PRECISION
        )
        em_y = tfc.LocationScaleIndexedEntropyModel(
            tfc.NoisyNormal, NUM_SCALES, scale_fn, coding_rank=3, compression=True, range_coder_precision=PRECISION
        )
        cdf = np.concatenate([np.asarray(em_z.cdf), np.asarray(em_y.cdf)])
        offsets = np.concatenate([np.asarray(em_z.cdf_offset), np.asarray(em_y.cdf_offset)])
        return cls(cdf, offsets, model.hyper_depth)

    @classmethod
    def from_stored(cls, tables: dict) -> "RangeTables":
        cdf, offsets = tables["cdf_0"], tables["cdf_offset_0"]
        return cls(cdf, offsets, len(offsets) - NUM_SCALES)

    @functools.cached_property
    def replay_rows(self) -> range_guard.CdfRows:
        """The table's rows for ``range_guard.Replay``."""
        return range_guard.cdf_rows(self.cdf.numpy())

    def z_rows(self, shape):
        return tf.broadcast_to(tf.range(self.num_z), shape)

    def z_offsets(self):
        return self.cdf_offset[: self.num_z]

    def y_rows(self, index):
        """Table rows of scale indexes (float64, continuous in training): rounded, clipped, after the z rows."""
        return self.num_z + tf.cast(tf.clip_by_value(tf.round(index), 0, NUM_SCALES - 1), tf.int32)

    def offsets(self, rows):
        return tf.gather(self.cdf_offset, rows)


def warm_start(model: HyperpriorFaceCodec, source) -> HyperpriorFaceCodec:
    """Starts ``model``'s transforms from a trained single-rate model of the same kind and filters: a conditional
    ``face_codec.FaceCodec`` (transforms, context pyramid and gate on p) for a conditional model, an end-to-end
    ``learned.BLS2017`` for an end-to-end one. Latent channels the source lacks start silent (zero analysis
    weights: no bits) with small synthesis weights (so that training can open them), and the model first decodes
    what the source decoded; the hyperprior and the slice networks start untrained. From another hyperprior codec
    (e.g. of a smaller hyper-latent), its transforms and gains."""
    conditional = bool(getattr(source, "conditional", False))
    if conditional != model.conditional or source.num_filters != model.num_filters:
        raise ValueError("a hyperprior codec warm-starts from a model of its own kind and number of filters")
    if isinstance(source, HyperpriorFaceCodec):
        return _copy_transforms(model, source)
    own = [model.analysis_transform.layers, _synthesis_layers(model.synthesis_transform)]
    theirs = [
        [layer for layer in source.analysis_transform.layers if layer.trainable_variables],
        [layer for layer in source.synthesis_transform.layers if layer.trainable_variables]
        if not hasattr(source.synthesis_transform, "layer_0")
        else _synthesis_layers(source.synthesis_transform),
    ]
    source_latent = source.num_filters
    for stage, (layers, source_layers) in enumerate(zip(own, theirs)):
        for i, (layer, source_layer) in enumerate(zip(layers, source_layers)):
            latent_input = stage == 1 and i == 0
            values = {_within(v, source_layer): v for v in source_layer.trainable_variables}
            if sorted(values) != sorted(_within(v, layer) for v in layer.trainable_variables):
                raise ValueError(f"cannot warm-start {layer.name}: the source's layer has other variables")
            latent_output = stage == 0 and i == len(layers) - 1
            for target in layer.trainable_variables:
                value, current = values[_within(target, layer)].numpy(), target.numpy()
                if latent_input and value.ndim == 4:  # synthesis input channels: [latent | context]
                    new = current[source_latent : model.latent_depth] * NEW_CHANNEL_SCALE
                    value = np.concatenate([value[:source_latent], new, value[source_latent:]])
                if latent_output and value.ndim == 4:  # analysis output channels: the new ones start silent
                    current = np.zeros_like(current)
                target.assign(_embedded(value, current))
    if model.context_transform is not None:
        for target, value in zip(model.context_transform.variables, source.context_transform.variables):
            target.assign(value)
    # each rate's gain: the source's (a FaceCodec's only rate's; 1 for BLS2017) times sqrt(lambda / the source's)
    source_lmbda = source.lmbdas[0] if hasattr(source, "lmbdas") else source.lmbda
    scale = np.sqrt(np.array(model.lmbdas) / source_lmbda)[:, None]
    for own_gains, their_gains, power in ((model.gains, "gains", 1), (model.inverse_gains, "inverse_gains", -1)):
        theirs = getattr(source, their_gains).numpy()[0] if hasattr(source, their_gains) else np.ones(0)
        theirs = np.concatenate(
            [theirs, np.full(model.latent_depth - len(theirs), np.mean(theirs) if len(theirs) else 1)]
        )
        own_gains.assign((scale**power * theirs).astype(np.float32))
    return model


def _copy_transforms(model: HyperpriorFaceCodec, source: HyperpriorFaceCodec) -> HyperpriorFaceCodec:
    """The image transforms and gains of another hyperprior codec (its entropy model may differ)."""
    own, theirs = model.transform_variables(), source.transform_variables()
    if len(own) != len(theirs) or any(a.shape != b.shape for a, b in zip(own, theirs)):
        raise ValueError("a hyperprior codec warm-starts from one with the same transforms and number of rates")
    for target, value in zip(own, theirs):
        target.assign(value)
    return model


def _within(variable: tf.Variable, layer) -> str:
    """A variable's name inside its layer (``bias:0``, ``gdn_0/reparam_beta:0``): how two models' layers match."""
    return variable.name.rsplit(layer.name + "/", 1)[-1]


def _synthesis_layers(synthesis) -> list:
    return [synthesis.layer_0, synthesis.layer_1, synthesis.layer_2]


def _embedded(value: np.ndarray, current: np.ndarray) -> np.ndarray:
    """``value`` in the leading corner of ``current`` (which keeps its own values elsewhere)."""
    if value.ndim != current.ndim or any(a > b for a, b in zip(value.shape, current.shape)):
        raise ValueError(f"cannot warm-start a variable of shape {current.shape} from {value.shape}")
    out = current.copy()
    out[tuple(slice(0, n) for n in value.shape)] = value
    return out
