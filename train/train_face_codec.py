"""Train a variable-rate learned face codec (sfc_tf.enhancement.face_codec): end to end (``--kind original``),
on residuals against the coding prediction (``--kind residual``), or conditional on it (``--kind conditional``).
Every kind gets the same data, steps, batch and schedule unless told otherwise, so that they compare fairly.

  python train/train_face_codec.py --data_dir ../shared/data/lfw \\
      --identities ../shared/data/lfw/train_identities.txt --flip --extra_faces ~/.cache/sfc_data/utkface \\
      --kind conditional --steps 12000 --checkpoint_dir runs/face_conditional

``--init_from`` starts from an end-to-end learned checkpoint instead of from scratch (the fair way to compare kinds
on a CPU budget: every kind starts from the same model and gets the same steps). One rate conditional on the
default model set's reconstruction, with the end-to-end family's stage-3 recipe (64x64 patches, batch 16, lr 2e-4):

  python train/train_face_codec.py --data_dir ../shared/data/lfw \\
      --identities ../shared/data/lfw/train_identities.txt --noflip --validation_fraction 0 \\
      --kind conditional --prediction_mode reconstruction --lmbdas 0.01 --prior channel --patch_size 64 \\
      --batch_size 16 --learning_rate 2e-4 --final_learning_rate 2e-4 --steps 3004 \\
      --init_from START/original_l0.01 --checkpoint_dir runs/conditional_faces_l0.01

``--init_from`` may also name a FaceCodec of the same configuration: a fine-tune, e.g. of that family on the
predictions of the default model set, whose base layer codes a colour thumbnail (the predictions are corrected by
each crop's decoded thumbnail; ``--base_layer CHECKPOINTS/base_layer/step_0.08.npz`` for set 14's, without one).

Without ``--checkpoint_dir`` the run goes to runs/train_face_codec/run-<hash of the flags> (sfc_tf.runs). Re-running
the same command resumes from <checkpoint_dir>/train_state, or says the run is finished; ``--overwrite`` replaces a
finished model, ``--noresume`` starts over. ``--max_minutes`` bounds the whole job: training, then the range-coding
tables and the held-out evaluation, each skipped (re-run to finish) when its estimated time does not fit.
"""

from absl import app, flags

