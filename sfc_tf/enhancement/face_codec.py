"""A variable-rate learned face codec, end to end or conditional on the decoder's prediction (ours, beside the
paper's per-lambda Balle-2016 models of ``learned.py``).

Transforms: Balle-2016's (three strided convolutions with GDN, 128 filters; synthesis mirrored with inverse GDN).
  end to end   y = g_a(x);              x^ = g_s(y^)
  conditional  y = g_a(x, p);           x^ = gate * p + g_s(y^, c(p))
where p is the prediction the decoder computes from the base layer and c(p) a context pyramid of p (at 1/4,
1/8 and 1/16 of the crop) concatenated into the synthesis at each scale, as in conditional video coding
(Ladune et al. 2020; DCVC, Li et al. 2021): the analysis sees what the decoder already knows and the latent
only carries the rest. The output adds a learned per-channel gate times p, so the codec can fall back to coding
the residual (gate 1, its initial value) or start from an end-to-end model (gate 0, ``warm_start``).

Rates: one model for ``len(lmbdas)`` rate points. Per rate r a gain vector scales the latent before rounding
(y * gain_r) and an inverse gain after (Cui et al. 2021, "asymmetric gained" codecs), and the rate has its own
factorized prior. With ``prior="position"`` each latent position of the fixed 10x10 grid of a 160x160 crop has
its own prior (faces are aligned, so the statistics depend on where a latent sits); ``"channel"`` shares one
prior per channel across positions (Balle 2016). Entropy coding never depends on p: the range coder's tables
are fixed by the weights, so decoding is as platform-robust as the paper's codec.

Training: loss = bpp + lambda_r * MSE (0..255 pixels), a rate drawn per batch.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tensorflow_compression as tfc

from sfc_tf.enhancement import coding_tables
from sfc_tf.enhancement.rd_metrics import RateDistortionMetrics
from sfc_tf.enhancement.signal_conv import signal_conv

NUM_FILTERS = 128
DOWNSCALE = 16
CONTEXT_FILTERS = 64


class Analysis(tf.keras.Sequential):
    def __init__(self, num_filters: int, latent_depth: int | None = None):
        super().__init__(name="analysis")
        self.add(signal_conv(num_filters, 9, down=4, activation=tfc.GDN(name="gdn_0"), name="layer_0"))
        self.add(signal_conv(num_filters, 5, down=2, activation=tfc.GDN(name="gdn_1"), name="layer_1"))
        self.add(signal_conv(latent_depth or num_filters, 5, down=2, bias=False, name="layer_2"))


class Context(tf.keras.layers.Layer):
    """p -> (gate * p, [features at 1/4, 1/8 and 1/16 of p's size]). The per-channel gate sets how much of p the
    output starts from: 1 when trained from scratch (the codec starts as a residual coder), 0 after a warm start
    from an end-to-end model (``warm_start``: the codec starts as that model and learns what p is worth)."""

    def __init__(self, filters: int = CONTEXT_FILTERS):
        super().__init__(name="context")
        self.stages = [
            signal_conv(filters, 9, down=4, activation=tfc.GDN(name="cgdn_0"), name="context_0"),
            signal_conv(filters, 5, down=2, activation=tfc.GDN(name="cgdn_1"), name="context_1"),
            signal_conv(filters, 5, down=2, name="context_2"),
        ]

    def build(self, input_shape):
        self.gate = self.add_weight(name="gate", shape=(input_shape[-1],), initializer="ones")
        super().build(input_shape)

    def call(self, p):
        out, x = [], p
        for stage in self.stages:
            x = stage(x)
            out.append(x)
        return p * self.gate, out  # pyramid: [1/4, 1/8, 1/16]


class Synthesis(tf.keras.layers.Layer):
    """y^ (and, if conditional, the context pyramid) -> image in 0..1 units."""

    def __init__(self, num_filters: int):
        super().__init__(name="synthesis")
        self.layer_0 = signal_conv(
            num_filters, 5, up=2, activation=tfc.GDN(name="igdn_0", inverse=True), name="layer_0"
        )
        self.layer_1 = signal_conv(
            num_filters, 5, up=2, activation=tfc.GDN(name="igdn_1", inverse=True), name="layer_1"
        )
        self.layer_2 = signal_conv(3, 9, up=4, name="layer_2")

    def call(self, y, context=None):
        join = (lambda a, i: a) if context is None else (lambda a, i: tf.concat([a, context[i]], -1))
        x = self.layer_0(join(y, 2))
        x = self.layer_1(join(x, 1))
        return self.layer_2(join(x, 0))


class FaceCodec(RateDistortionMetrics, tf.keras.Model):
    """Variable-rate (conditional) learned codec; ``call((x, p), rate)`` returns (loss, bpp, mse)."""

    WEIGHT_PARTS = ("analysis_transform", "synthesis_transform", "gains", "inverse_gains", "priors")

    def __init__(
        self,
        lmbdas,
        conditional: bool = False,
        prior: str = "channel",
        num_filters: int = NUM_FILTERS,
        image_size: int = 160,
    ):
        super().__init__()
        if prior not in ("channel", "position"):
            raise ValueError("prior must be 'channel' or 'position'")
        self.lmbdas = [float(v) for v in lmbdas]
        self.conditional, self.prior_kind, self.num_filters = bool(conditional), prior, int(num_filters)
        self.image_size = int(image_size)
        self.latent_size = self.image_size // DOWNSCALE
        self.analysis_transform = Analysis(num_filters)
        self.synthesis_transform = Synthesis(num_filters)
        self.context_transform = Context() if conditional else None
        rates = len(self.lmbdas)
        self.gains = tf.Variable(tf.ones((rates, num_filters)), name="gains")
        self.inverse_gains = tf.Variable(tf.ones((rates, num_filters)), name="inverse_gains")
        shape = (self.latent_size, self.latent_size, num_filters) if prior == "position" else (num_filters,)
        self.priors = [tfc.NoisyDeepFactorized(batch_shape=shape, name=f"prior_{r}") for r in range(rates)]
        self.entropy_models = None
        self._build()

    def _build(self):
        x = tf.zeros((1, self.image_size, self.image_size, 3))
        self(x, x, 0)

    @property
    def num_rates(self) -> int:
        return len(self.lmbdas)

    def get_config(self):
        return {
            "lmbdas": self.lmbdas,
            "conditional": self.conditional,
            "prior": self.prior_kind,
            "num_filters": self.num_filters,
            "image_size": self.image_size,
        }

    # -- transforms -----------------------------------------------------------------------------------------
    def analyse(self, x, p, rate):
        """uint8-valued x (and p) -> scaled latent y * gain_rate."""
        x = tf.cast(x, tf.float32) / 255.0
        if self.conditional:
            x = tf.concat([x, tf.cast(p, tf.float32) / 255.0], -1)
        return self.analysis_transform(x) * tf.gather(self.gains, rate)

    def synthesise(self, y_hat, p, rate):
        """scaled, quantized latent -> image in 0..255 (float)."""
        y_hat = y_hat * tf.gather(self.inverse_gains, rate)
        if not self.conditional:
            return self.synthesis_transform(y_hat) * 255.0
        skip, pyramid = self.context_transform(tf.cast(p, tf.float32) / 255.0)
        return (skip + self.synthesis_transform(y_hat, pyramid)) * 255.0

    # -- training -------------------------------------------------------------------------------------------
    def call(self, x, p=None, rate=0, training=False):
        x = tf.cast(x, tf.float32)
        y = self.analyse(x, p, rate)

        def bits_of(r):
            return lambda: tfc.ContinuousBatchedEntropyModel(self.priors[r], coding_rank=3, compression=False)(
                y, training=training
            )

        if isinstance(rate, int):
            y_hat, bits = bits_of(rate)()
        else:
            y_hat, bits = tf.switch_case(rate, [bits_of(r) for r in range(self.num_rates)])
        x_hat = self.synthesise(y_hat, p, rate)
        num_pixels = tf.cast(tf.reduce_prod(tf.shape(x)[:-1]), bits.dtype)
        bpp = tf.reduce_sum(bits) / num_pixels
        mse = tf.reduce_mean(tf.math.squared_difference(x, x_hat))
        return bpp + tf.gather(tf.constant(self.lmbdas), rate) * mse, bpp, mse

    def train_step(self, data):
        x, p = data
        rate = tf.random.uniform((), 0, self.num_rates, tf.int32)
        with tf.GradientTape() as tape:
            loss, bpp, mse = self(x, p, rate, training=True)
        self.optimizer.minimize(loss, self.trainable_variables, tape=tape)
        return self._update(loss, bpp, mse)

    def test_step(self, data):
        x, p = data
        results = [self(x, p, r, training=False) for r in range(self.num_rates)]
        return self._update(*(tf.reduce_mean(v) for v in zip(*results)))

    # -- coding ---------------------------------------------------------------------------------------------
    def enable_coding(self, tables: dict | None = None):
        """Every rate's range-coding model: from stored tables (``coding_tables.read``), or built from the priors."""
        self.entropy_models = coding_tables.coding_models(self.priors, tables)
        return self

    def compress(self, x, p, rate: int):
        """uint8 (N, S, S, 3) crops (and predictions) -> N strings."""
        return self.entropy_models[rate].compress(self.analyse(x, p, rate))

    def decompress(self, strings, p, rate: int):
        """N strings (and predictions) -> uint8 (N, S, S, 3)."""
        shape = () if self.prior_kind == "position" else (self.latent_size, self.latent_size)
        y_hat = self.entropy_models[rate].decompress(strings, shape)
        return tf.saturate_cast(tf.round(self.synthesise(y_hat, p, rate)), tf.uint8)

    def estimated_bits(self, x, p, rate: int) -> np.ndarray:
        entropy_model = coding_tables.rate_model(self.priors[rate], self.entropy_models[rate])
        _, bits = entropy_model(self.analyse(x, p, rate), training=False)
        return bits.numpy()


def warm_start(model: FaceCodec, source) -> FaceCodec:
    """Starts ``model`` as the end-to-end ``learned.BLS2017`` model ``source`` (same number of filters): its
    transforms, and its prior for every rate (the same prior at every latent position of a positional prior).
    What a conditional model adds gets zero weights (p at the analysis input, the context at each synthesis scale)
    and a zero gate on p, so ``model`` codes exactly like ``source`` until training teaches it what p is worth."""
    if not hasattr(source, "prior"):
        raise ValueError("a FaceCodec warm-starts from a single-rate end-to-end (BLS2017) checkpoint")
    if source.num_filters != model.num_filters:
        raise ValueError(f"cannot warm-start {model.num_filters} filters from {source.num_filters}")
    synthesis = model.synthesis_transform
    pairs = zip(
        [layer for layer in source.analysis_transform.layers if layer.trainable_variables]
        + [layer for layer in source.synthesis_transform.layers if layer.trainable_variables],
        list(model.analysis_transform.layers) + [synthesis.layer_0, synthesis.layer_1, synthesis.layer_2],
    )
    for source_layer, layer in pairs:
        _assign_each(layer.trainable_variables, source_layer.trainable_variables, _zero_padded)
    for prior in model.priors:
        _assign_each(prior.trainable_variables, source.prior.trainable_variables, _tiled)
    if model.context_transform is not None:
        model.context_transform.gate.assign(tf.zeros_like(model.context_transform.gate))
    return model


def _assign_each(targets, sources, fit):
    if len(targets) != len(sources):
        raise ValueError(f"cannot warm-start {len(targets)} variables from {len(sources)}")
    for target, source in zip(targets, sources):
        target.assign(fit(source.numpy(), tuple(target.shape)))


def _zero_padded(value: np.ndarray, shape: tuple) -> np.ndarray:
    """``value`` in the leading corner of zeros of ``shape`` (a kernel's extra input channels: zero weights)."""
    if any(a > b for a, b in zip(value.shape, shape)) or value.ndim != len(shape):
        raise ValueError(f"cannot warm-start a variable of shape {shape} from {value.shape}")
    return np.pad(value, [(0, b - a) for a, b in zip(value.shape, shape)])


def _tiled(value: np.ndarray, shape: tuple) -> np.ndarray:
    """A per-channel prior's variable repeated over the latent positions of a positional prior (channel fastest)."""
    if shape[0] % value.shape[0] or shape[1:] != value.shape[1:]:
        raise ValueError(f"cannot warm-start a prior variable of shape {shape} from {value.shape}")
    return np.tile(value, (shape[0] // value.shape[0],) + (1,) * (value.ndim - 1))
