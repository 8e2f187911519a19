"""Is a reconstructor alive? Per DconvOp block, the share of positive outputs (a block whose ReLUs died stays near
zero) and the spread of the output across faces (a collapsed model paints one face for every feature), on LFW
folds 1-4 features decoded through the base layer, inference mode.

  python eval/reconstructor_activity.py --lfw_dir ../shared/data/lfw --max_images 256 \\
      --reconstructors checkpoints/reconstructor,checkpoints/reconstructor_faces,runs/my_reconstructor \\
      --output_json eval/results/reconstructor_activity.json
"""

import numpy as np
import tensorflow as tf
from absl import app, flags

from sfc_tf import runs, settings
from sfc_tf.base import base_layer
from sfc_tf.evaluation import curves
from sfc_tf.reconstruction import reconstructor

FLAGS = flags.FLAGS
flags.DEFINE_string("lfw_dir", None, "LFW root.", required=True)
flags.DEFINE_list("folds", ["1", "2", "3", "4"], "1-based folds.")
flags.DEFINE_integer("max_images", 256, "Faces to run (the first N of the folds).")
flags.DEFINE_string("base_layer", None, "Base-layer model to decode through; default: the shipped step_0.08.")
flags.DEFINE_list("reconstructors", None, "Reconstructor checkpoint directories.", required=True)
flags.DEFINE_string(
    "output_json", None, "Result JSON; default: runs/reconstructor_activity/<time>/reconstructor_activity.json."
)
runs.define_flags(trainer=False)


def activity(model: reconstructor.Reconstructor, features: np.ndarray) -> dict:
    x = tf.reshape(features, (-1, 1, 1, model.feature_dim))
    blocks = []
    for block in model.blocks:
        x = block(x, training=False)
        blocks.append(
            {
                "block": block.name,
                "positive_share": float(tf.reduce_mean(tf.cast(x > 0, tf.float32))),
                "spread_across_faces": float(tf.reduce_mean(tf.math.reduce_std(x, axis=0))),
            }
        )
    return {"blocks": blocks, "output_spread_across_faces": blocks[-1]["spread_across_faces"]}


def main(_):
    runs.resolve_outputs(FLAGS, "reconstructor_activity")
    base_path = FLAGS.base_layer or str(settings.shipped("base_layer/step_0.08.npz"))
    _, faces = curves.lfw_pair_faces(FLAGS.lfw_dir, [int(f) for f in FLAGS.folds])
    model = base_layer.load(base_path)
    decoded = model.decode(model.encode(faces.features[: FLAGS.max_images]))
    rows = [{"reconstructor": path, **activity(reconstructor.load(path), decoded)} for path in FLAGS.reconstructors]
    curves.write_json(FLAGS.output_json, {"images": len(decoded), "base_layer": base_path, "runs": rows})
    for row in rows:
        shares = " ".join(f"{b['positive_share']:.0%}" for b in row["blocks"][:-1])
        spread = row["output_spread_across_faces"]
        print(f"{row['reconstructor']}: ReLU blocks positive {shares}; output spread {spread:.3f}")


if __name__ == "__main__":
    app.run(main)
