import numpy as np
import pytest
import tensorflow as tf

from sfc_tf.time_limit import TimeLimit


class CountSteps(tf.keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.steps = 0
        self.epochs = 0

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1

    def on_epoch_end(self, epoch, logs=None):
        self.epochs += 1


def _fit(callback):
    model = tf.keras.Sequential([tf.keras.Input((2,)), tf.keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    counter = CountSteps()
    x = np.zeros((8, 2), np.float32)
    model.fit(x, x[:, :1], batch_size=2, epochs=3, verbose=0, callbacks=[callback, counter])
    return counter


def test_spent_budget_stops_after_one_step():
    counter = _fit(TimeLimit(0, per="step"))
    assert counter.steps == 1


def test_spent_budget_stops_after_one_epoch():
    counter = _fit(TimeLimit(0, per="epoch"))
    assert (counter.epochs, counter.steps) == (1, 4)


def test_budget_not_spent_runs_everything():
    counter = _fit(TimeLimit(60, per="step"))
    assert (counter.epochs, counter.steps) == (3, 12)


def test_bad_granularity_is_refused():
    with pytest.raises(ValueError, match="per must be"):
        TimeLimit(1, per="batch")
