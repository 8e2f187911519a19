"""Train the deep feature reconstructor (DconvOp network) on decoded FaceNet features, or, with
``--objective mmse``, the coding predictor (the same blocks, narrower, trained for MSE).

Paper settings are the defaults (batch 64, Adam, learning rate 0.01 -> 0.0001 exponentially over 50 epochs,
MAE + lambda x VGG-19 relu3_2 loss). Short CPU jobs (README):

  python train/train_reconstructor.py --data_dir ../shared/data/lfw \\
      --identities ../shared/data/lfw/train_identities.txt --vgg_weights ../shared/weights/vgg19_imagenet_block1-3.h5 \\
      --epochs 6 --perceptual_weight 1e-6 --perceptual_downsample 2 --checkpoint_dir runs/reconstructor
  python train/train_reconstructor.py --data_dir ../shared/data/lfw \\
      --identities ../shared/data/lfw/train_identities.txt --objective mmse --flip \\
      --extra_faces ~/.cache/sfc_data/utkface --epochs 4 --checkpoint_dir runs/predictor

Without ``--checkpoint_dir`` the run goes to runs/train_reconstructor/run-<hash of the flags> (sfc_tf.runs).
Re-running the same command resumes from <checkpoint_dir>/train_state (model, optimizer, epoch;
sfc_tf.training.resume), or says the run is finished; ``--overwrite`` replaces a finished model, ``--noresume`` starts
over.
"""

import numpy as np
from absl import app, flags

