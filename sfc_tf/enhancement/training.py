"""Training the learned enhancement codec (paper: Adam, batch 16, learning rate 2e-4, 10 epochs; one model per
lambda) on 8-bit images: min-max normalised residuals, or the original crops for the plain end-to-end anchor.

Resumable (``sfc_tf.training.resume``): model and optimizer state go to ``<checkpoint_dir>/train_state`` every
``save_every`` steps and when training stops (epochs done or ``max_minutes`` reached, checked after every step);
re-running continues from there. ``init_from`` warm-starts the weights from another enhancement checkpoint (e.g.
the anchor of the same lambda) when there is no saved state yet; that checkpoint's meta.json is kept under
``warm_start`` so the whole training history of a model stays in its own meta.json.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import time
from typing import Callable

import numpy as np
import tensorflow as tf

from sfc_tf.enhancement import learned
from sfc_tf.training import distribute, resume
from sfc_tf.training.time_limit import Deadline, TimeLimit

PRIOR_FIT_FACES = 256  # training faces whose latents start a fresh hyperprior codec's entropy model
BLS_FINISH_SECONDS = 60.0  # a single-rate model's final evaluation and range-coding tables (one factorized prior)


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
    log_dir: str | None = None  # TensorBoard scalars (loss, bpp, mse)
    verbose: int = 1
    seed: int = 0


def patches_dataset(images: np.ndarray, batch_size: int, patch_size: int, seed: int = 0) -> tf.data.Dataset:
    """Shuffled batches of random ``patch_size`` crops (with random horizontal flips) of uint8 images."""
    check_patch_size(patch_size, images)
    dataset = tf.data.Dataset.from_tensor_slices(images).shuffle(len(images), seed=seed).repeat()
    if patch_size < max(images.shape[1:3]):
        dataset = dataset.map(
            lambda x: tf.image.random_crop(x, (patch_size, patch_size, 3), seed=seed),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    dataset = dataset.map(lambda x: tf.image.random_flip_left_right(x, seed=seed), num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def check_patch_size(patch_size: int, images: np.ndarray) -> None:
    if patch_size % learned.DOWNSCALE or patch_size > min(images.shape[1:3]):
        raise ValueError(f"patch size {patch_size} must be a multiple of {learned.DOWNSCALE} within the images")


def build_model(config: EnhancementTrainConfig) -> learned.BLS2017:
    model = learned.BLS2017(config.lmbda, config.num_filters)
    model.compile(optimizer=tf.keras.optimizers.Adam(config.learning_rate), jit_compile=config.jit_compile)
    model.optimizer.build(model.trainable_variables)
    return model


def train(
    config: EnhancementTrainConfig, images: np.ndarray, meta: dict, deadline: Deadline | None = None
) -> dict | None:
    """Train one BLS2017 model on uint8 images (N, H, W, 3); final weights + meta.json in ``checkpoint_dir``,
    returned. ``deadline`` (default: ``config.max_minutes`` from now) bounds the call: training stops at it, and
    the final evaluation and range-coding tables run only if their estimated time still fits. ``None`` when the
    session ends first (the state saved: re-run to continue or finish)."""
    deadline = deadline or Deadline(config.max_minutes)
    out = pathlib.Path(config.checkpoint_dir)
    steps_per_epoch = max(1, len(images) // config.batch_size)
    total_steps = max(1, round(config.epochs * steps_per_epoch))
    strategy = distribute.make_strategy(config.strategy)
    with strategy.scope():
        model = build_model(config)
        state = tf.train.Checkpoint(model=model, optimizer=model.optimizer)
        manager, latest = resume.restore(state, out, strategy)
        if latest:
            model.optimizer.learning_rate.assign(config.learning_rate)  # the restored state holds the old one
        warm_start = resume.warm_start(
            config.init_from,
            latest,
            lambda source: learned.load_model(source)[1],  # checks the sha256 before we read the weights
            lambda source: learned.restore_weights(model, source),
        )
    done = int(model.optimizer.iterations.numpy())
    resume.check_unfinished(done, total_steps, out)
    saver = resume.SaveState(manager, config.save_every, done)
    saver.set_model(model)
    final = {}
    if done < total_steps:  # else only the saving is left (a session that ended right after training)
        callbacks = [saver, TimeLimit(per="step", deadline=deadline)]
        if config.log_dir:
            callbacks.append(tf.keras.callbacks.TensorBoard(config.log_dir, update_freq=50))
        history = model.fit(
            patches_dataset(images, config.batch_size, config.patch_size, config.seed + done),
            epochs=1,
            steps_per_epoch=total_steps - done,
            callbacks=callbacks,
            verbose=config.verbose,
        )
        final = {k: float(v[-1]) for k, v in history.history.items()}
    steps = int(model.optimizer.iterations.numpy())
    if steps < total_steps:
        print(f"stopped by the time limit at step {steps} of {total_steps}: re-run to continue", flush=True)
        return None
    if not deadline.allows(BLS_FINISH_SECONDS):
        print(f"time limit reached after {total_steps} training steps: {FINISH_HINT}", flush=True)
        return None
    run = saver.record(config, warm_start, steps_per_epoch)
    final_eval = evaluate(model, images[: config.eval_images])
    with distribute.output_dir(out, strategy) as target:
        return learned.save(
            model,
            target,
            **meta,
            train_images=len(images),
            **run,
            final_metrics=final,
            final_eval=final_eval,
        )


def evaluate(model: learned.BLS2017, images: np.ndarray, batch_size: int = 16) -> dict:
    """Loss, bpp and MSE of the model as it is now (rounded latents, whole images); the fit metrics are
    running means over the session."""
    results = model.evaluate(tf.data.Dataset.from_tensor_slices(images).batch(batch_size), verbose=0, return_dict=True)
    return {"images": len(images), **{k: float(v) for k, v in results.items()}}


def throughput(
    images: np.ndarray, patch_size: int, batch_size: int = 16, steps: int = 5, jit_compile: bool = False
) -> float:
    """Training images per second (the first step, which traces/compiles, excluded)."""
    config = EnhancementTrainConfig("", 0.01, batch_size=batch_size, patch_size=patch_size, jit_compile=jit_compile)
    model = build_model(config)
    iterator = iter(patches_dataset(images, batch_size, patch_size))
    model.train_on_batch(next(iterator))
    start = time.time()
    for _ in range(steps):
        model.train_on_batch(next(iterator))
    return steps * batch_size / (time.time() - start)


@dataclasses.dataclass
class FaceCodecTrainConfig:
    """Training of a (variable-rate) ``face_codec.FaceCodec`` on whole aligned crops (its positional prior needs
    the crop's fixed latent grid) or, with a per-channel prior, on patches; a rate of ``lmbdas`` drawn per batch."""

    checkpoint_dir: str
    lmbdas: tuple = (0.001, 0.002, 0.004, 0.008, 0.016)
    kind: str = "original"  # original (codes x) | residual (codes min-max(x - p)) | conditional (x given p)
    entropy_model: str = "factorized"  # factorized (face_codec.FaceCodec) | hyperprior (hyperprior.HyperpriorFaceCodec)
    snapshot_every: int = 0  # weights (no optimizer state) into snapshots/step_N every this many steps (0: never)
    entropy_warmup: int = 0  # hyperprior: steps in which only the entropy model learns (after a warm start)
    warmup_boost: float = 1.0  # hyperprior: the entropy model's learning rate multiplier during the warm-up
    transform_learning_rate: float | None = None  # hyperprior: the transforms' rate (None: ``learning_rate``)
    until_step: int | None = None  # end this session at this step (the run's state saved; re-run to continue)
    prior: str = "position"
    patch_size: int | None = None  # random square patches of the crops (channel prior only); None: whole crops
    steps: int = 20000
    batch_size: int = 8
    learning_rate: float = 1e-4
    final_learning_rate: float = 1e-5  # exponential decay over the last 20 % of the steps
    num_filters: int = 128
    strategy: str = "default"
    max_minutes: float | None = None
    save_every: int = 250
    init_from: str | None = None  # an end-to-end BLS2017 checkpoint to start from (``face_codec.warm_start``)
    log_dir: str | None = None  # TensorBoard scalars (loss, bpp, mse)
    verbose: int = 1
    seed: int = 0


def face_codec_dataset(
    images: np.ndarray, predictions: np.ndarray | None, batch_size: int, seed: int = 0, patch_size: int | None = None
) -> tf.data.Dataset:
    """Shuffled batches of (image, prediction) pairs, each pair mirrored together half of the time and, with
    ``patch_size``, cut to the same random square of both (the prediction is the image itself for codecs that do
    not use one, so the pair stays one tensor). Batches are gathered from the arrays in place: no copy of the
    training set (it is the largest thing in memory)."""
    predictions = images if predictions is None else predictions
    if len(predictions) != len(images) or len(images) < batch_size:
        raise ValueError(f"need at least {batch_size} images with one prediction each")
    if patch_size:
        check_patch_size(patch_size, images)

    def batches():
        rng = np.random.default_rng(seed)
        while True:
            order = rng.permutation(len(images))
            for start in range(0, len(order) - batch_size + 1, batch_size):
                index = np.sort(order[start : start + batch_size])
                x, p = images[index], predictions[index]
                flip = rng.random(batch_size) < 0.5
                x[flip], p[flip] = x[flip, :, ::-1], p[flip, :, ::-1]
                if patch_size:
                    rows = rng.integers(0, images.shape[1] - patch_size + 1, batch_size)
                    cols = rng.integers(0, images.shape[2] - patch_size + 1, batch_size)
                    x, p = (
                        np.stack([a[r : r + patch_size, c : c + patch_size] for a, r, c in zip(pair, rows, cols)])
                        for pair in (x, p)
                    )
                yield x, p

    shape = (patch_size, patch_size, images.shape[3]) if patch_size else images.shape[1:]
    spec = tf.TensorSpec((batch_size, *shape), tf.uint8)
    return tf.data.Dataset.from_generator(batches, output_signature=(spec, spec)).prefetch(2)


def face_codec_stream(
    examples: tf.data.Dataset, batch_size: int, pair: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
) -> tf.data.Dataset:
    """Endless (image, prediction) uint8 batches from a stream of (crop, FaceNet feature) examples
    (``sfc_tf.data.records``, which mirrors them); ``pair(crops, features)`` makes each batch's pair as it comes."""

    def batch(crops, features):
        x, p = tf.numpy_function(pair, [crops, features], (tf.uint8, tf.uint8), stateful=False)
        x.set_shape(crops.shape)
        p.set_shape(crops.shape)
        return x, p

    return examples.repeat().batch(batch_size, drop_remainder=True).map(batch).prefetch(2)


def build_face_codec(config: FaceCodecTrainConfig):
    from sfc_tf.enhancement import face_codec, hyperprior

    if config.entropy_model == "hyperprior":
        if config.kind == "residual":
            raise ValueError("the hyperprior codec codes the face (kind original) or the face given p (conditional)")
        model = hyperprior.HyperpriorFaceCodec(
            config.lmbdas, conditional=config.kind == "conditional", num_filters=config.num_filters
        )
    elif config.patch_size and config.prior == "position":
        raise ValueError("a positional prior needs whole crops (its latent grid is the crop's): use prior channel")
    else:
        model = face_codec.FaceCodec(
            config.lmbdas, conditional=config.kind == "conditional", prior=config.prior, num_filters=config.num_filters
        )
    decay_steps = max(1, config.steps // 5)
    hyper = config.entropy_model == "hyperprior"
    # a hyperprior codec's entropy model learns alone (faster: ``warmup_boost``) for ``entropy_warmup`` steps, while
    # its transforms' learning rate is 0 (their Adam moments fill meanwhile) and then ramps up over as many steps
    schedule = LateDecay(
        config.learning_rate,
        config.final_learning_rate,
        config.steps - decay_steps,
        decay_steps,
        boost=config.warmup_boost if hyper else 1.0,
        boost_steps=config.entropy_warmup if hyper else 0,
    )
    model.compile(optimizer=tf.keras.optimizers.Adam(schedule))
    if hyper:
        rate = config.transform_learning_rate or config.learning_rate
        held = LateDecay(
            rate,
            rate * config.final_learning_rate / config.learning_rate,
            config.steps - decay_steps,
            decay_steps,
            hold=config.entropy_warmup,
            ramp=config.entropy_warmup,
        )
        model.transform_optimizer = tf.keras.optimizers.Adam(held)
        model.transform_optimizer.build(model.transform_variables())
    model.optimizer.build(model.trainable_variables)
    return model


class LateDecay(tf.keras.optimizers.schedules.LearningRateSchedule):
    """Constant, then exponential decay to ``final`` over the last ``decay_steps``; with ``hold``, 0 for the first
    ``hold`` steps, then a linear ramp over ``ramp`` steps; with ``boost``, that many times the rate for the first
    ``boost_steps`` steps."""

    def __init__(
        self,
        initial: float,
        final: float,
        start: int,
        decay_steps: int,
        hold: int = 0,
        ramp: int = 0,
        boost: float = 1.0,
        boost_steps: int = 0,
    ):
        self.initial, self.final, self.start, self.decay_steps = initial, final, start, decay_steps
        self.hold, self.ramp, self.boost, self.boost_steps = hold, ramp, boost, boost_steps

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        progress = tf.clip_by_value((step - self.start) / self.decay_steps, 0.0, 1.0)
        rate = self.initial * (self.final / self.initial) ** progress
        if self.hold or self.ramp:
            rate *= tf.clip_by_value((step - self.hold + 1.0) / max(self.ramp, 1), 0.0, 1.0)
        if self.boost_steps:
            rate *= tf.where(step < self.boost_steps, self.boost, 1.0)
        return rate

    def get_config(self):
        return {
            "initial": self.initial,
            "final": self.final,
            "start": self.start,
            "decay_steps": self.decay_steps,
            "hold": self.hold,
            "ramp": self.ramp,
            "boost": self.boost,
            "boost_steps": self.boost_steps,
        }


def train_face_codec(
    config: FaceCodecTrainConfig,
    batches: Callable[[int], tf.data.Dataset],
    num_images: int,
    meta: dict,
    held_out: tuple[np.ndarray, np.ndarray | None] | None = None,
    deadline: Deadline | None = None,
) -> dict | None:
    """Train (or resume) a FaceCodec on ``batches(seed)`` (``face_codec_dataset`` of arrays in memory, or
    ``face_codec_stream``) of a training set of ``num_images``; final weights + meta.json (with wall time,
    images/s and the held-out rate and PSNR of every rate) in ``checkpoint_dir``, returned.

    ``deadline`` (default: ``config.max_minutes`` from now) bounds the whole call: training stops at it, and the
    range-coding tables and the held-out evaluation run only while their estimated time fits before it. ``None``
    when this session ends before the model is saved (its state saved in ``checkpoint_dir``: the same call
    continues, or only finishes, the run)."""
    deadline = deadline or Deadline(config.max_minutes)
    out = pathlib.Path(config.checkpoint_dir)
    strategy = distribute.make_strategy(config.strategy)
    with strategy.scope():
        model = build_face_codec(config)
        manager, latest = resume.restore(tf.train.Checkpoint(model=model, optimizer=model.optimizer), out, strategy)
        warm_start = resume.warm_start(
            config.init_from, latest, _end_to_end_meta, lambda source: _warm_start_face_codec(model, source)
        )
    done = int(model.optimizer.iterations.numpy())
    resume.check_unfinished(done, config.steps, out)
    last = min(config.steps, config.until_step or config.steps)
    saver = resume.SaveState(manager, config.save_every, done)
    saver.set_model(model)
    if done < last:
        if deadline.expired():
            print(f"time limit reached before training: re-run to continue from step {done}", flush=True)
            return None
        if done == 0 and hasattr(model, "fit_entropy_model") and not _restored_whole(model, config.init_from):
            x, p = next(iter(batches(config.seed).unbatch().batch(PRIOR_FIT_FACES)))
            model.fit_entropy_model(x, p if config.kind == "conditional" else None)
        if done == 0 and config.init_from:
            x, p, faces = warm_start_check_set(held_out, batches, config.seed)
            resume.warm_start_before(out, rd_loss(model, x, p), faces, len(x))
        callbacks = [saver]
        if config.log_dir:
            callbacks.append(tf.keras.callbacks.TensorBoard(config.log_dir, update_freq=50))
        if config.snapshot_every:
            callbacks.append(Snapshots(model, out / "snapshots", config.snapshot_every))
        limit = TimeLimit(per="step", deadline=deadline)
        callbacks.append(limit)
        model.fit(
            batches(config.seed + done),
            epochs=1,
            steps_per_epoch=last - done,
            callbacks=callbacks,
            verbose=config.verbose,
        )
        steps = int(model.optimizer.iterations.numpy())
        if limit.stopped and steps < last:
            print(f"stopped by the time limit at step {steps} of {config.steps}: re-run to continue", flush=True)
    steps = int(model.optimizer.iterations.numpy())
    if steps < config.steps:  # the state is saved, the run goes on next time
        if steps >= last:
            print(f"stopped at --until_step {last} of {config.steps} steps: re-run to continue", flush=True)
        return None
    run = saver.record(config, warm_start, num_images / config.batch_size)
    if resume.warm_start_checked(out):
        x, p, _ = warm_start_check_set(held_out, batches, config.seed)
        run["warm_start_check"] = resume.warm_start_after(out, rd_loss(model, x, p))
    if not build_coding_tables(model, deadline):
        print(f"time limit reached after {config.steps} training steps: {FINISH_HINT}", flush=True)
        return None
    if held_out is not None:
        held_out = evaluate_face_codec(model, *held_out, deadline=deadline)
        if held_out is None:
            print(f"time limit reached in the held-out evaluation: {FINISH_HINT}", flush=True)
            return None
    with distribute.output_dir(out, strategy) as target:
        return learned.save(
            model,
            target,
            coding_enabled=True,
            **meta,
            kind=config.kind,
            train_images=num_images,
            **run,
            held_out=held_out,
        )


WARM_START_CHECK_IMAGES = 32  # faces a warm start is scored on before its first update and at the end


def warm_start_check_set(held_out, batches: Callable[[int], tf.data.Dataset], seed: int) -> tuple:
    """(images, predictions, description) a warm start is checked on: up to ``WARM_START_CHECK_IMAGES`` held-out
    faces, or training faces when none are held out (``--validation_fraction 0``)."""
    if held_out is not None and len(held_out[0]):
        x, p = held_out[0][:WARM_START_CHECK_IMAGES], held_out[1]
        return x, x if p is None else p[:WARM_START_CHECK_IMAGES], "held-out"
    x, p = next(iter(batches(seed).unbatch().batch(WARM_START_CHECK_IMAGES)))
    return x.numpy(), p.numpy(), "training (none held out)"


def rd_loss(model, images: np.ndarray, predictions: np.ndarray, batch_size: int = 8) -> dict:
    """The rate-distortion loss, bpp and MSE of ``model`` now, averaged over its rates (``test_step``)."""
    dataset = tf.data.Dataset.from_tensor_slices((images, predictions)).batch(batch_size)
    return {k: round(float(v), 4) for k, v in model.evaluate(dataset, verbose=0, return_dict=True).items()}


FINISH_HINT = (
    "the training state is saved; re-run the same command with a larger --max_minutes (or none) to build the "
    "range-coding tables and evaluate"
)
# first guesses, until one is measured: one prior's range-coding tables (a 128-filter positional prior took 72-79 s
# on a busy 2-core CPU), and one held-out face coded and decoded at one rate (about 0.5 s there)
TABLE_SECONDS = 90.0
EVAL_SECONDS_PER_IMAGE = 0.5


def build_coding_tables(model, deadline: Deadline | None = None) -> bool:
    """The model's range-coding tables (``enable_coding``), prior by prior while the next one's estimated time
    (the longest so far) fits before ``deadline``; False, the model unchanged, once it does not."""
    deadline = deadline or Deadline()
    priors = getattr(model, "priors", None)
    if priors is None:  # one combined table (the hyperprior codec)
        if not deadline.allows(TABLE_SECONDS):
            return False
        model.enable_coding()
        return True
    from sfc_tf.enhancement import coding_tables

    built, longest = [], TABLE_SECONDS
    for prior in priors:
        if not deadline.allows(longest):
            return False
        start = deadline.clock()
        built += coding_tables.coding_models([prior])
        longest = max(deadline.clock() - start, longest if len(built) > 1 else 0.0)
    model.entropy_models = built
    return True


class Snapshots(tf.keras.callbacks.Callback):
    """The model's weights every ``every`` optimizer steps in ``directory/step_<N>`` (a learning curve's points)."""

    def __init__(self, model, directory: pathlib.Path, every: int):
        super().__init__()
        self.codec, self.directory, self.every = model, directory, int(every)

    def on_train_batch_end(self, batch, logs=None):
        step = int(self.codec.optimizer.iterations.numpy())
        if step % self.every == 0:
            learned.write_weights(self.codec, self.directory / f"step_{step:06d}")


def _restored_whole(model, source: str | None) -> bool:
    """Whether ``source`` is a checkpoint of ``model``'s own architecture and configuration (a fine-tune)."""
    if source is None:
        return False
    meta = json.loads((pathlib.Path(source) / learned.META_FILE).read_text())
    return meta.get("architecture") == "hyperprior" and all(meta.get(k) == v for k, v in model.get_config().items())


def _end_to_end_meta(source: str) -> dict:
    meta = learned.load_model(source)[1]
    if meta.get("input") != "original" and meta.get("architecture") not in ("face_codec", "hyperprior"):
        raise ValueError(f"{source} is neither an end-to-end model (input original) nor a FaceCodec: no warm start")
    return meta


def _warm_start_face_codec(model, source: str):
    """From an end-to-end model (``face_codec.warm_start``), or from a FaceCodec of the same configuration (a
    fine-tune, e.g. on another model set's predictions: every weight copied). A hyperprior codec starts from a
    single-rate model of its kind (``hyperprior.warm_start``) or from a hyperprior codec of its configuration."""
    from sfc_tf.enhancement import face_codec, hyperprior

    loaded = learned.load_model(source)[0]
    known = isinstance(loaded, (face_codec.FaceCodec, hyperprior.HyperpriorFaceCodec))
    same = known and json.dumps(loaded.get_config(), sort_keys=True) == json.dumps(model.get_config(), sort_keys=True)
    if isinstance(model, hyperprior.HyperpriorFaceCodec) and not (same and type(loaded) is type(model)):
        hyperprior.warm_start(model, loaded)
    elif not known:
        face_codec.warm_start(model, loaded)
    elif not same:
        raise ValueError(f"{source} is a FaceCodec of another configuration: {loaded.get_config()}")
    else:
        learned.restore_weights(model, source)


def evaluate_face_codec(
    model, images: np.ndarray, predictions: np.ndarray | None, batch_size: int = 16, deadline: Deadline | None = None
) -> dict | None:
    """Per rate: mean coded bits per image and mean PSNR of the decoded images (real range coding; the model's
    coding enabled). ``None`` when the next rate's estimated time (the longest so far) does not fit before
    ``deadline``."""
    from sfc_tf import metrics

    deadline = deadline or Deadline()
    rows, longest = [], EVAL_SECONDS_PER_IMAGE * len(images)
    for rate, lmbda in enumerate(model.lmbdas):
        if not deadline.allows(longest):
            return None
        start = deadline.clock()
        quality = 2 * rate if hasattr(model, "num_qualities") else rate  # hyperprior: every other quality is trained
        bits, decoded = [], []
        for i in range(0, len(images), batch_size):
            p = None if predictions is None else predictions[i : i + batch_size]
            strings = model.compress(images[i : i + batch_size], p, quality).numpy()
            bits += [8 * len(s) for s in strings]
            decoded.append(model.decompress(strings, p, quality).numpy())
        psnr = np.minimum(metrics.psnr(images, np.concatenate(decoded)), metrics.PSNR_CEILING_DB)
        rows.append(
            {"rate": rate, "lmbda": lmbda, "bits_per_image": float(np.mean(bits)), "psnr": float(np.mean(psnr))}
        )
        longest = max(deadline.clock() - start, longest if rate else 0.0)
    return {"images": len(images), "rates": rows}
