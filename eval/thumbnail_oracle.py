"""How much of the reconstruction's PSNR deficit is coarse layout (colour, lighting, background) that an identity
feature does not describe: the reconstruction x_hat with its g x g low-pass replaced by the crop's own, as if the
base layer also carried a g x g colour thumbnail of the face (3 g^2 values rounded to 8 bits: 24 g^2 bits before
any entropy coding). Not a codec: what such side information buys with this simplest decoder (a learned one that
fused thumbnail and feature would do better).

  python eval/thumbnail_oracle.py --lfw_dir ../shared/data/lfw --max_images 1024 \
      --output_json eval/results/thumbnail_oracle.json
"""

import numpy as np
import tensorflow as tf
from absl import app, flags

from sfc_tf import evaluation, metrics
from sfc_tf.codec import ScalableCodec

FLAGS = flags.FLAGS
flags.DEFINE_string("lfw_dir", None, "LFW root.", required=True)
flags.DEFINE_list("folds", ["1", "2", "3", "4"], "1-based folds.")
flags.DEFINE_integer("max_images", 1024, "First N images of the folds (0: all).")
flags.DEFINE_string("model_set", None, "Registered model set (default: the registry's default).")
flags.DEFINE_list("grids", ["1", "2", "4", "8"], "Thumbnail sizes g (g x g pixels, 3 colours).")
flags.DEFINE_string("output_json", None, "Result JSON.", required=True)


def low_pass(images: np.ndarray, grid: int, levels: bool = False) -> np.ndarray:
    """Area-average to grid x grid (rounded to 8-bit levels if ``levels``: a thumbnail as sent), bilinear back to
    the image size (float32)."""
    small = tf.image.resize(tf.cast(images, tf.float32), (grid, grid), method="area")
    if levels:
        small = tf.round(small)
    return tf.image.resize(small, images.shape[1:3], method="bilinear").numpy()


def main(_):
    _, faces = evaluation.lfw_pair_faces(FLAGS.lfw_dir, [int(f) for f in FLAGS.folds])
    count = FLAGS.max_images or len(faces.paths)
    crops = faces.crops[:count]
    codec = ScalableCodec.from_pretrained(FLAGS.model_set)
    x_hat = codec.analyse(crops, faces.features[:count]).predictions.reconstruction
    rows = []
    for grid in map(int, FLAGS.grids):
        thumbnail = low_pass(crops, grid, levels=True)
        corrected = x_hat.astype(np.float32) - low_pass(x_hat, grid) + thumbnail
        rows.append(
            {
                "grid": grid,
                "raw_thumbnail_bits": 24 * grid * grid,
                "psnr_reconstruction_with_thumbnail": float(np.mean(metrics.psnr(crops, to_uint8(corrected)))),
                "psnr_thumbnail_alone": float(np.mean(metrics.psnr(crops, to_uint8(thumbnail)))),
            }
        )
    result = {
        "num_images": count,
        "model_set": codec.model_set.name,
        "psnr_reconstruction": float(np.mean(metrics.psnr(crops, x_hat))),
        "rows": rows,
    }
    evaluation.write_json(FLAGS.output_json, result)
    print(result)


def to_uint8(images: np.ndarray) -> np.ndarray:
    return np.clip(np.round(images), 0, 255).astype(np.uint8)


if __name__ == "__main__":
    app.run(main)
