"""Training the reconstructor: features as the decoder sees them, the paper's schedule, checkpoints, resume."""

from __future__ import annotations

import dataclasses
import json
import pathlib
import time
from typing import Callable, Sequence

import numpy as np
import tensorflow as tf

from sfc_tf.base import facenet
from sfc_tf.reconstruction import losses, reconstructor
from sfc_tf.training import distribute, resume
from sfc_tf.training.time_limit import Deadline, TimeLimit


class WarmupThenDecay(tf.keras.optimizers.schedules.LearningRateSchedule):
    """Exponential decay from ``initial`` at step 0 to ``final`` at ``total_steps`` (the paper: 0.01 -> 0.0001
    over 50 epochs), scaled by a linear ramp from 0 over the first ``warmup_steps`` (ours; 0: the paper's)."""

    def __init__(self, initial: float, final: float, total_steps: int, warmup_steps: int = 0):
        self.initial, self.final, self.total_steps, self.warmup_steps = initial, final, total_steps, warmup_steps
        self.decay = tf.keras.optimizers.schedules.ExponentialDecay(initial, max(total_steps, 1), final / initial)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        ramp = tf.minimum(1.0, (step + 1.0) / self.warmup_steps) if self.warmup_steps else 1.0
        return self.decay(step) * ramp

    def get_config(self):
        return dict(
            initial=self.initial, final=self.final, total_steps=self.total_steps, warmup_steps=self.warmup_steps
        )


def learning_rate_schedule(
    initial: float, final: float, total_steps: int, warmup_steps: int = 0
) -> tf.keras.optimizers.schedules.LearningRateSchedule:
    """The paper's exponential decay, after an optional linear warm-up (``WarmupThenDecay``)."""
    return WarmupThenDecay(initial, final, total_steps, warmup_steps)


def noisy_features(features: np.ndarray, steps: Sequence[float], rng: np.random.Generator) -> np.ndarray:
    """Stand-in for base-layer decoding when no base-layer model is given: uniform quantization noise of a
    step drawn per example from ``steps``, then L2 re-normalisation (the decoder re-normalises too)."""
    step = rng.choice(np.asarray(steps, np.float32), size=(len(features), 1))
    noisy = features + (rng.random(features.shape, dtype=np.float32) - 0.5) * step
    return noisy / np.linalg.norm(noisy, axis=1, keepdims=True)


def decoded_feature_views(features: np.ndarray, degraders: Sequence[Callable[[np.ndarray], np.ndarray]]) -> np.ndarray:
    """(R, N, D): the features as decoded at each of R rates (precomputed once; sampled per example)."""
    return np.stack([degrade(features) for degrade in degraders]).astype(np.float32)


def target(crop, mask=None):
    """A crop in [-1, 1], with its validity mask as a 4th channel when there is one (``losses.split_mask``)."""
    image = reconstructor.to_unit_range(crop)
    return image if mask is None else tf.concat([image, tf.cast(mask, tf.float32)[..., None]], -1)