from sfc_tf import runs, zoo
from sfc_tf.bitstream import ALIGNMENTS
from sfc_tf.data import training_set
from sfc_tf.enhancement import layer, prediction, training
from sfc_tf.errors import SfcError
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
flags.DEFINE_bool("flip", True, "Add every training face mirrored (its prediction from its own feature).")
flags.DEFINE_string("extra_faces", None, "Folder built by ../shared/tools/utkface.sh: extra faces, framed like LFW.")
flags.DEFINE_enum(
    "kind",
    "original",
    ["original", "residual", "conditional"],
    "original: code the face; residual: min-max(face - prediction); conditional: face given prediction.",
)
flags.DEFINE_enum(
    "prediction_mode",
    "mmse",
    ["mmse", "reconstruction"],
    "The prediction (residual and conditional kinds): the coding predictor's, or the reconstruction.",
)
flags.DEFINE_string("predictor", None, "Coding predictor (--prediction_mode mmse); default: the default model set's.")
flags.DEFINE_string(
    "reconstructor", None, "Reconstructor (--prediction_mode reconstruction); default: the default model set's."
)
flags.DEFINE_string("base_layer", None, "Base layer the predictions decode through; default: the default model set's.")
flags.DEFINE_list("lmbdas", ["0.001", "0.002", "0.004", "0.008", "0.016"], "Rate points (loss = bpp + lambda MSE).")
flags.DEFINE_enum("prior", "position", ["position", "channel"], "Factorized prior per latent position or per channel.")
flags.DEFINE_enum(
    "entropy_model",
    "factorized",
    ["factorized", "hyperprior"],
    "factorized: face_codec.FaceCodec (--prior); hyperprior: hyperprior.HyperpriorFaceCodec (mean-scale, slices).",
)
flags.DEFINE_integer("snapshot_every", 0, "Save the weights to snapshots/step_N every this many steps (0: never).")
flags.DEFINE_integer(
    "entropy_warmup", 0, "Hyperprior: first steps in which only the entropy model learns (after --init_from)."
)
flags.DEFINE_float("warmup_boost", 1.0, "Hyperprior: the entropy model's learning rate multiplier in the warm-up.")
flags.DEFINE_float("transform_learning_rate", None, "Hyperprior: the transforms' learning rate (default: the same).")
flags.DEFINE_integer("steps", 12000, "Training steps (one rate drawn per batch).")
flags.DEFINE_integer("batch_size", 8, "Batch size.")
flags.DEFINE_integer("patch_size", 0, "Random square patches of this size (prior channel only); 0: whole crops.")
flags.DEFINE_float("learning_rate", 1e-4, "Adam learning rate.")
flags.DEFINE_float("final_learning_rate", 1e-5, "Learning rate reached at the end (decay over the last 20 %).")
flags.DEFINE_float(
    "max_minutes", None, "Bound this session, tables and evaluation included (re-run to continue or finish)."
)
flags.DEFINE_integer("until_step", None, "Stop this session at this step (re-run to continue the run).")
flags.DEFINE_string(
    "init_from",
    None,
    "End-to-end learned checkpoint (BLS2017, e.g. CHECKPOINTS/enhancement/"
    "original_l0.01) to start from: the model first codes like it (conditional inputs at zero).",
)
flags.DEFINE_float("validation_fraction", 0.05, "Fraction of the training identities held out (0: train on all).")
flags.DEFINE_integer("held_out", 256, "Held-out-identity faces on which meta.json records rate and PSNR per rate.")
flags.DEFINE_string(
    "checkpoint_dir",
    None,
    "Final weights + meta.json, train_state/ for resume; default: runs/train_face_codec/run-HASH.",
)
runs.define_flags()
flags.DEFINE_integer("seed", 0, "Random seed.")
flags.DEFINE_string("tensorboard_dir", None, "TensorBoard log directory (loss, bpp, mse).")


def prediction_network() -> str:
    """The network whose output the codec is trained against: the coding predictor or the reconstructor."""
    if FLAGS.prediction_mode == "mmse":
        return FLAGS.predictor or str(zoo.model_set().path("predictor"))
    return FLAGS.reconstructor or str(zoo.model_set().path("reconstructor"))


def base_layer_path() -> str:
    return FLAGS.base_layer or str(zoo.model_set().path("base_layer"))


def pair_maker():
    """(crops, features) -> the (image, prediction) pair ``--kind`` trains on (the image itself as the prediction
    of codecs that use none)."""
    if FLAGS.kind == "original":
        return lambda crops, features: (crops, crops)
    predict = prediction.training_predictor(prediction_network(), base_layer_path())
    if FLAGS.kind == "conditional":
        return lambda crops, features: (crops, predict(features, crops))

    def residual(crops, features):
        images = layer.normalised_residuals(crops, predict(features, crops))[0]
        return images, images

    return residual


def held_out_pairs(faces, pair) -> tuple:
    """(held-out images, held-out predictions or None) of up to --held_out held-out faces; (None, None) if none."""
    if not len(faces.held_out_crops):
        return None, None
    held, held_p = pair(faces.held_out_crops[: FLAGS.held_out], faces.held_out_features[: FLAGS.held_out])
    return held, held_p if FLAGS.kind == "conditional" else None


def in_memory_inputs(faces: training_set.TrainingSet) -> tuple:
    """(batches(seed), training images, held-out images, held-out predictions) for ``--kind``, in memory."""
    images, predictions = faces.crops, None
    if FLAGS.kind != "original":
        predictions = prediction.training_predictions(
            prediction_network(), base_layer_path(), faces.features, faces.crops
        )
    if FLAGS.kind == "residual":
        images, predictions = layer.normalised_residuals(faces.crops, predictions)[0], None
    return (
        lambda seed: training.face_codec_dataset(images, predictions, FLAGS.batch_size, seed, FLAGS.patch_size or None),
        len(images),
        *held_out_pairs(faces, pair_maker()),
    )


