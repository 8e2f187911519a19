"""Fit base-layer models (PCA rotation + per-dimension priors) on training-identity FaceNet features.

  python train/fit_base_layer.py --lfw_dir ../shared/data/lfw \\
      --identities ../shared/data/lfw/train_identities.txt --align mtcnn --output_dir runs/base_layer
  python train/fit_base_layer.py ... --align center --output_dir runs/base_layer/center
  python train/fit_base_layer.py ... --feature_models CHECKPOINTS/base_layer/step_0.08.npz \\
      --thumbnail_grid 2 --thumbnail_step 16 --output_dir runs/base_layer/thumbnail2

Without ``--output_dir`` the models go to runs/fit_base_layer/run-<hash of the flags> (sfc_tf.runs); a folder that
holds fitted models (its index.json) is left alone ("already finished") unless ``--overwrite``.

With ``--thumbnail_grid G`` every model also codes a G x G colour thumbnail of the crop (``sfc_tf.base.thumbnail``),
fitted on the same training crops. ``--feature_models`` takes the feature part from existing models (bit for bit:
a refit on another machine's BLAS may rotate differently) instead of fitting one per step.

One model per quantizer step, written as <output_dir>/step_<step>.npz, and an index.json holding the fitted-on
data and, per model, its step, dims, model id and the mean coded and ideal bits per face on the training
features and on the evaluation images (``--eval_folds`` of ``--pairs``; reported only, never fitted on).
Accuracy comes from eval/rate_accuracy.py.
"""

import json

import numpy as np
from absl import app, flags

from sfc_tf import runs
from sfc_tf.base import base_layer, facenet
from sfc_tf.base.thumbnail import Thumbnail
from sfc_tf.bitstream import ALIGNMENTS
from sfc_tf.data import folders

FLAGS = flags.FLAGS
flags.DEFINE_string("lfw_dir", None, "Root of identity folders.", required=True)
flags.DEFINE_string("identities", None, "Training identity list (features of these only).", required=True)
flags.DEFINE_enum("align", "mtcnn", ALIGNMENTS, "Face crop.")
flags.DEFINE_list(
    "steps",
    ["0.3", "0.2", "0.14", "0.1", "0.08", "0.06", "0.04", "0.02", "0.01", "0.005", "0.002", "0.001", "0.0005"],
    "Quantizer steps (the rate knob), one model each.",
)
flags.DEFINE_bool("pca", True, "Decorrelate with a PCA rotation before quantization.")
flags.DEFINE_string("pairs", None, "pairs.txt for the reported evaluation rates; default <lfw_dir>/pairs.txt.")
flags.DEFINE_list("eval_folds", ["1", "2", "3", "4"], "Folds whose images give the reported evaluation rates.")
flags.DEFINE_string("output_dir", None, "Where the models go; default: runs/fit_base_layer/run-HASH.")
flags.DEFINE_integer("thumbnail_grid", 0, "Also code a G x G colour thumbnail of the crop (0: none, the paper's).")
flags.DEFINE_float("thumbnail_step", 16.0, "The thumbnail's quantizer step, in 8-bit levels.")
flags.DEFINE_list(
    "feature_models", [], "Existing base-layer models whose feature part to keep (--steps and --pca then unused)."
)
runs.define_flags()


def coded_and_ideal_bits(model: base_layer.BaseLayerModel, faces: folders.FaceSet) -> dict:
    """Coded bits per face (record: CRC-16 + payload, the thumbnail included), the feature's ideal bits and the
    thumbnail's."""
    coded = 8 * np.mean([len(r) for r in model.encode(faces.features, faces.crops)])
    bits = {
        "coded_bits_per_face": round(float(coded), 1),
        "entropy_bits_per_face": round(float(model.entropy_bits(faces.features).mean()), 1),
    }
    if model.thumbnail is not None:
        bits["thumbnail_entropy_bits_per_face"] = round(float(model.thumbnail.entropy_bits(faces.crops).mean()), 1)
    return bits


def feature_models(features: np.ndarray):
    """The --feature_models as loaded, or one model fitted per --steps."""
    if FLAGS.feature_models:
        yield from (base_layer.load(path) for path in FLAGS.feature_models)
        return
    for step in sorted(float(s) for s in FLAGS.steps):
        info = {"facenet": facenet.DEFAULT_KEY, "align": FLAGS.align, "identities": FLAGS.identities}
        yield base_layer.BaseLayerModel.fit(features, step, FLAGS.pca, info)


def main(_):
    out = runs.trainer_dir(FLAGS, "fit_base_layer", "output_dir")
    if runs.start(out, FLAGS.resume, FLAGS.overwrite, marker="index.json").finished:
        return
    extractor, tag = facenet.FeatureExtractor(), f"{facenet.DEFAULT_KEY}-fixed"
    paths = [p for p, _ in folders.list_images(FLAGS.lfw_dir, folders.read_identity_list(FLAGS.identities))]
    train = folders.load_faces(FLAGS.lfw_dir, paths, FLAGS.align, extractor, tag)
    _, eval_faces = folders.load_pair_faces(
        FLAGS.lfw_dir,
        FLAGS.pairs or f"{FLAGS.lfw_dir}/pairs.txt",
        [int(f) for f in FLAGS.eval_folds],
        FLAGS.align,
        extractor,
        tag,
    )
    thumbnail = None
    if FLAGS.thumbnail_grid:
        thumbnail = Thumbnail.fit(train.crops, FLAGS.thumbnail_grid, FLAGS.thumbnail_step)
    index = []
    for model in feature_models(train.features):
        if thumbnail is not None:
            model = model.with_thumbnail(thumbnail, {"grid": thumbnail.grid, "step": thumbnail.step})
        name = f"step_{model.step:g}.npz"
        out.mkdir(parents=True, exist_ok=True)
        model.save(out / name)
        entry = {
            "file": name,
            "step": model.step,
            "dims": model.dim,
            "model_id": model.model_id,
            "train": coded_and_ideal_bits(model, train),
            "eval": coded_and_ideal_bits(model, eval_faces),
        }
        index.append(entry)
        print(
            f"step {model.step:g}: {entry['train']['coded_bits_per_face']} coded bits per face on train, "
            f"{entry['eval']['coded_bits_per_face']} on eval"
        )
    (out / "index.json").write_text(
        json.dumps(
            {
                "fitted_on": {
                    "lfw_dir": FLAGS.lfw_dir,
                    "identities": FLAGS.identities,
                    "images": len(paths),
                    "align": FLAGS.align,
                    "facenet": tag,
                },
                "eval": {
                    "pairs": FLAGS.pairs or f"{FLAGS.lfw_dir}/pairs.txt",
                    "folds": [int(f) for f in FLAGS.eval_folds],
                    "images": len(eval_faces.paths),
                },
                "align": FLAGS.align,
                "pca": None if FLAGS.feature_models else FLAGS.pca,
                "feature_models": FLAGS.feature_models,
                "thumbnail": thumbnail and {"grid": thumbnail.grid, "step": thumbnail.step},
                "models": index,
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    app.run(main)
