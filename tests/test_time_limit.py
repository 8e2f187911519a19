import json

import numpy as np
import pytest
import tensorflow as tf

from sfc_tf.training.time_limit import Deadline, TimeLimit


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


class FakeClock:
    """Seconds that pass only when a test says so, or by ``tick`` at every reading."""

    def __init__(self, tick: float = 0.0):
        self.now, self.tick = 0.0, tick

    def __call__(self) -> float:
        self.now += self.tick
        return self.now


def test_deadline_counts_from_its_start_and_estimates_what_fits():
    clock = FakeClock()
    deadline = Deadline(1, clock)
    assert deadline.allows(60) and not deadline.allows(61) and not deadline.expired()
    clock.now = 45
    assert deadline.remaining() == 15 and not deadline.allows(16)
    clock.now = 60
    assert deadline.expired()
    assert Deadline(None, clock).allows(1e9) and not Deadline(None, clock).expired()


def test_time_limit_stops_at_a_deadline():
    clock = FakeClock()
    deadline = Deadline(1, clock)
    clock.now = 61
    counter = _fit(TimeLimit(per="step", deadline=deadline))
    assert counter.steps == 1


def _face_codec_run(tmp_path, crops, deadline):
    from sfc_tf.enhancement import training

    config = training.FaceCodecTrainConfig(
        str(tmp_path / "run"), lmbdas=(0.001, 0.01), steps=2, batch_size=2, num_filters=8, verbose=0
    )
    return training.train_face_codec(
        config,
        lambda seed: training.face_codec_dataset(crops, None, 2, seed),
        len(crops),
        {"data": "fixture"},
        (crops[:2], None),
        deadline,
    )


def test_the_time_limit_bounds_tables_and_evaluation(tmp_path, fixture_crops, capsys):
    """--max_minutes covers the work after training: with the time spent when training ends, the range-coding
    tables and the held-out evaluation are skipped with a line saying how to finish; the next session only
    finishes the run (no training step); one with time left after training builds and evaluates everything."""
    clock = FakeClock(tick=1.0)  # every reading of the clock is a second: training ends well before a minute
    deadline = Deadline(1, clock)
    clock_at_start = clock.now
    assert _face_codec_run(tmp_path, fixture_crops, deadline) is None
    assert clock.now - clock_at_start < 60
    out = capsys.readouterr().out
    assert "time limit reached after 2 training steps: the training state is saved; re-run the same command" in out
    assert not (tmp_path / "run" / "meta.json").exists()
    assert json.loads((tmp_path / "run" / "train_state" / "progress.json").read_text())["step"] == 2
    meta = _face_codec_run(tmp_path, fixture_crops, Deadline(None))
    assert meta["steps"] == 2 and meta["steps_this_session"] == 0 and len(meta["held_out"]["rates"]) == 2
    assert (tmp_path / "run" / "meta.json").is_file() and (tmp_path / "run" / "tables.npz").is_file()


def test_evaluation_stops_when_the_next_rate_does_not_fit():
    from sfc_tf.enhancement import training

    class Model:
        lmbdas = (0.001, 0.01)

    clock = FakeClock()
    assert (
        training.evaluate_face_codec(Model(), np.zeros((4, 16, 16, 3), np.uint8), None, deadline=Deadline(0, clock))
        is None
    )


def test_the_time_limit_bounds_a_single_rate_models_evaluation_and_tables(tmp_path, fixture_crops, capsys):
    from sfc_tf.enhancement import training

    config = training.EnhancementTrainConfig(
        str(tmp_path / "run"), 0.01, epochs=1, batch_size=2, patch_size=32, num_filters=8, verbose=0
    )
    assert training.train(config, fixture_crops, {"input": "test"}, Deadline(1, FakeClock(tick=1.0))) is None
    assert "time limit reached after 3 training steps" in capsys.readouterr().out
    assert not (tmp_path / "run" / "meta.json").exists()
    meta = training.train(config, fixture_crops, {"input": "test"})  # the next session only finishes
    assert meta["steps"] == 3 and meta["steps_this_session"] == 0