from sfc_tf import runs, settings
from sfc_tf.bitstream import ALIGNMENTS
from sfc_tf.data import training_set
from sfc_tf.errors import SfcError
from sfc_tf.reconstruction import losses, reconstructor
from sfc_tf.reconstruction import training as training
from sfc_tf.training import distribute
from sfc_tf.training.time_limit import Deadline

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", None, "Root of identity folders (LFW), held in memory.")
flags.DEFINE_string("records", None, "Folder of TFRecord shards (train/build_records.py), streamed (VGGFace2 scale).")
flags.DEFINE_string(
    "tfds",
    None,
    "A tensorflow-datasets image dataset NAME[:SPLIT] (lfw, celeb_a): its records are "
    "built once in the cache, then streamed.",
)
flags.DEFINE_string("tfds_data_dir", None, "tensorflow-datasets data folder (default: tfds's).")
flags.DEFINE_string("identities", None, "Identity list to train on (e.g. train_identities.txt).")
flags.DEFINE_enum("align", "mtcnn", ALIGNMENTS, "Face crop.")
flags.DEFINE_enum(
    "objective",
    "perceptual",
    ["perceptual", "mmse"],
    "perceptual: the reconstructor (MAE + lambda x VGG); mmse: the coding predictor (MSE, "
    "narrower layers, writes the mean training face beside the weights).",
)
flags.DEFINE_bool("flip", False, "Add every training face mirrored, with its own FaceNet feature (cached).")
flags.DEFINE_integer(
    "jitter",
    0,
    "Add N shifted (up to 8 px) and scaled (0.9-1.1) copies of every LFW training "
    "face, each with its own FaceNet feature (cached); reflected borders are masked out of the loss.",
)
flags.DEFINE_string("extra_faces", None, "Folder built by ../shared/tools/utkface.sh: extra faces, framed like LFW.")
flags.DEFINE_float("validation_fraction", 0.05, "Share of identities held out for validation loss.")
flags.DEFINE_string(
    "checkpoint_dir",
    None,
    "Final weights + meta.json, train_state/ for resume; default: runs/train_reconstructor/run-HASH.",
)
runs.define_flags()
flags.DEFINE_string("tensorboard_dir", None, "TensorBoard log directory.")
flags.DEFINE_integer("batch_size", 64, "Batch size (paper: 64).")
flags.DEFINE_integer("epochs", 50, "Epochs; the learning rate decays over exactly these (paper: 50).")
flags.DEFINE_integer(
    "steps_per_epoch",
    None,
    "Steps per epoch (default: one pass over the training faces); "
    "the schedule decays over epochs x steps_per_epoch, and precise BN averages this many batches.",
)
flags.DEFINE_float("initial_lr", 0.01, "Initial learning rate (paper: 0.01).")
flags.DEFINE_float("final_lr", 0.0001, "Learning rate at the last step (paper: 0.0001).")
flags.DEFINE_integer(
    "warmup_steps",
    90,
    "Ours: ramp the learning rate linearly from 0 over this many first steps; 0 is the paper's schedule, whose cold "
    "start at 0.01 can kill the ReLUs (README).",
    lower_bound=0,
)
flags.DEFINE_float("perceptual_weight", 1e-6, "lambda: weight of the VGG-19 perceptual term (1e-6: our sweep, README).")
flags.DEFINE_string("perceptual_layer", losses.DEFAULT_LAYER, "VGG-19 layer of the perceptual loss.")
flags.DEFINE_integer("perceptual_downsample", 1, "Average-pool images by this factor before VGG (CPU speed).")
flags.DEFINE_string("vgg_weights", None, "Local VGG-19 Keras weights file (default: download ImageNet weights).")
flags.DEFINE_float(
    "identity_weight", 0.0, "Ours: weight of an identity term 1 - cos(FaceNet(x), FaceNet(x_hat)); 0: the paper's loss."
)
flags.DEFINE_string(
    "init_from",
    None,
    "Reconstructor checkpoint to start from (same architecture); the schedule starts again, so fine-tune with a "
    "lower --initial_lr.",
)
flags.DEFINE_enum("strategy", "default", list(distribute.STRATEGIES), "tf.distribute strategy.")
flags.DEFINE_bool("jit_compile", False, "XLA-compile the train step (slower on this CPU; see README).")
flags.DEFINE_bool("mixed_precision", False, "mixed_bfloat16 policy (oneDNN bf16 on AVX512_BF16 CPUs).")
flags.DEFINE_float("max_minutes", None, "Stop after the epoch in which this many minutes (from start-up) have passed.")
flags.DEFINE_list(
    "base_layer",
    None,
    "Base-layer model files: train on features decoded at these rates (empty: uniform noise); default: the shipped "
    f"{', '.join(settings.DEFAULT_TRAINING_BASE_LAYERS)} of the checkpoints directory.",
)
flags.DEFINE_list(
    "noise_steps",
    ["0", "0.05", "0.1", "0.2"],
    "Without --base_layer: uniform-noise steps standing in for quantization (0 = clean).",
)
flags.DEFINE_integer("seed", 0, "Random seed.")


def base_layers() -> list[str]:
    """The --base_layer files (default: the shipped ones, wherever the checkpoints directory is)."""
    return settings.training_base_layers() if FLAGS.base_layer is None else FLAGS.base_layer


def feature_degraders():
    if base_layers():
        from sfc_tf.base import base_layer

        return [base_layer.load(path).quantize_dequantize for path in base_layers()]
    rng = np.random.default_rng(FLAGS.seed)
    return [
        lambda f, s=float(step): f if s == 0 else training.noisy_features(f, [s], rng) for step in FLAGS.noise_steps
    ]


def load_faces():
    """The training faces: in memory (--data_dir) or streamed (--records, --tfds)."""
    if FLAGS.objective == "mmse" and not FLAGS.data_dir:
        raise app.UsageError("--objective mmse needs --data_dir (its mean face is taken over the crops in memory)")
    try:
        return training_set.load(
            FLAGS.data_dir,
            FLAGS.records,
            FLAGS.tfds,
            FLAGS.tfds_data_dir,
            FLAGS.identities,
            FLAGS.align,
            FLAGS.flip,
            FLAGS.extra_faces,
            FLAGS.validation_fraction,
            FLAGS.seed,
            FLAGS.jitter,
        )
    except SfcError as exc:
        raise app.UsageError(str(exc)) from exc