def streamed_inputs(faces: training_set.TrainingStream) -> tuple:
    """The same from a record stream: each batch's pair made as it comes; the held-out pairs in memory."""
    pair = pair_maker()
    return (
        lambda seed: training.face_codec_stream(faces.examples, FLAGS.batch_size, pair),
        faces.num_examples,
        *held_out_pairs(faces, pair),
    )


def check_flags() -> None:
    """One-line errors for flag values that would otherwise fail after loading, or be ignored."""
    if FLAGS.patch_size and FLAGS.prior == "position":
        raise app.UsageError("--patch_size needs --prior channel (a positional prior's latent grid is the crop's)")
    if FLAGS.patch_size < 0 or FLAGS.patch_size % 16 or FLAGS.patch_size > 160:
        raise app.UsageError(f"--patch_size {FLAGS.patch_size}: a multiple of 16 up to 160 (0: whole crops)")
    if FLAGS.patch_size and not FLAGS.data_dir:
        raise app.UsageError("--patch_size needs the faces in memory (--data_dir)")
    if not 0 <= FLAGS.validation_fraction < 1:
        raise app.UsageError(f"--validation_fraction {FLAGS.validation_fraction}: from 0 up to (not including) 1")
    if FLAGS.reconstructor and FLAGS.prediction_mode != "reconstruction":
        raise app.UsageError("--reconstructor goes with --prediction_mode reconstruction")


def main(_):
    deadline = Deadline(FLAGS.max_minutes)  # the whole job: loading, training, tables, evaluation
    check_flags()
    out = runs.trainer_dir(FLAGS, "train_face_codec")
    if runs.start(out, FLAGS.resume, FLAGS.overwrite).finished:
        return
    try:
        faces = training_set.load(
            FLAGS.data_dir,
            FLAGS.records,
            FLAGS.tfds,
            FLAGS.tfds_data_dir,
            FLAGS.identities,
            FLAGS.align,
            FLAGS.flip,
            FLAGS.extra_faces,
            FLAGS.validation_fraction,
            seed=FLAGS.seed,
        )
        streamed = isinstance(faces, training_set.TrainingStream)
        batches, num_images, held, held_p = streamed_inputs(faces) if streamed else in_memory_inputs(faces)
    except SfcError as exc:
        raise app.UsageError(str(exc)) from exc
    config = training.FaceCodecTrainConfig(
        checkpoint_dir=str(out),
        lmbdas=tuple(float(v) for v in FLAGS.lmbdas),
        kind=FLAGS.kind,
        prior=FLAGS.prior,
        entropy_model=FLAGS.entropy_model,
        snapshot_every=FLAGS.snapshot_every,
        entropy_warmup=FLAGS.entropy_warmup,
        warmup_boost=FLAGS.warmup_boost,
        transform_learning_rate=FLAGS.transform_learning_rate,
        until_step=FLAGS.until_step,
        patch_size=FLAGS.patch_size or None,
        steps=FLAGS.steps,
        batch_size=FLAGS.batch_size,
        learning_rate=FLAGS.learning_rate,
        final_learning_rate=FLAGS.final_learning_rate,
        max_minutes=FLAGS.max_minutes,
        init_from=FLAGS.init_from,
        log_dir=FLAGS.tensorboard_dir,
        seed=FLAGS.seed,
    )
    meta = training.train_face_codec(
        config,
        batches,
        num_images,
        {
            "data": faces.description,
            "prediction": None
            if FLAGS.kind == "original"
            else {
                "mode": FLAGS.prediction_mode,
                "network": prediction_network(),
                "network_sha256": prediction.network_id(prediction_network()),
                "base_layer": base_layer_path(),
            },
        },
        None if held is None else (held, held_p),
        deadline,
    )
    if meta is None:
        return  # the library said why (time limit, --until_step) and how to continue
    held_out = meta["held_out"] and ", ".join(
        f"{r['bits_per_image']:.0f} bits {r['psnr']:.2f} dB" for r in meta["held_out"]["rates"]
    )
    print(
        f"saved {out}: {meta['steps']} steps in {meta['wall_time_s']} s of training, {meta['images_per_second']} "
        f"images/s; held out, per rate: {held_out or 'none'}"
    )


if __name__ == "__main__":
    app.run(main)
