"""Fit base-layer models (PCA rotation + per-dimension priors) on training-identity FaceNet features.

  python train/fit_base_layer.py --lfw_dir ../shared/data/lfw \
      --identities ../shared/data/lfw/train_identities.txt --output_dir checkpoints/base_layer

One model per quantizer step; each is written as <output_dir>/step_<step>.npz with an index.json holding, per
model, its step, model id and the mean coded bits per face on the training features (evaluation numbers come
from eval/rate_accuracy.py).
"""

import json
import pathlib

import numpy as np
from absl import app, flags

from sfc_tf import base_layer, data, facenet

FLAGS = flags.FLAGS
flags.DEFINE_string("lfw_dir", None, "Root of identity folders.", required=True)
flags.DEFINE_string("identities", None, "Training identity list (features of these only).", required=True)
flags.DEFINE_enum("align", "mtcnn", ["mtcnn", "center"], "Face crop.")
flags.DEFINE_list("steps", ["0.3", "0.2", "0.14", "0.1", "0.08", "0.06", "0.04", "0.02", "0.01", "0.005", "0.002", "0.001", "0.0005"],
                  "Quantizer steps (the rate knob), one model each.")
flags.DEFINE_bool("pca", True, "Decorrelate with a PCA rotation before quantization.")
flags.DEFINE_string("output_dir", "checkpoints/base_layer", "Where the models go.")


def main(_):
    paths = [p for p, _ in data.list_images(FLAGS.lfw_dir, data.read_identity_list(FLAGS.identities))]
    faces = data.load_faces(FLAGS.lfw_dir, paths, FLAGS.align, facenet.FeatureExtractor(),
                            f"{facenet.DEFAULT_KEY}-fixed")
    out = pathlib.Path(FLAGS.output_dir)
    index = []
    for step in sorted(float(s) for s in FLAGS.steps):
        info = {"facenet": facenet.DEFAULT_KEY, "align": FLAGS.align, "identities": FLAGS.identities}
        model = base_layer.BaseLayerModel.fit(faces.features, step, FLAGS.pca, info)
        name = f"step_{step:g}.npz"
        model.save(out / name)
        bits = 8 * np.mean([len(r) for r in model.encode(faces.features)])
        index.append({"file": name, "step": step, "model_id": model.model_id, "train_bits_per_face": round(bits, 1),
                      "train_entropy_bits_per_face": round(float(model.entropy_bits(faces.features).mean()), 1)})
        print(f"step {step:g}: {bits:.1f} coded bits per face on {len(paths)} training faces")
    (out / "index.json").write_text(json.dumps({"models": index, "fitted_on": FLAGS.identities,
                                                "align": FLAGS.align, "pca": FLAGS.pca}, indent=2) + "\n")


if __name__ == "__main__":
    app.run(main)
