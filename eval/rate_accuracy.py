"""Rate-accuracy on LFW (the paper's Fig. 2): analyze-then-compress (base layer) against
compress-then-analyze (JPEG / JPEG2000 on the face crop, FaceNet on the decoded crop).

  python eval/rate_accuracy.py --lfw_dir ../shared/data/lfw --folds 1,2,3,4 --align mtcnn \\
      --output_json eval/results/rate_accuracy_mtcnn.json --plot eval/results/rate_accuracy_mtcnn.png

For --align center, first fit models on center crops (train/fit_base_layer.py --align center --output_dir
runs/base_layer/center) and pass --base_layer_dir runs/base_layer/center.

The base-layer models must have been fitted on features of the same crops (``--align``): the index.json of
``--base_layer_dir`` says which.

Full-stream points ("base+<enhancement>" totals, from eval/rate_distortion.py's ``rate_accuracy_points``) join
with ``--extra_points``, on a fresh run or, keeping the measured anchors, with ``--add_to_existing``:

  python eval/rate_accuracy.py --lfw_dir ../shared/data/lfw --add_to_existing \\
      --extra_points eval/results/rate_distortion.json \\
      --output_json eval/results/rate_accuracy_mtcnn.json --plot eval/results/rate_accuracy_mtcnn.png
"""

import json
import pathlib

from absl import app, flags

from sfc_tf import metrics, runs, settings
from sfc_tf.base import base_layer, facenet
from sfc_tf.bitstream import ALIGNMENTS
from sfc_tf.data import folders
from sfc_tf.enhancement.registry import make_codec
from sfc_tf.evaluation import curves

FLAGS = flags.FLAGS
flags.DEFINE_string("lfw_dir", None, "LFW root.", required=True)
flags.DEFINE_string("pairs", None, "pairs.txt; default <lfw_dir>/pairs.txt.")
flags.DEFINE_list("folds", None, "1-based folds; default: every fold the header declares.")
flags.DEFINE_enum("align", "mtcnn", ALIGNMENTS, "Face crop.")
flags.DEFINE_string(
    "base_layer_dir", None, "Fitted base-layer models (index.json); default: base_layer/ of the checkpoints directory."
)
flags.DEFINE_list("jpeg_qualities", ["1", "5", "10", "20", "40", "70", "90"], "JPEG anchor qualities.")
flags.DEFINE_list("jpeg2000_ratios", ["400", "200", "100", "50", "25", "12", "6"], "JPEG2000 anchor ratios.")
flags.DEFINE_list("extra_points", [], "JSON files with a 'rate_accuracy_points' list to add.")
flags.DEFINE_string("output_json", None, "Result JSON; default: runs/rate_accuracy/<time>/rate_accuracy.json.")
runs.define_flags(trainer=False)
flags.DEFINE_string("plot", None, "PNG plot of accuracy against bits per face.")
flags.DEFINE_bool(
    "add_to_existing",
    False,
    "Only add the --extra_points to an existing --output_json (and " "redraw --plot), keeping its measured points.",
)
flags.DEFINE_bool(
    "subtract_mean",
    True,
    "Score features centred on the training-identity mean (verify_lfw.py's "
    "default); the base-layer models carry that mean.",
)


def load_base_layers(directory: pathlib.Path, align: str) -> list[base_layer.BaseLayerModel]:
    """Every model of ``directory/index.json``; they must have been fitted on ``align`` crops."""
    index = json.loads((directory / "index.json").read_text())
    if index["align"] != align:
        raise app.UsageError(
            f"{directory} holds base-layer models fitted on {index['align']} crops, not {align}: "
            "pass --base_layer_dir of models fitted with the same --align"
        )
    return [base_layer.load(directory / m["file"]) for m in index["models"]]


def main(_):
    runs.resolve_outputs(FLAGS, "rate_accuracy", extend=FLAGS.add_to_existing)
    if FLAGS.add_to_existing:
        if not FLAGS.extra_points:
            raise app.UsageError("--add_to_existing needs --extra_points")
        points = [
            p
            for extra in FLAGS.extra_points
            for p in json.loads(pathlib.Path(extra).read_text())["rate_accuracy_points"]
        ]
        curves.add_rate_accuracy_points(FLAGS.output_json, points, FLAGS.plot)
        print(f"added {len(points)} points to {FLAGS.output_json}")
        return
    extractor = facenet.FeatureExtractor()
    pairs_file = FLAGS.pairs or f"{FLAGS.lfw_dir}/pairs.txt"
    folds = [int(f) for f in FLAGS.folds] if FLAGS.folds else list(range(1, folders.pairs_header(pairs_file)[0] + 1))
    pairs, faces = folders.load_pair_faces(
        FLAGS.lfw_dir, pairs_file, folds, FLAGS.align, extractor, f"{facenet.DEFAULT_KEY}-fixed"
    )
    index = faces.index()
    models = load_base_layers(pathlib.Path(FLAGS.base_layer_dir or settings.shipped("base_layer")), FLAGS.align)
    mean = models[0].mean if FLAGS.subtract_mean else None  # every model's PCA mean: the training-feature mean
    reference = metrics.evaluate_pairs(pairs, index, faces.features, mean=mean)
    points = curves.base_layer_points(models, pairs, index, faces.features, mean)
    codecs = [make_codec("jpeg-file", q) for q in FLAGS.jpeg_qualities]
    codecs += [make_codec("jpeg2000", r) for r in FLAGS.jpeg2000_ratios]
    points += curves.anchor_points(codecs, pairs, index, faces.crops, extractor, mean=mean)
    for extra in FLAGS.extra_points:
        points += json.loads(pathlib.Path(extra).read_text())["rate_accuracy_points"]
    result = {
        "reference_accuracy": reference.accuracy,
        "reference_accuracy_std": reference.accuracy_std,
        "num_pairs": len(pairs),
        "align": FLAGS.align,
        "folds": folds,
        "subtract_mean": FLAGS.subtract_mean,
        "points": points,
    }
    curves.write_json(FLAGS.output_json, result)
    for p in points:
        print(
            f"{p['codec']:>12} {p['parameter']!s:>8}: {p['bits_per_face']:9.1f} bits/face, "
            f"accuracy {p['accuracy']:.4f} +- {p['accuracy_std']:.4f}"
        )
    if FLAGS.plot:
        curves.plot_rate_accuracy(result, FLAGS.plot)


if __name__ == "__main__":
    app.run(main)
