"""Train the learned enhancement codec (Balle 2016 with 128 filters): one model per lambda.

Paper settings are the defaults (Adam, batch 16, learning rate 2e-4, 10 epochs).

  python train/train_enhancement.py --residuals cache/residuals_train.npz --input residual --lmbda 0.01 \\
      --checkpoint_dir runs/residual_l0.01
  python train/train_enhancement.py --data_dir ../shared/data/lfw \\
      --identities ../shared/data/lfw/train_identities.txt --input original --lmbda 0.01 \\
      --checkpoint_dir runs/original_l0.01

Without ``--checkpoint_dir`` the run goes to runs/train_enhancement/run-<hash of the flags> (sfc_tf.runs).
Re-running the same command resumes from <checkpoint_dir>/train_state, or says the run is finished (raise --epochs
and pass --overwrite to train a finished model further; --noresume starts over).
--init_from warm-starts a residual model from the anchor of the same lambda (short CPU budgets).
"""

import numpy as np
from absl import app, flags

from sfc_tf import runs
from sfc_tf.base import facenet
from sfc_tf.bitstream import ALIGNMENTS
from sfc_tf.data import folders
from sfc_tf.enhancement import training
from sfc_tf.training import distribute
from sfc_tf.training.time_limit import Deadline

FLAGS = flags.FLAGS
flags.DEFINE_enum(
    "input",
    "residual",
    ["residual", "original"],
    "Code normalised residuals (enhancement layer) or the crops themselves (end-to-end anchor).",
)
flags.DEFINE_string("residuals", None, "npz from train/build_residuals.py (for --input residual).")
flags.DEFINE_string("data_dir", None, "Root of identity folders (for --input original).")
flags.DEFINE_string("identities", None, "Identity list (for --input original).")
flags.DEFINE_enum("align", "mtcnn", ALIGNMENTS, "Face crop (for --input original).")
flags.DEFINE_float("lmbda", 0.01, "Rate-distortion trade-off: loss = bpp + lmbda * MSE (0..255 pixels).")
flags.DEFINE_float("epochs", 10, "Epochs, fractions allowed (paper: 10).")
flags.DEFINE_integer("batch_size", 16, "Batch size (paper: 16).")
flags.DEFINE_float("learning_rate", 2e-4, "Adam learning rate (paper: 2e-4).")
flags.DEFINE_integer("patch_size", 160, "Random crop size of the training images (160: whole faces).")
flags.DEFINE_enum("strategy", "default", list(distribute.STRATEGIES), "tf.distribute strategy.")
flags.DEFINE_bool("jit_compile", False, "XLA-compile the train step.")
flags.DEFINE_float(
    "max_minutes", None, "Bound this session, the final evaluation and tables included (re-run to continue or finish)."
)
flags.DEFINE_integer("save_every", 200, "Save the training state every this many steps.")
flags.DEFINE_string("init_from", None, "Enhancement checkpoint to warm-start the weights from.")
flags.DEFINE_string(
    "checkpoint_dir",
    None,
    "Final weights + meta.json, train_state/ for resume; default: runs/train_enhancement/run-HASH.",
)
flags.DEFINE_string("tensorboard_dir", None, "TensorBoard log directory (loss, bpp, mse).")
runs.define_flags()


def training_images() -> tuple[np.ndarray, dict]:
    if FLAGS.input == "residual":
        if not FLAGS.residuals:
            raise app.UsageError("--input residual needs --residuals (train/build_residuals.py)")
        with np.load(FLAGS.residuals) as archive:
            models = {k: str(archive[k]) for k in ("base_layer", "reconstructor") if k in archive}  # their ids
            return archive["residuals"], {"residuals": FLAGS.residuals, **models}
    if not (FLAGS.data_dir and FLAGS.identities):
        raise app.UsageError("--input original needs --data_dir and --identities")
    paths = [p for p, _ in folders.list_images(FLAGS.data_dir, folders.read_identity_list(FLAGS.identities))]
    crops = folders.load_faces(
        FLAGS.data_dir, paths, FLAGS.align, facenet.FeatureExtractor(), f"{facenet.DEFAULT_KEY}-fixed"
    ).crops
    return crops, {"data_dir": FLAGS.data_dir, "identities": FLAGS.identities, "align": FLAGS.align}


def main(_):
    deadline = Deadline(FLAGS.max_minutes)  # the whole job: loading, training, evaluation, tables
    out = runs.trainer_dir(FLAGS, "train_enhancement")
    if runs.start(out, FLAGS.resume, FLAGS.overwrite).finished:
        return
    distribute.make_strategy(FLAGS.strategy)  # before FaceNet or any data op (multi-worker collectives)
    images, source = training_images()
    config = training.EnhancementTrainConfig(
        checkpoint_dir=str(out),
        lmbda=FLAGS.lmbda,
        epochs=FLAGS.epochs,
        batch_size=FLAGS.batch_size,
        learning_rate=FLAGS.learning_rate,
        patch_size=FLAGS.patch_size,
        strategy=FLAGS.strategy,
        jit_compile=FLAGS.jit_compile,
        max_minutes=FLAGS.max_minutes,
        save_every=FLAGS.save_every,
        init_from=FLAGS.init_from,
        log_dir=FLAGS.tensorboard_dir,
    )
    meta = training.train(config, images, {"input": FLAGS.input, "data": source}, deadline)
    if meta is None:
        return  # the library said why (the time limit) and how to continue
    print(
        f"saved {out}: {meta['steps']} steps ({meta['epochs_done']} epochs), "
        f"{meta['final_metrics']}, {meta['images_per_second']} images/s"
    )


if __name__ == "__main__":
    app.run(main)
