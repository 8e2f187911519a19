"""Keras plumbing shared by the learned codecs whose ``call`` returns (loss, bpp, mse): the three running means
reported by ``fit`` and ``evaluate``, and ``compile`` without Keras losses (the model computes its own)."""

import tensorflow as tf

METRIC_NAMES = ("loss", "bpp", "mse")


class RateDistortionMetrics:
    """Mixin for a ``tf.keras.Model`` whose ``call`` returns (loss, bpp, mse)."""

    def _update(self, loss, bpp, mse):
        for metric, value in zip(self.tracked, (loss, bpp, mse)):
            metric.update_state(value)
        return {m.name: m.result() for m in self.tracked}

    def compile(self, **kwargs):
        super().compile(loss=None, metrics=None, loss_weights=None, weighted_metrics=None, **kwargs)
        self.tracked = [tf.keras.metrics.Mean(name) for name in METRIC_NAMES]

    @property
    def metrics(self):
        return getattr(self, "tracked", [])
