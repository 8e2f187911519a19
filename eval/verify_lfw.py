"""LFW face verification with FaceNet features (facenet's k-fold protocol).

  python eval/verify_lfw.py --lfw_dir ../shared/data/lfw --pairs ../shared/data/lfw/pairs.txt \\
      --folds 1,2,3,4 --align mtcnn --output_json eval/results/verify_lfw_mtcnn.json
"""

import json
import pathlib
import sys

from absl import app, flags

from sfc_tf import metrics, runs
from sfc_tf.base import facenet
from sfc_tf.bitstream import ALIGNMENTS
from sfc_tf.data import folders

FLAGS = flags.FLAGS
flags.DEFINE_string("lfw_dir", None, "LFW root: one folder of images per identity.", required=True)
flags.DEFINE_string("pairs", None, "pairs.txt (LFW View 2 format). Default: <lfw_dir>/pairs.txt.")
flags.DEFINE_list("folds", None, "1-based folds to use. Default: every fold the pairs file's header declares.")
flags.DEFINE_enum("align", "mtcnn", ALIGNMENTS, "Face crop: MTCNN detection, center crop, or the image as it is.")
flags.DEFINE_string("facenet_key", facenet.DEFAULT_KEY, "keras-facenet model key.")
flags.DEFINE_string("facenet_weights", None, "Local Keras weights file for FaceNet (optional).")
flags.DEFINE_enum("standardization", "fixed", ["fixed", "prewhiten"], "FaceNet input standardisation.")
flags.DEFINE_bool(
    "subtract_mean",
    True,
    "Centre features on the mean feature of the training identities "
    "(facenet's subtract_mean, without test statistics) before the distance.",
)
flags.DEFINE_string(
    "identities", None, "Training identity list for --subtract_mean; default " "<lfw_dir>/train_identities.txt."
)
flags.DEFINE_string("output_json", None, "Where to write the result JSON.")
runs.define_flags(trainer=False)


def main(_):
    runs.resolve_outputs(FLAGS, "verify_lfw", default=False)
    pairs_file = FLAGS.pairs or str(pathlib.Path(FLAGS.lfw_dir) / "pairs.txt")
    identities = FLAGS.identities or str(pathlib.Path(FLAGS.lfw_dir) / "train_identities.txt")
    if FLAGS.subtract_mean and not pathlib.Path(identities).is_file():
        sys.exit(
            f"verify_lfw: {identities} not found: pass --identities (the training identity list) or "
            f"--nosubtract_mean"
        )
    folds = [int(f) for f in FLAGS.folds] if FLAGS.folds else None
    extractor = facenet.FeatureExtractor(FLAGS.facenet_key, FLAGS.facenet_weights, FLAGS.standardization)
    pairs, faces = folders.load_pair_faces(
        FLAGS.lfw_dir, pairs_file, folds, FLAGS.align, extractor, f"{FLAGS.facenet_key}-{FLAGS.standardization}"
    )
    mean = None
    if FLAGS.subtract_mean:
        train_paths = [p for p, _ in folders.list_images(FLAGS.lfw_dir, folders.read_identity_list(identities))]
        mean = folders.load_faces(
            FLAGS.lfw_dir, train_paths, FLAGS.align, extractor, f"{FLAGS.facenet_key}-{FLAGS.standardization}"
        ).features.mean(axis=0)
    result = metrics.evaluate_pairs(pairs, faces.index(), faces.features, mean=mean)
    report = {
        "accuracy": result.accuracy,
        "accuracy_std": result.accuracy_std,
        "num_pairs": len(pairs),
        "feature_dim": int(faces.features.shape[1]),
        "folds": sorted({p.fold for p in pairs}),
        "fold_accuracies": result.fold_accuracies,
        "thresholds": result.thresholds,
        "align": FLAGS.align,
        "alignment_fallbacks": faces.fallbacks,
        "facenet_key": FLAGS.facenet_key,
        "standardization": FLAGS.standardization,
        "subtract_mean": FLAGS.subtract_mean,
        "pairs_file": pairs_file,
    }
    print(
        f"accuracy {result.accuracy:.4f} +- {result.accuracy_std:.4f} over {len(pairs)} pairs "
        f"({FLAGS.align} crops, {faces.features.shape[1]}-d features)"
    )
    if FLAGS.output_json:
        path = pathlib.Path(FLAGS.output_json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    app.run(main)
