"""Training that survives a stopped session, one mechanism for every training binary (the reconstructor and the
learned codecs): model and optimizer state in ``<checkpoint_dir>/train_state``, saved every ``every`` optimizer
steps and when training ends, with the run's progress beside it (``progress.json``: the step and the wall time of
all sessions so far). Re-running the same command continues from the latest state.

In a multi-worker job every worker restores the chief's latest state; the chief saves there, the others into
private subfolders (every worker takes part in a save, as ``tf.distribute`` requires).
"""

from __future__ import annotations

import json
import pathlib
import time

import tensorflow as tf

from sfc_tf import distribute

STATE_DIR = "train_state"
PROGRESS_FILE = "progress.json"


def restore(state: tf.train.Checkpoint, out: str | pathlib.Path, strategy) -> tuple:
    """(manager saving ``state`` under ``out/train_state``, the checkpoint restored or None)."""
    state_dir = pathlib.Path(out) / STATE_DIR
    write_dir = state_dir if distribute.is_chief(strategy) else state_dir / f"worker_{distribute.task(strategy)[1]}"
    latest = tf.train.latest_checkpoint(str(state_dir))
    if latest:
        state.restore(latest).assert_existing_objects_matched()
    return tf.train.CheckpointManager(state, str(write_dir), max_to_keep=1), latest


class SaveState(tf.keras.callbacks.Callback):
    """Saves the state every ``every`` optimizer steps and when training ends, with the run's wall time (this
    session's plus what ``progress.json`` recorded for the ``restored_step`` the session started from)."""

    def __init__(self, manager: tf.train.CheckpointManager, every: int, restored_step: int = 0):
        super().__init__()
        self.manager, self.every = manager, int(every)
        path = pathlib.Path(manager.directory) / PROGRESS_FILE
        progress = json.loads(path.read_text()) if path.is_file() else {}
        self.wall_time_before = float(progress["wall_time_s"]) if progress.get("step") == restored_step else 0.0
        self.start = time.time()

    def session_time(self) -> float:
        """Seconds of training in this session, up to now."""
        return time.time() - self.start

    def wall_time(self) -> float:
        """Seconds of training over every session of the run, up to now."""
        return self.wall_time_before + self.session_time()

    def _save(self):
        step = int(self.model.optimizer.iterations.numpy())
        self.manager.save(step)
        progress = {"step": step, "wall_time_s": round(self.wall_time(), 1)}
        (pathlib.Path(self.manager.directory) / PROGRESS_FILE).write_text(json.dumps(progress))

    def on_train_begin(self, logs=None):
        self.start = time.time()

    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations.numpy()) % self.every == 0:
            self._save()

    def on_train_end(self, logs=None):
        self._save()