def training_dataset(
    views: np.ndarray, crops: np.ndarray, batch_size: int, seed: int = 0, masks: np.ndarray | None = None
) -> tf.data.Dataset:
    """Endless shuffled batches of (decoded feature at a random rate, target crop in [-1, 1] [+ mask]). Each batch
    is gathered from the numpy arrays as it is needed: the training set is held once (55,248 crops with extra
    faces are 4.2 GB; copying them into graph constants doubled the resident size)."""
    num_rates, num_images = views.shape[:2]
    outputs = [tf.float32, tf.uint8] + ([] if masks is None else [tf.uint8])

    def gather(indices, rates):
        picked = [views[rates, indices], crops[indices]]
        return picked if masks is None else [*picked, masks[indices].astype(np.uint8, copy=False)]

    def batch(positions, indices):  # the rate is drawn afresh each time an image comes round
        rates = tf.random.stateless_uniform(tf.shape(indices), (seed, positions[0]), 0, num_rates, tf.int64)
        picked = tf.numpy_function(gather, [indices, rates], outputs, stateful=False)
        picked[0].set_shape((batch_size, views.shape[-1]))
        picked[1].set_shape((batch_size, *crops.shape[1:]))
        if masks is not None:
            picked[2].set_shape((batch_size, *masks.shape[1:]))
        return picked[0], target(picked[1], None if masks is None else picked[2])

    return (
        tf.data.Dataset.range(num_images)
        .shuffle(num_images, seed=seed)
        .repeat()
        .enumerate()
        .batch(batch_size, drop_remainder=True)
        .map(batch, num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )


@dataclasses.dataclass
class TrainConfig:
    checkpoint_dir: str
    epochs: int = 50
    steps_per_epoch: int | None = None  # None: one pass over the training images
    batch_size: int = 64
    initial_lr: float = 0.01
    final_lr: float = 0.0001
    warmup_steps: int = 90  # ours: linear learning-rate ramp (a cold start at 0.01 can kill the ReLUs); 0: the paper
    perceptual_weight: float = 1e-6
    pixel_loss: str = "mae"
    layers: tuple = reconstructor.DEFAULT_LAYERS
    perceptual_layer: str = losses.DEFAULT_LAYER
    perceptual_downsample: int = 1
    vgg_weights: str | None = None
    identity_weight: float = 0.0  # ours: weight of 1 - cos(FaceNet(x), FaceNet(x_hat)); 0 is the paper's loss
    init_from: str | None = None  # a reconstructor checkpoint to start from (same architecture), e.g. to fine-tune
    strategy: str = "default"
    jit_compile: bool = False
    mixed_precision: bool = False
    max_minutes: float | None = None
    log_dir: str | None = None
    verbose: int = 1
    seed: int = 0


def build_model(config: TrainConfig, feature_dim: int, steps_per_epoch: int):
    if config.mixed_precision:
        tf.keras.mixed_precision.set_global_policy("mixed_bfloat16")
    model = reconstructor.Reconstructor(feature_dim, config.layers)
    vgg = (
        losses.vgg_feature_model(config.perceptual_layer, config.vgg_weights) if config.perceptual_weight > 0 else None
    )
    facenet_model = facenet.load_model() if config.identity_weight > 0 else None
    if facenet_model is not None:
        facenet_model.trainable = False
    loss = losses.ReconstructionLoss(
        vgg,
        config.perceptual_weight,
        config.perceptual_downsample,
        config.pixel_loss,
        facenet_model,
        config.identity_weight,
    )
    schedule = learning_rate_schedule(
        config.initial_lr, config.final_lr, config.epochs * steps_per_epoch, config.warmup_steps
    )
    model.compile(
        optimizer=tf.keras.optimizers.Adam(schedule),
        loss=loss,
        jit_compile=config.jit_compile,
        metrics=[tf.keras.metrics.MeanMetricWrapper(losses.masked_mae, name="mae")],
    )
    model.build_for_inference()
    return model


def validation_dataset(features: np.ndarray, crops: np.ndarray, batch_size: int) -> tf.data.Dataset:
    """Held-out (decoded feature, target crop in [-1, 1]) batches, in order."""
    return (
        tf.data.Dataset.from_tensor_slices((features, crops))
        .map(lambda f, c: (f, reconstructor.to_unit_range(c)))
        .batch(batch_size)
    )


def streamed_training_dataset(
    examples: tf.data.Dataset, degraders: Sequence[Callable[[np.ndarray], np.ndarray]], batch_size: int, seed: int = 0
) -> tf.data.Dataset:
    """Endless batches of (decoded feature at a random rate, target crop in [-1, 1]) from a stream of (crop uint8,
    FaceNet feature) examples (``sfc_tf.data.records``): the base-layer round trip runs on each batch as it comes."""
    rng = np.random.default_rng(seed)

    def decode(features):
        views = decoded_feature_views(features, degraders)
        return views[rng.integers(0, len(degraders), len(features)), np.arange(len(features))]

    def batch(crops, features):
        decoded = tf.numpy_function(decode, [features], tf.float32, stateful=True)
        decoded.set_shape(features.shape)
        return decoded, target(crops)

    return examples.repeat().batch(batch_size, drop_remainder=True).map(batch).prefetch(tf.data.AUTOTUNE)


def train(
    config: TrainConfig,
    views: np.ndarray,
    crops: np.ndarray,
    meta: dict,
    validation: tuple[np.ndarray, np.ndarray] | None = None,
    masks: np.ndarray | None = None,
    deadline: Deadline | None = None,
) -> dict | None:
    """Train on (R, N, D) decoded-feature views and (N, H, W, 3) uint8 crops held in memory (``train_streamed``:
    on a stream); ``validation`` (features, crops) of held-out identities is scored after every epoch
    (``val_loss``, ``val_mae``). Model and optimizer state go to ``<checkpoint_dir>/train_state`` after every
    epoch (``sfc_tf.training.resume``), so re-running resumes. The final weights and meta.json go to
    ``checkpoint_dir``, and are returned; ``None`` when the time limit (``deadline``, default: ``max_minutes`` from now)
    ended the session before the last epoch (re-run to continue)."""
    steps_per_epoch = config.steps_per_epoch or max(1, len(crops) // config.batch_size)
    return _fit(
        config,
        lambda: training_dataset(views, crops, config.batch_size, config.seed, masks),
        steps_per_epoch,
        views.shape[-1],
        lambda model, dataset: recalibrate_batch_norm(model, views, config.batch_size, config.seed, steps_per_epoch),
        meta,
        validation,
        deadline,
    )


def train_streamed(
    config: TrainConfig,
    examples: tf.data.Dataset,
    num_examples: int,
    feature_dim: int,
    degraders: Sequence[Callable[[np.ndarray], np.ndarray]],
    meta: dict,
    validation: tuple[np.ndarray, np.ndarray] | None = None,
    deadline: Deadline | None = None,
) -> dict | None:
    """``train`` on a stream of (crop, FaceNet feature) examples (``num_examples`` of them per pass), never held in
    memory; precise BN averages ``steps_per_epoch`` batches of the stream."""
    steps_per_epoch = config.steps_per_epoch or max(1, num_examples // config.batch_size)
    return _fit(
        config,
        lambda: streamed_training_dataset(examples, degraders, config.batch_size, config.seed),
        steps_per_epoch,
        feature_dim,
        lambda model, dataset: recalibrate_on_batches(model, (f for f, _ in dataset.take(steps_per_epoch))),
        meta,
        validation,
        deadline,
    )


def _fit(
    config: TrainConfig,
    make_dataset: Callable,
    steps_per_epoch: int,
    feature_dim: int,
    recalibrate: Callable,
    meta: dict,
    validation: tuple[np.ndarray, np.ndarray] | None,
    deadline: Deadline | None = None,
) -> dict | None:
    out = pathlib.Path(config.checkpoint_dir)
    warning = check_warmup(config.warmup_steps, config.epochs * steps_per_epoch)
    if warning:
        print(warning, flush=True)
    strategy = distribute.make_strategy(config.strategy)  # before any other op (multi-worker collectives)
    dataset = make_dataset()
    with strategy.scope():
        model = build_model(config, feature_dim, steps_per_epoch)
        manager, latest = resume.restore(tf.train.Checkpoint(model=model, optimizer=model.optimizer), out, strategy)
        warm_start = resume.warm_start(
            config.init_from,
            latest,
            read_meta,
            lambda source: model.set_weights(reconstructor.load(source).get_weights()),
        )
    done = int(model.optimizer.iterations.numpy())
    resume.check_unfinished(done, config.epochs * steps_per_epoch, out)  # a finished model is not saved again
    total = config.epochs * steps_per_epoch
    saver = resume.SaveState(manager, steps_per_epoch, done)  # saved at every epoch's end
    saver.set_model(model)
    final = {}
    held = None if validation is None else validation_dataset(*validation, config.batch_size)
    if done == 0 and config.init_from and held is not None:  # a warm start, scored before its first update
        scores = {k: round(float(v), 5) for k, v in model.evaluate(held, verbose=0, return_dict=True).items()}
        resume.warm_start_before(out, scores, "held-out", len(validation[0]))
    if done < total:  # else only the saving is left (a session that ended right after training)
        callbacks = [saver, TimeLimit(per="epoch", deadline=deadline or Deadline(config.max_minutes))]
        if config.log_dir:
            callbacks.append(tf.keras.callbacks.TensorBoard(config.log_dir, update_freq=50))
        history = model.fit(
            dataset,
            epochs=config.epochs,
            initial_epoch=done // steps_per_epoch,
            steps_per_epoch=steps_per_epoch,
            callbacks=callbacks,
            verbose=config.verbose,
            validation_data=held,
        )
        final = {k: float(v[-1]) for k, v in history.history.items() if v}
    steps = int(model.optimizer.iterations.numpy())
    if steps < total:
        print(f"stopped by the time limit at step {steps} of {total}: re-run to continue", flush=True)
        return None
    run = saver.record(config, warm_start, steps_per_epoch)
    recalibrated = recalibrate(model, dataset)
    if held is not None and resume.warm_start_checked(out):  # scored as the model is saved
        scores = model.evaluate(held, verbose=0, return_dict=True)
        run["warm_start_check"] = resume.warm_start_after(out, {k: round(float(v), 5) for k, v in scores.items()})
    with distribute.output_dir(out, strategy) as target_dir:
        return reconstructor.save(
            model,
            target_dir,
            **meta,
            **run,
            final_metrics=final,
            batch_norm_recalibrated_on_batches=recalibrated,
        )


def check_warmup(warmup_steps: int, total_steps: int) -> str | None:
    """A warning line when the learning-rate warm-up is longer than the run (its peak rate is never reached)."""
    if warmup_steps > total_steps:
        return (
            f"warning: --warmup_steps {warmup_steps} is longer than the run ({total_steps} steps): the learning rate "
            f"never reaches --initial_lr (lower it, 0: none, or train longer)"
        )
    return None


def recalibrate_batch_norm(
    model: reconstructor.Reconstructor,
    views: np.ndarray,
    batch_size: int,
    seed: int = 0,
    max_batches: int | None = None,
) -> int:
    """Replace every BatchNorm layer's moving statistics by the exact average of its batch statistics over one
    pass of the training features, or over ``max_batches`` random batches of them ("precise BN"). The moving
    averages lag behind weights that changed fast during short, high-learning-rate training; inference then
    normalises with stale statistics (on the shipped 4-epoch model this cost 1.6 dB of held-out PSNR). Each
    image is seen at a random decoded rate. Returns the number of batches averaged."""
    rng = np.random.default_rng(seed)
    num_rates, num_images = views.shape[:2]
    order = rng.permutation(num_images)
    rates = rng.integers(0, num_rates, num_images)
    starts = range(0, num_images - batch_size + 1, batch_size)[:max_batches]
    return recalibrate_on_batches(
        model, (views[rates[order[s : s + batch_size]], order[s : s + batch_size]] for s in starts)
    )


def recalibrate_on_batches(model: reconstructor.Reconstructor, feature_batches) -> int:
    """Precise BN over the given batches of decoded features: each BatchNorm's moving statistics become the mean
    of its batch statistics over them. Returns the number of batches."""
    norms = [block.norm for block in model.blocks]
    momenta = [norm.momentum for norm in norms]
    batches = 0
    for features in feature_batches:
        for norm in norms:  # momentum b/(b+1): the running value is the mean of all batches so far
            norm.momentum = batches / (batches + 1)
        model(features, training=True)
        batches += 1
    for norm, momentum in zip(norms, momenta):
        norm.momentum = momentum
    return batches


def read_meta(directory: str) -> dict:
    return json.loads((pathlib.Path(directory) / reconstructor.META_FILE).read_text())


def throughput(config: TrainConfig, views: np.ndarray, crops: np.ndarray, steps: int = 6) -> float:
    """Training images per second for ``config`` (first step, which compiles, excluded)."""
    model = build_model(config, views.shape[-1], steps)
    iterator = iter(training_dataset(views, crops, config.batch_size))
    model.train_on_batch(*next(iterator))
    start = time.time()
    for _ in range(steps):
        model.train_on_batch(*next(iterator))
    tf.keras.mixed_precision.set_global_policy("float32")
    return steps * config.batch_size / (time.time() - start)
