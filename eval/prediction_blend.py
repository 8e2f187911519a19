"""How much two base-layer predictions of a face know that the other does not: the correlation of their pixel
errors, and the PSNR of their blends w * reconstruction + (1 - w) * MMSE prediction, on LFW crops.

  python eval/prediction_blend.py --lfw_dir ../shared/data/lfw --max_images 1024 \\
      --output_json eval/results/prediction_blend.json

Errors that correlate strongly mean both networks miss the same thing (pose, lighting, background: what an
identity feature does not describe), so no mix of them moves far past either.
"""

import numpy as np
from absl import app, flags

from sfc_tf import metrics, runs
from sfc_tf.bitstream import MMSE
from sfc_tf.codec import ScalableCodec
from sfc_tf.evaluation import curves

FLAGS = flags.FLAGS
flags.DEFINE_string("lfw_dir", None, "LFW root.", required=True)
flags.DEFINE_list("folds", ["1", "2", "3", "4"], "1-based folds.")
flags.DEFINE_integer("max_images", 1024, "First N images of the folds (0: all).")
flags.DEFINE_string("model_set", None, "Registered model set (default: the registry's default).")
flags.DEFINE_list("weights", ["0", "0.2", "0.4", "0.5", "0.6", "0.8", "1"], "Blend weights of the reconstruction.")
flags.DEFINE_string("output_json", None, "Result JSON; default: runs/prediction_blend/<time>/prediction_blend.json.")
runs.define_flags(trainer=False)


def main(_):
    runs.resolve_outputs(FLAGS, "prediction_blend")
    _, faces = curves.lfw_pair_faces(FLAGS.lfw_dir, [int(f) for f in FLAGS.folds])
    count = FLAGS.max_images or len(faces.paths)
    crops = faces.crops[:count]
    codec = ScalableCodec.from_pretrained(FLAGS.model_set)
    predictions = codec.analyse(crops, faces.features[:count]).predictions
    reconstruction = predictions.reconstruction.astype(np.float32)
    mmse = predictions(MMSE).astype(np.float32)
    errors = [(crops.astype(np.float32) - p).ravel() for p in (reconstruction, mmse)]
    blends = []
    for weight in map(float, FLAGS.weights):
        blend = np.clip(np.round(weight * reconstruction + (1 - weight) * mmse), 0, 255).astype(np.uint8)
        blends.append({"reconstruction_weight": weight, "psnr": float(np.mean(metrics.psnr(crops, blend)))})
    result = {
        "num_images": count,
        "model_set": codec.model_set.name,
        "error_correlation": float(np.corrcoef(*errors)[0, 1]),
        "blends": blends,
    }
    curves.write_json(FLAGS.output_json, result)
    print(result)


if __name__ == "__main__":
    app.run(main)
