"""Train a variable-rate learned face codec (sfc_tf.enhancement.face_codec): end to end (``--kind original``),
on residuals against the coding prediction (``--kind residual``), or conditional on it (``--kind conditional``).
Every kind gets the same data, steps, batch and schedule unless told otherwise, so that they compare fairly.

  python train/train_face_codec.py --data_dir ../shared/data/lfw \
      --identities ../shared/data/lfw/train_identities.txt --flip --extra_faces ~/.cache/sfc_data/utkface \
      --kind conditional --predictor checkpoints/predictor --steps 12000 \
      --checkpoint_dir checkpoints/enhancement/face_conditional

Re-running the same command resumes from <checkpoint_dir>/train_state; ``--max_minutes`` ends a session early.
"""

import pathlib

from absl import app, flags

from sfc_tf import extra_faces, training_data
from sfc_tf.enhancement import layer, prediction, training
from sfc_tf.errors import SfcError

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", None, "Root of identity folders (LFW, VGGFace2).", required=True)
flags.DEFINE_string("identities", None, "Identity list to train on (e.g. train_identities.txt).")
flags.DEFINE_enum("align", "mtcnn", ["mtcnn", "center"], "Face crop.")
flags.DEFINE_bool("flip", True, "Add every training face mirrored (its prediction from its own feature).")
flags.DEFINE_string("extra_faces", None, "Folder built by ../shared/tools/utkface.sh: extra faces, framed like LFW.")
flags.DEFINE_enum("kind", "original", ["original", "residual", "conditional"],
                  "original: code the face; residual: min-max(face - prediction); conditional: face given prediction.")
flags.DEFINE_string("predictor", "checkpoints/predictor", "Coding predictor (residual and conditional kinds).")
flags.DEFINE_string("base_layer", "checkpoints/base_layer/step_0.08.npz", "Base layer the predictions decode through.")
flags.DEFINE_list("lmbdas", ["0.001", "0.002", "0.004", "0.008", "0.016"], "Rate points (loss = bpp + lambda MSE).")
flags.DEFINE_enum("prior", "position", ["position", "channel"], "Factorized prior per latent position or per channel.")
flags.DEFINE_integer("steps", 12000, "Training steps (one rate drawn per batch).")
flags.DEFINE_integer("batch_size", 8, "Batch size of whole 160x160 crops.")
flags.DEFINE_float("learning_rate", 1e-4, "Adam learning rate.")
flags.DEFINE_float("final_learning_rate", 1e-5, "Learning rate reached at the end (decay over the last 20 %).")
flags.DEFINE_float("max_minutes", None, "Stop this session after the step in which this many minutes have passed.")
flags.DEFINE_integer("held_out", 256, "Held-out-identity faces on which meta.json records rate and PSNR per rate.")
flags.DEFINE_string("checkpoint_dir", None, "Final weights + meta.json; train_state/ for resume.", required=True)
flags.DEFINE_integer("seed", 0, "Random seed.")


def inputs(faces: training_data.TrainingSet) -> tuple:
    """(training images, training predictions, held-out images, held-out predictions) for ``--kind``."""
    held = faces.held_out_crops[:FLAGS.held_out]
    if FLAGS.kind == "original":
        return faces.crops, None, held, None
    p = prediction.training_predictions(FLAGS.predictor, FLAGS.base_layer, faces.features)
    held_p = prediction.training_predictions(FLAGS.predictor, FLAGS.base_layer,
                                             faces.held_out_features[:FLAGS.held_out])
    if FLAGS.kind == "conditional":
        return faces.crops, p, held, held_p

    return (layer.normalised_residuals(faces.crops, p)[0], None, layer.normalised_residuals(held, held_p)[0], None)


def main(_):
    if FLAGS.extra_faces and not pathlib.Path(FLAGS.extra_faces).expanduser().is_dir():
        raise app.UsageError(f"--extra_faces {FLAGS.extra_faces} does not exist: {extra_faces.BUILD_HINT}")
    try:
        faces = training_data.assemble(FLAGS.data_dir, FLAGS.identities, FLAGS.align, FLAGS.flip, FLAGS.extra_faces,
                                       seed=FLAGS.seed)
        images, predictions, held, held_p = inputs(faces)
    except SfcError as exc:
        raise app.UsageError(str(exc)) from exc
    config = training.FaceCodecTrainConfig(
        checkpoint_dir=FLAGS.checkpoint_dir, lmbdas=tuple(float(v) for v in FLAGS.lmbdas), kind=FLAGS.kind,
        prior=FLAGS.prior, steps=FLAGS.steps, batch_size=FLAGS.batch_size, learning_rate=FLAGS.learning_rate,
        final_learning_rate=FLAGS.final_learning_rate, max_minutes=FLAGS.max_minutes, seed=FLAGS.seed)
    meta = training.train_face_codec(config, images, predictions, {
        "data": faces.description,
        "prediction": None if FLAGS.kind == "original" else {"predictor": FLAGS.predictor,
                                                             "base_layer": FLAGS.base_layer},
    }, (held, held_p))
    print(f"saved {FLAGS.checkpoint_dir}: {meta['steps']} steps, {meta['images_per_second']} images/s, "
          f"held out {meta['held_out']}")


if __name__ == "__main__":
    app.run(main)
