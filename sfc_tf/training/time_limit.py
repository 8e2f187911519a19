"""A wall-clock budget for a whole job (``Deadline``), and a Keras callback that ends training when it is spent.

A trainer's ``--max_minutes`` starts counting when the binary starts: loading, training and the work after training
(range-coding tables, held-out evaluation) share it. Training stops at the deadline; each step after training runs
only if its estimated time still fits (``Deadline.allows``), and is otherwise skipped with a line saying how to
finish it.
"""

from __future__ import annotations

import math
import time
from typing import Callable

import tensorflow as tf


class Deadline:
    """``minutes`` from now on ``clock`` (seconds; ``time.monotonic``); ``None``: no limit."""

    def __init__(self, minutes: float | None = None, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.end = None if minutes is None else clock() + 60.0 * minutes

    def remaining(self) -> float:
        """Seconds left (infinite without a limit, negative once past)."""
        return math.inf if self.end is None else self.end - self.clock()

    def expired(self) -> bool:
        return self.remaining() <= 0

    def allows(self, seconds: float) -> bool:
        """Whether ``seconds`` of work would end before the deadline."""
        return self.remaining() >= seconds


class TimeLimit(tf.keras.callbacks.Callback):
    """Stops training after the first step (``per="step"``) or epoch (``per="epoch"``) that ends past ``minutes``
    from now, or past ``deadline`` when one is given."""

    def __init__(self, minutes: float | None = None, per: str = "epoch", deadline: Deadline | None = None):
        super().__init__()
        if per not in ("step", "epoch"):
            raise ValueError(f"per must be 'step' or 'epoch', got {per!r}")
        self.deadline = deadline or Deadline(minutes)
        self.per = per
        self.stopped = False

    def _check(self):
        if self.deadline.expired():
            self.model.stop_training = self.stopped = True

    def on_train_batch_end(self, batch, logs=None):
        if self.per == "step":
            self._check()

    def on_epoch_end(self, epoch, logs=None):
        if self.per == "epoch":
            self._check()