def main(_):
    deadline = Deadline(FLAGS.max_minutes)  # the whole job: loading included
    out = runs.trainer_dir(FLAGS, "train_reconstructor")
    if runs.start(out, FLAGS.resume, FLAGS.overwrite).finished:
        return
    distribute.make_strategy(FLAGS.strategy)  # before FaceNet or any data op (multi-worker collectives)
    mmse = FLAGS.objective == "mmse"
    if mmse and FLAGS.identity_weight > 0:
        raise app.UsageError("--identity_weight belongs to the perceptual objective, not to the MMSE predictor")
    vgg_weights = None
    try:
        training_set.check_sources(FLAGS.data_dir, FLAGS.records, FLAGS.tfds, FLAGS.extra_faces, FLAGS.jitter)
        if FLAGS.perceptual_weight > 0 and not mmse:  # found (or downloaded) before the faces are loaded
            vgg_weights = losses.vgg_weights_file(FLAGS.vgg_weights)
    except SfcError as exc:
        raise app.UsageError(str(exc)) from exc
    faces = load_faces()
    degraders = feature_degraders()
    validation = None
    if len(faces.held_out_crops):  # scored at the middle rate of the list
        validation = (degraders[len(degraders) // 2](faces.held_out_features).astype(np.float32), faces.held_out_crops)
    config = training.TrainConfig(
        checkpoint_dir=str(out),
        epochs=FLAGS.epochs,
        steps_per_epoch=FLAGS.steps_per_epoch,
        batch_size=FLAGS.batch_size,
        initial_lr=FLAGS.initial_lr,
        final_lr=FLAGS.final_lr,
        warmup_steps=FLAGS.warmup_steps,
        perceptual_weight=0.0 if mmse else FLAGS.perceptual_weight,
        pixel_loss="mse" if mmse else "mae",
        layers=reconstructor.PREDICTOR_LAYERS if mmse else reconstructor.DEFAULT_LAYERS,
        perceptual_layer=FLAGS.perceptual_layer,
        perceptual_downsample=FLAGS.perceptual_downsample,
        vgg_weights=vgg_weights,
        identity_weight=FLAGS.identity_weight,
        init_from=FLAGS.init_from,
        strategy=FLAGS.strategy,
        jit_compile=FLAGS.jit_compile,
        mixed_precision=FLAGS.mixed_precision,
        max_minutes=FLAGS.max_minutes,
        log_dir=FLAGS.tensorboard_dir,
        seed=FLAGS.seed,
    )
    meta = {
        "objective": FLAGS.objective,
        "data": faces.description,
        "decoded_features": {
            "base_layer": base_layers(),
            "noise_steps": None if base_layers() else [float(s) for s in FLAGS.noise_steps],
        },
    }
    if isinstance(faces, training_set.TrainingStream):
        meta = training.train_streamed(
            config, faces.examples, faces.num_examples, faces.feature_dim, degraders, meta, validation, deadline
        )
    else:
        meta = training.train(
            config,
            training.decoded_feature_views(faces.features, degraders),
            faces.crops,
            meta,
            validation,
            faces.masks,
            deadline,
        )
    if meta is None:
        return  # the library said why (the time limit) and how to continue
    if mmse:  # the mean face belongs to the predictor: covered by its checksum
        from PIL import Image

        from sfc_tf import checkpoint
        from sfc_tf.enhancement import prediction

        lfw_crops = faces.crops[: faces.description["images"]]  # the mean of the unmirrored LFW crops
        mean_face = np.rint(lfw_crops.astype(np.float64).mean(axis=0)).astype(np.uint8)
        Image.fromarray(mean_face).save(out / prediction.MEAN_FACE_FILE)
        meta = checkpoint.write_meta(out, (reconstructor.WEIGHTS_FILE, prediction.MEAN_FACE_FILE), meta)
    print(
        f"saved {out}: {meta['steps']} steps in {meta['wall_time_s']} s, {meta['images_per_second']} images/s, "
        f"final {meta['final_metrics']}"
    )


if __name__ == "__main__":
    app.run(main)
