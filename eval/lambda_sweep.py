"""Compare reconstructors trained with different perceptual weights (lambda) on their held-out identities.

Each run directory is a train/train_reconstructor.py checkpoint; its meta.json names the training identities
it held out, which all runs must share (same --seed and --validation_fraction). On those faces, decoded through
one base-layer model: PSNR and SSIM against the aligned originals, and identity preservation (mean cosine
similarity of the FaceNet features of reconstruction and original). The chosen lambda is the one with the
highest SSIM (structure, which neither pure MAE nor pure perceptual loss optimises alone).

  python eval/lambda_sweep.py --lfw_dir ../shared/data/lfw --runs runs/sweep/l0,runs/sweep/l1e-05,runs/sweep/l0.0001 \\
      --output_json eval/results/lambda_sweep.json
"""

import json
import pathlib

import numpy as np
from absl import app, flags

from sfc_tf import metrics, runs, settings
from sfc_tf.base import base_layer, facenet
from sfc_tf.data import folders
from sfc_tf.evaluation import curves
from sfc_tf.reconstruction import decoder, reconstructor

FLAGS = flags.FLAGS
flags.DEFINE_string("lfw_dir", None, "Root of identity folders the runs were trained on.", required=True)
flags.DEFINE_list("runs", None, "Reconstructor checkpoint directories, one per lambda.", required=True)
flags.DEFINE_string("base_layer", None, "Base-layer model to decode through; default: the shipped step_0.08.")
flags.DEFINE_string("output_json", None, "Result JSON; default: runs/lambda_sweep/<time>/lambda_sweep.json.")
runs.define_flags(trainer=False)


def score(model, faces: folders.FaceSet, decoded: np.ndarray, extractor) -> dict:
    rebuilt = decoder.reconstruct(model, decoded)
    rebuilt_features = extractor(rebuilt)
    attacks = metrics.reconstruction_attacks(rebuilt_features, faces.features, faces.identities())
    return {
        **curves.reconstruction_quality(faces.crops, rebuilt),
        "identity_cosine": float(np.mean(np.sum(rebuilt_features * faces.features, axis=1))),
        "tar_type_i_far_0.001": attacks["tar_type_i"],
        "tar_type_ii_far_0.001": attacks["tar_type_ii"],
    }


def main(_):
    runs.resolve_outputs(FLAGS, "lambda_sweep")
    base_path = FLAGS.base_layer or str(settings.shipped("base_layer/step_0.08.npz"))
    metas = [json.loads((pathlib.Path(run) / reconstructor.META_FILE).read_text()) for run in FLAGS.runs]
    held_out = {tuple(m["data"]["held_out_identities"]) for m in metas}
    if len(held_out) != 1 or not next(iter(held_out)):
        raise app.UsageError("the runs must share one non-empty set of held-out identities (same seed and split)")
    identities = list(next(iter(held_out)))
    extractor = facenet.FeatureExtractor()
    paths = [p for p, _ in folders.list_images(FLAGS.lfw_dir, identities)]
    faces = folders.load_faces(
        FLAGS.lfw_dir, paths, metas[0]["data"]["align"], extractor, f"{facenet.DEFAULT_KEY}-fixed"
    )
    decoded = base_layer.load(base_path).quantize_dequantize(faces.features)
    rows = []
    for run, meta in zip(FLAGS.runs, metas):
        row = {
            "run": run,
            "perceptual_weight": meta["training"]["perceptual_weight"],
            "steps": meta.get("steps", meta.get("steps_run")),  # older runs: steps_run
            **score(reconstructor.load(run), faces, decoded, extractor),
        }
        rows.append(row)
        print(row)
    best = max(rows, key=lambda r: r["ssim"])
    curves.write_json(
        FLAGS.output_json,
        {
            "held_out_identities": len(identities),
            "images": len(paths),
            "base_layer": base_path,
            "criterion": "highest mean SSIM",
            "chosen_perceptual_weight": best["perceptual_weight"],
            "runs": rows,
        },
    )
    print(f"chosen lambda: {best['perceptual_weight']}")


if __name__ == "__main__":
    app.run(main)
