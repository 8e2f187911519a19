"""A Keras callback that ends training once a wall-clock budget is spent (checkpoint-and-resume sessions)."""

import time

import tensorflow as tf


class TimeLimit(tf.keras.callbacks.Callback):
    """Stops training after the first step (``per="step"``) or epoch (``per="epoch"``) that ends past ``minutes``."""

    def __init__(self, minutes: float, per: str = "epoch"):
        super().__init__()
        if per not in ("step", "epoch"):
            raise ValueError(f"per must be 'step' or 'epoch', got {per!r}")
        self.deadline = time.time() + 60 * minutes
        self.per = per

    def _check(self):
        if time.time() > self.deadline:
            self.model.stop_training = True

    def on_train_batch_end(self, batch, logs=None):
        if self.per == "step":
            self._check()

    def on_epoch_end(self, epoch, logs=None):
        if self.per == "epoch":
            self._check()
