"""Training the learned enhancement codec (paper: Adam, batch 16, learning rate 2e-4, 10 epochs; one model per
lambda) on 8-bit images: min-max normalised residuals, or the original crops for the plain end-to-end anchor.

Resumable: model and optimizer state go to ``<checkpoint_dir>/train_state`` every ``save_every`` steps and when
training stops (epochs done or ``max_minutes`` reached, checked after every step); re-running continues from
there. ``init_from`` warm-starts the weights from another enhancement checkpoint (e.g. the anchor of the same
lambda) when there is no saved state yet; that checkpoint's meta.json is kept under ``warm_start`` so the
whole training history of a model stays in its own meta.json.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import time

import numpy as np
import tensorflow as tf

from sfc_tf import distribute
from sfc_tf.enhancement import learned
from sfc_tf.time_limit import TimeLimit

STATE_DIR = "train_state"


@dataclasses.dataclass
class EnhancementTrainConfig:
    checkpoint_dir: str
    lmbda: float
    epochs: float = 10
    batch_size: int = 16
    learning_rate: float = 2e-4
    patch_size: int = 160
    num_filters: int = learned.NUM_FILTERS
    strategy: str = "default"
    jit_compile: bool = False
    max_minutes: float | None = None
    save_every: int = 200
    eval_images: int = 64
    init_from: str | None = None
    verbose: int = 1
    seed: int = 0


class SaveState(tf.keras.callbacks.Callback):
    """Writes model + optimizer state every ``every`` steps and at the end of training."""

    def __init__(self, manager: tf.train.CheckpointManager, every: int):
        super().__init__()
        self.manager, self.every = manager, every

    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations) % self.every == 0:
            self.manager.save(int(self.model.optimizer.iterations))

    def on_train_end(self, logs=None):
        self.manager.save(int(self.model.optimizer.iterations))


def patches_dataset(images: np.ndarray, batch_size: int, patch_size: int, seed: int = 0) -> tf.data.Dataset:
    """Shuffled batches of random ``patch_size`` crops (with random horizontal flips) of uint8 images."""
    if patch_size % learned.DOWNSCALE or patch_size > min(images.shape[1:3]):
        raise ValueError(f"patch size {patch_size} must be a multiple of {learned.DOWNSCALE} within the images")
    dataset = tf.data.Dataset.from_tensor_slices(images).shuffle(len(images), seed=seed).repeat()
    if patch_size < max(images.shape[1:3]):
        dataset = dataset.map(lambda x: tf.image.random_crop(x, (patch_size, patch_size, 3), seed=seed),
                              num_parallel_calls=tf.data.AUTOTUNE)
    dataset = dataset.map(lambda x: tf.image.random_flip_left_right(x, seed=seed),
                          num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def build_model(config: EnhancementTrainConfig) -> learned.BLS2017:
    model = learned.BLS2017(config.lmbda, config.num_filters)
    model.compile(optimizer=tf.keras.optimizers.Adam(config.learning_rate), jit_compile=config.jit_compile)
    model.optimizer.build(model.trainable_variables)
    return model


def _previous_meta(directory: pathlib.Path) -> dict:
    path = directory / learned.META_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def train(config: EnhancementTrainConfig, images: np.ndarray, meta: dict) -> dict:
    """Train one BLS2017 model on uint8 images (N, H, W, 3); final weights + meta.json in ``checkpoint_dir``."""
    out = pathlib.Path(config.checkpoint_dir)
    steps_per_epoch = max(1, len(images) // config.batch_size)
    total_steps = max(1, round(config.epochs * steps_per_epoch))
    with distribute.make_strategy(config.strategy).scope():
        model = build_model(config)
        state = tf.train.Checkpoint(model=model, optimizer=model.optimizer)
        warm_start = None
        manager = tf.train.CheckpointManager(state, str(out / STATE_DIR), max_to_keep=1)
        if manager.latest_checkpoint:
            state.restore(manager.latest_checkpoint).assert_existing_objects_matched()
            model.optimizer.learning_rate.assign(config.learning_rate)   # the restored state holds the old one
        elif config.init_from:
            _, warm_start = learned.load_model(config.init_from)  # checks the sha256 before we read the weights
            learned.restore_weights(model, config.init_from)
    previous = _previous_meta(out) if manager.latest_checkpoint else {}
    warm_start = previous.get("warm_start", warm_start)
    done = int(model.optimizer.iterations)
    callbacks = [SaveState(manager, config.save_every)]
    if config.max_minutes:
        callbacks.append(TimeLimit(config.max_minutes, per="step"))
    start = time.time()
    history = model.fit(patches_dataset(images, config.batch_size, config.patch_size, config.seed + done),
                        epochs=1, steps_per_epoch=max(1, total_steps - done), callbacks=callbacks,
                        verbose=config.verbose) if done < total_steps else None
    wall = time.time() - start
    steps = int(model.optimizer.iterations)
    final = {k: float(v[-1]) for k, v in history.history.items()} if history else previous.get("final_metrics")
    return learned.save(
        model, out, **meta, training=dataclasses.asdict(config), warm_start=warm_start, steps=steps,
        steps_per_epoch=steps_per_epoch,
        epochs_done=round(steps / steps_per_epoch, 3), train_images=len(images),
        wall_time_s=round(previous.get("wall_time_s", 0.0) + wall, 1), final_metrics=final,
        final_eval=evaluate(model, images[:config.eval_images]),
        images_per_second_last_session=round((steps - done) * config.batch_size / wall, 2) if wall > 0 else None)


def evaluate(model: learned.BLS2017, images: np.ndarray, batch_size: int = 16) -> dict:
    """Loss, bpp and MSE of the model as it is now (rounded latents, whole images); the fit metrics are
    running means over the session."""
    results = model.evaluate(tf.data.Dataset.from_tensor_slices(images).batch(batch_size), verbose=0,
                             return_dict=True)
    return {"images": len(images), **{k: float(v) for k, v in results.items()}}


def throughput(images: np.ndarray, patch_size: int, batch_size: int = 16, steps: int = 5,
               jit_compile: bool = False) -> float:
    """Training images per second (the first step, which traces/compiles, excluded)."""
    config = EnhancementTrainConfig("", 0.01, batch_size=batch_size, patch_size=patch_size, jit_compile=jit_compile)
    model = build_model(config)
    iterator = iter(patches_dataset(images, batch_size, patch_size))
    model.train_on_batch(next(iterator))
    start = time.time()
    for _ in range(steps):
        model.train_on_batch(next(iterator))
    return steps * batch_size / (time.time() - start)
