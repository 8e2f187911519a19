"""Training that survives a stopped session, one mechanism for every training binary (the reconstructor and the
learned codecs): model and optimizer state in ``<checkpoint_dir>/train_state``, saved every ``every`` optimizer
steps and when training ends, with the run's progress beside it (``progress.json``: the step and the wall time of
all sessions so far). Re-running the same command continues from the latest state; a finished run is not saved
again (``check_unfinished``; the binaries decide before loading anything: ``sfc_tf.runs.start``), and a warm start
is recorded the same way by every trainer (``warm_start``).

In a multi-worker job every worker restores the chief's latest state; the chief saves there, the others into
private subfolders (every worker takes part in a save, as ``tf.distribute`` requires).
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import time
from typing import Callable

import tensorflow as tf

from sfc_tf import runs
from sfc_tf.training import distribute

STATE_DIR = runs.STATE_DIR
PROGRESS_FILE = runs.PROGRESS_FILE


def restore(state: tf.train.Checkpoint, out: str | pathlib.Path, strategy) -> tuple:
    """(manager saving ``state`` under ``out/train_state``, the checkpoint restored or None)."""
    state_dir = pathlib.Path(out) / STATE_DIR
    write_dir = state_dir if distribute.is_chief(strategy) else state_dir / f"worker_{distribute.task(strategy)[1]}"
    latest = tf.train.latest_checkpoint(str(state_dir))
    if latest:
        state.restore(latest).assert_existing_objects_matched()
    return tf.train.CheckpointManager(state, str(write_dir), max_to_keep=1), latest


def check_unfinished(done: int, total: int, out: str | pathlib.Path) -> None:
    """Refuse to save again a finished run: its saved state holds all of its ``total`` optimizer steps and its
    model is saved (``meta.json``). A state of all steps without the model (a session that ran out of time after
    training) is only finished: the caller skips training."""
    if done >= total and (pathlib.Path(out) / runs.FINISHED_FILE).is_file():
        raise ValueError(
            f"already finished: {done} steps, see {out} (train for longer, more epochs or steps, to continue it)"
        )


def warm_start(init_from: str | None, latest: str | None, read_meta: Callable, load_weights: Callable) -> dict | None:
    """The ``warm_start`` record of a run's meta.json: ``read_meta(init_from)`` (the source's own meta.json, so the
    whole training history of a model travels with it) whenever ``init_from`` is given, resumed sessions included
    (re-running the same command continues a run); ``load_weights(init_from)`` only on a fresh start (a resumed
    session takes its weights from the state)."""
    if not init_from:
        return None
    meta = read_meta(init_from)
    if not latest:
        load_weights(init_from)
    return meta


class SaveState(tf.keras.callbacks.Callback):
    """Saves the state every ``every`` optimizer steps and when training ends, with the run's wall time (this
    session's plus what ``progress.json`` recorded for the ``restored_step`` the session started from)."""

    def __init__(self, manager: tf.train.CheckpointManager, every: int, restored_step: int = 0):
        super().__init__()
        self.manager, self.every = manager, int(every)
        path = pathlib.Path(manager.directory) / PROGRESS_FILE
        progress = json.loads(path.read_text()) if path.is_file() else {}
        self.wall_time_before = float(progress["wall_time_s"]) if progress.get("step") == restored_step else 0.0
        self.restored_step = int(restored_step)
        self.start = time.time()

    def session_time(self) -> float:
        """Seconds of training in this session, up to now."""
        return time.time() - self.start

    def wall_time(self) -> float:
        """Seconds of training over every session of the run, up to now."""
        return self.wall_time_before + self.session_time()

    def record(self, config, warm_start: dict | None, steps_per_epoch: float) -> dict:
        """What a run's meta.json says of its training, taken when training ends: the config (a dataclass with a
        ``batch_size``), the warm start, optimizer steps and epochs in all and in this session, wall time of all
        sessions and of this one, and this session's images/s."""
        steps = int(self.model.optimizer.iterations.numpy())
        session_steps, session_time = steps - self.restored_step, self.session_time()
        batch_size = config.batch_size
        return {
            "training": dataclasses.asdict(config),
            "warm_start": warm_start,
            "steps": steps,
            "steps_per_epoch": steps_per_epoch,
            "epochs_done": round(steps / steps_per_epoch, 3),
            "steps_this_session": session_steps,
            "epochs_this_session": round(session_steps / steps_per_epoch, 3),
            "wall_time_s": round(self.wall_time(), 1),
            "wall_time_s_this_session": round(session_time, 1),
            "images_per_second": round(session_steps * batch_size / session_time, 2) if session_time > 0 else None,
        }

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


WARM_START_CHECK_FILE = "warm_start_check.json"  # in train_state/: a warm start's score before its first update


def warm_start_checked(out: str | pathlib.Path) -> bool:
    """Whether this run recorded a warm start's score before its first update (``warm_start_before``)."""
    return (pathlib.Path(out) / STATE_DIR / WARM_START_CHECK_FILE).is_file()


def warm_start_before(out: str | pathlib.Path, scores: dict, faces: str, images: int) -> None:
    """Records a warm-started model's ``scores`` (name -> value, lower is better, a ``loss`` among them) on
    ``images`` ``faces`` ("held-out", or "training (none held out)") before its first update."""
    path = pathlib.Path(out) / STATE_DIR / WARM_START_CHECK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"faces": faces, "images": images, "before": scores}))


def warm_start_after(out: str | pathlib.Path, scores: dict) -> dict | None:
    """The warm start's check at the end of training (``None`` if no score was recorded before): the same faces'
    ``scores`` now, a line printed, and ``worse`` when the run ends worse (higher loss) than it started."""
    path = pathlib.Path(out) / STATE_DIR / WARM_START_CHECK_FILE
    if not path.is_file():
        return None
    check = {**json.loads(path.read_text()), "after": scores}
    before, after = check["before"]["loss"], scores["loss"]
    check["worse"] = after > before
    verdict = "WORSE than its warm start" if check["worse"] else "better than its warm start"
    print(
        f"warm start check on {check['images']} {check['faces']} faces: loss {before:.4g} before the first update, "
        f"{after:.4g} at the end: {verdict}",
        flush=True,
    )
    return check
