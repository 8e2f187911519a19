"""How much of the reconstruction's PSNR deficit is coarse layout (colour, lighting, background) that an identity
feature does not describe, and what a colour thumbnail in the base layer buys per bit.

Oracle rows: the reconstruction x_hat with its g x g low-pass (area average) replaced by the crop's own rounded to
8 bits (24 g^2 raw bits), as in the first measurement. Coded rows: the base layer's thumbnail
(``sfc_tf.base.thumbnail``, the least-squares g x g image) fitted on the training-identity crops for each quantizer
step, its ideal bits under the fitted prior, and x_hat corrected with the decoded thumbnail exactly as the codec's
decoder does it.

  python eval/thumbnail_oracle.py --lfw_dir ../shared/data/lfw \\
      --identities ../shared/data/lfw/train_identities.txt --max_images 0 \\
      --output_json eval/results/thumbnail_oracle.json
"""

import numpy as np
import tensorflow as tf
from absl import app, flags

from sfc_tf import metrics, runs
from sfc_tf.base.thumbnail import Thumbnail
from sfc_tf.codec import ScalableCodec
from sfc_tf.data import folders
from sfc_tf.evaluation import curves

FLAGS = flags.FLAGS
flags.DEFINE_string("lfw_dir", None, "LFW root.", required=True)
flags.DEFINE_string("identities", None, "Training identities: the crops the coded thumbnails are fitted on.")
flags.DEFINE_list("folds", ["1", "2", "3", "4"], "1-based folds.")
flags.DEFINE_integer("max_images", 0, "First N images of the folds (0: all).")
flags.DEFINE_string("model_set", "step0.08-faces", "Registered model set whose reconstruction is corrected.")
flags.DEFINE_list("grids", ["1", "2", "3", "4", "8"], "Thumbnail sizes g (g x g pixels, 3 colours).")
flags.DEFINE_list("steps", ["8", "16", "24"], "Quantizer steps (8-bit levels) of the coded thumbnails.")
flags.DEFINE_string("output_json", None, "Result JSON; default: runs/thumbnail_oracle/<time>/thumbnail_oracle.json.")
runs.define_flags(trainer=False)


def low_pass(images: np.ndarray, grid: int, levels: bool = False) -> np.ndarray:
    """Area-average to grid x grid (rounded to 8-bit levels if ``levels``: a thumbnail as sent), bilinear back to
    the image size (float32)."""
    small = tf.image.resize(tf.cast(images, tf.float32), (grid, grid), method="area")
    if levels:
        small = tf.round(small)
    return tf.image.resize(small, images.shape[1:3], method="bilinear").numpy()


def mean_psnr(crops: np.ndarray, images: np.ndarray) -> float:
    return float(np.mean(metrics.psnr(crops, images)))


def main(_):
    runs.resolve_outputs(FLAGS, "thumbnail_oracle")
    _, faces = curves.lfw_pair_faces(FLAGS.lfw_dir, [int(f) for f in FLAGS.folds])
    count = FLAGS.max_images or len(faces.paths)
    crops = faces.crops[:count]
    codec = ScalableCodec.from_pretrained(FLAGS.model_set)
    x_hat = codec.analyse(crops, faces.features[:count]).predictions.reconstruction
    training = None
    if FLAGS.identities:
        paths = [p for p, _ in folders.list_images(FLAGS.lfw_dir, folders.read_identity_list(FLAGS.identities))]
        training = folders.load_faces(FLAGS.lfw_dir, paths, "mtcnn").crops
    rows = []
    for grid in map(int, FLAGS.grids):
        thumbnail = low_pass(crops, grid, levels=True)
        corrected = x_hat.astype(np.float32) - low_pass(x_hat, grid) + thumbnail
        rows.append(
            {
                "grid": grid,
                "raw_thumbnail_bits": 24 * grid * grid,
                "psnr_reconstruction_with_thumbnail": mean_psnr(crops, to_uint8(corrected)),
                "psnr_thumbnail_alone": mean_psnr(crops, to_uint8(thumbnail)),
            }
        )
        for step in [] if training is None else map(float, FLAGS.steps):
            coded = Thumbnail.fit(training, grid, step)
            decoded = coded.dequantize(coded.quantize(crops))
            rows.append(
                {
                    "grid": grid,
                    "step": step,
                    "ideal_bits": float(coded.entropy_bits(crops).mean()),
                    "psnr_reconstruction_with_thumbnail": mean_psnr(crops, coded.apply(x_hat, decoded)),
                }
            )
    result = {
        "num_images": count,
        "model_set": codec.model_set.name,
        "fitted_on": FLAGS.identities,
        "psnr_reconstruction": mean_psnr(crops, x_hat),
        "rows": rows,
    }
    curves.write_json(FLAGS.output_json, result)
    print(result)


def to_uint8(images: np.ndarray) -> np.ndarray:
    return np.clip(np.round(images), 0, 255).astype(np.uint8)


if __name__ == "__main__":
    app.run(main)
