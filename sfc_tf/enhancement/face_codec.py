"""A variable-rate learned face codec, end to end or conditional on the decoder's prediction (ours, beside the
paper's per-lambda Balle-2016 models of ``learned.py``).

Transforms: Balle-2016's (three strided convolutions with GDN, 128 filters; synthesis mirrored with inverse GDN).
  end to end   y = g_a(x);              x^ = g_s(y^)
  conditional  y = g_a(x, p);           x^ = p + g_s(y^, c(p))
where p is the prediction the decoder computes from the base layer and c(p) a context pyramid of p (at 1/4,
1/8 and 1/16 of the crop) concatenated into the synthesis at each scale, as in conditional video coding
(Ladune et al. 2020; DCVC, Li et al. 2021): the analysis sees what the decoder already knows and the latent
only carries the rest. The output adds to p, so the codec can fall back to coding the residual.

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

NUM_FILTERS = 128
DOWNSCALE = 16
CONTEXT_FILTERS = 64


def _conv(filters, kernel, down=1, up=1, activation=None, bias=True, name=None):
    return tfc.SignalConv2D(filters, (kernel, kernel), name=name, corr=down > 1 or up == 1, strides_down=down,
                            strides_up=up, padding="same_zeros", use_bias=bias, activation=activation)


class Analysis(tf.keras.Sequential):
    def __init__(self, num_filters: int):
        super().__init__(name="analysis")
        self.add(_conv(num_filters, 9, down=4, activation=tfc.GDN(name="gdn_0"), name="layer_0"))
        self.add(_conv(num_filters, 5, down=2, activation=tfc.GDN(name="gdn_1"), name="layer_1"))
        self.add(_conv(num_filters, 5, down=2, bias=False, name="layer_2"))


class Context(tf.keras.layers.Layer):
    """p -> features at 1/4, 1/8 and 1/16 of its size."""

    def __init__(self, filters: int = CONTEXT_FILTERS):
        super().__init__(name="context")
        self.stages = [_conv(filters, 9, down=4, activation=tfc.GDN(name="cgdn_0"), name="context_0"),
                       _conv(filters, 5, down=2, activation=tfc.GDN(name="cgdn_1"), name="context_1"),
                       _conv(filters, 5, down=2, name="context_2")]

    def call(self, p):
        out, x = [], p
        for stage in self.stages:
            x = stage(x)
            out.append(x)
        return out          # [1/4, 1/8, 1/16]


class Synthesis(tf.keras.layers.Layer):
    """y^ (and, if conditional, the context pyramid) -> image in 0..1 units."""

    def __init__(self, num_filters: int):
        super().__init__(name="synthesis")
        self.layer_0 = _conv(num_filters, 5, up=2, activation=tfc.GDN(name="igdn_0", inverse=True), name="layer_0")
        self.layer_1 = _conv(num_filters, 5, up=2, activation=tfc.GDN(name="igdn_1", inverse=True), name="layer_1")
        self.layer_2 = _conv(3, 9, up=4, name="layer_2")

    def call(self, y, context=None):
        join = (lambda a, i: a) if context is None else (lambda a, i: tf.concat([a, context[i]], -1))
        x = self.layer_0(join(y, 2))
        x = self.layer_1(join(x, 1))
        return self.layer_2(join(x, 0))


class FaceCodec(RateDistortionMetrics, tf.keras.Model):
    """Variable-rate (conditional) learned codec; ``call((x, p), rate)`` returns (loss, bpp, mse)."""

    def __init__(self, lmbdas, conditional: bool = False, prior: str = "channel", num_filters: int = NUM_FILTERS,
                 image_size: int = 160):
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
        return {"lmbdas": self.lmbdas, "conditional": self.conditional, "prior": self.prior_kind,
                "num_filters": self.num_filters, "image_size": self.image_size}

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
        p = tf.cast(p, tf.float32) / 255.0
        return (p + self.synthesis_transform(y_hat, self.context_transform(p))) * 255.0

    # -- training -------------------------------------------------------------------------------------------
    def call(self, x, p=None, rate=0, training=False):
        x = tf.cast(x, tf.float32)
        y = self.analyse(x, p, rate)

        def bits_of(r):
            return lambda: tfc.ContinuousBatchedEntropyModel(self.priors[r], coding_rank=3, compression=False)(
                y, training=training)

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
