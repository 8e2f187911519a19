"""Deep feature reconstruction on LFW: PSNR / SSIM of faces rebuilt from base-layer-decoded features against
the aligned originals, identity preservation, and a grid of originals over reconstructions (the paper's Fig. 3).

  python eval/reconstruction.py --lfw_dir ../shared/data/lfw --folds 1,2,3,4 \
      --output_json eval/results/reconstruction.json --grid_png eval/results/reconstruction_grid.png

accuracy_reconstructed_vs_original: each pair with its first face replaced by the reconstruction (features of
the reconstruction against features of the original second face), and likewise with the second replaced; the
mean of the two (NbNet's type-I protocol), alongside both.
"""

import numpy as np
import tensorflow as tf
from absl import app, flags

from sfc_tf import base_layer, data, evaluation, facenet, metrics, reconstructor, residuals

FLAGS = flags.FLAGS
flags.DEFINE_string("lfw_dir", None, "LFW root.", required=True)
flags.DEFINE_string("pairs", None, "pairs.txt; default <lfw_dir>/pairs.txt.")
flags.DEFINE_list("folds", None, "1-based folds; default: every fold the header declares.")
flags.DEFINE_enum("align", "mtcnn", ["mtcnn", "center"], "Face crop.")
flags.DEFINE_string("base_layer", "checkpoints/base_layer/step_0.08.npz", "Base-layer model to decode through.")
flags.DEFINE_string("reconstructor", "checkpoints/reconstructor", "Reconstructor checkpoint.")
flags.DEFINE_string("output_json", None, "Result JSON.", required=True)
flags.DEFINE_string("grid_png", None, "PNG grid: originals over reconstructions.")
flags.DEFINE_integer("grid_faces", 8, "Faces in the grid.")


def save_grid(originals: np.ndarray, rebuilt: np.ndarray, path: str) -> None:
    from PIL import Image

    grid = np.concatenate([np.concatenate(list(originals), axis=1), np.concatenate(list(rebuilt), axis=1)], axis=0)
    Image.fromarray(grid).save(path)


def main(_):
    extractor = facenet.FeatureExtractor()
    pairs, faces = data.load_pair_faces(FLAGS.lfw_dir, FLAGS.pairs or f"{FLAGS.lfw_dir}/pairs.txt",
                                        [int(f) for f in FLAGS.folds] if FLAGS.folds else None, FLAGS.align,
                                        extractor, f"{facenet.DEFAULT_KEY}-fixed")
    model = base_layer.load(FLAGS.base_layer)
    records = model.encode(faces.features)
    decoded = model.decode(records)
    rebuilt = residuals.reconstruct(reconstructor.load(FLAGS.reconstructor), decoded)
    rebuilt_features = extractor(rebuilt)
    index = faces.index()
    first = metrics.evaluate_pairs(pairs, index, rebuilt_features, faces.features)
    second = metrics.evaluate_pairs(pairs, index, faces.features, rebuilt_features)
    ssim = tf.image.ssim(tf.constant(faces.crops), tf.constant(rebuilt), max_val=255).numpy()
    psnr = metrics.psnr(faces.crops, rebuilt)
    result = {
        "psnr": float(np.mean(psnr)), "psnr_std": float(np.std(psnr)),
        "ssim": float(np.mean(ssim)), "ssim_std": float(np.std(ssim)),
        "accuracy_reconstructed_vs_original": (first.accuracy + second.accuracy) / 2,
        "accuracy_reconstructed_first": first.accuracy, "accuracy_reconstructed_second": second.accuracy,
        "accuracy_original": metrics.evaluate_pairs(pairs, index, faces.features).accuracy,
        "accuracy_reconstructed_both": metrics.evaluate_pairs(pairs, index, rebuilt_features).accuracy,
        "base_layer": FLAGS.base_layer, "base_bits_per_face": float(8 * np.mean([len(r) for r in records])),
        "reconstructor": FLAGS.reconstructor, "num_images": len(faces.paths), "num_pairs": len(pairs),
    }
    evaluation.write_json(FLAGS.output_json, result)
    print({k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()})
    if FLAGS.grid_png:
        chosen = np.linspace(0, len(faces.paths) - 1, FLAGS.grid_faces).astype(int)
        save_grid(faces.crops[chosen], rebuilt[chosen], FLAGS.grid_png)


if __name__ == "__main__":
    app.run(main)
