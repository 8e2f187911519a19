"""Rate-distortion on LFW face crops (the paper's Figs. 4-5): PSNR and MS-SSIM against total bits per face.

Proposed: base layer (feature) + reconstruction + enhancement layer coding the min-max normalised residual with
JPEG, JPEG2000 or the learned codec; total = base-layer record + 4 bytes of min/max + enhancement payload.
Anchors: JPEG and JPEG2000 coding the crop directly, and the same learned architecture trained on the crops
(plain end-to-end), when its checkpoints exist. BD-rate / BD-PSNR of each proposed curve against its anchors.

  python eval/rate_distortion.py --lfw_dir ../shared/data/lfw --folds 1,2,3,4 \
      --output_json eval/results/rate_distortion.json --plot eval/results/rate_distortion.png
"""

import pathlib

import numpy as np
import tensorflow as tf
from absl import app, flags

from sfc_tf import base_layer, data, evaluation, facenet, metrics, reconstructor, residuals
from sfc_tf.enhancement import make_codec, minmax

FLAGS = flags.FLAGS
flags.DEFINE_string("lfw_dir", None, "LFW root.", required=True)
flags.DEFINE_string("pairs", None, "pairs.txt; default <lfw_dir>/pairs.txt.")
flags.DEFINE_list("folds", None, "1-based folds; default: every fold the header declares.")
flags.DEFINE_enum("align", "mtcnn", ["mtcnn", "center"], "Face crop.")
flags.DEFINE_integer("max_images", 0, "Evaluate on the first N images only (0: all).")
flags.DEFINE_string("base_layer", "checkpoints/base_layer/step_0.08.npz", "Base-layer model.")
flags.DEFINE_string("reconstructor", "checkpoints/reconstructor", "Reconstructor checkpoint.")
flags.DEFINE_string("learned_dir", "checkpoints/enhancement", "residual_l*/ and original_l*/ learned models.")
flags.DEFINE_list("jpeg_qualities", ["5", "10", "20", "40", "60", "80", "90"], "JPEG qualities.")
flags.DEFINE_list("jpeg2000_ratios", ["200", "100", "50", "25", "12", "6"], "JPEG2000 compression ratios.")
flags.DEFINE_string("output_json", None, "Result JSON.", required=True)
flags.DEFINE_string("plot", None, "PNG plot (PSNR against bits per face).")

# tf.image.ssim_multiscale's default 5 scales need sides > 160; 4 scales with its first 4 weights.
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363)


def quality(originals: np.ndarray, decoded: np.ndarray) -> dict:
    ms_ssim = tf.image.ssim_multiscale(tf.constant(originals), tf.constant(decoded), 255,
                                       power_factors=MS_SSIM_WEIGHTS).numpy()
    return {"psnr": float(np.mean(metrics.psnr(originals, decoded))), "ms_ssim": float(np.mean(ms_ssim))}


def proposed_points(crops, base_bits, recon, codecs) -> list[dict]:
    images, spans = residuals.residual_images(crops, recon)
    points = []
    for name, codec in codecs:
        decoded, bits = evaluation.code_images(codec, images)
        final = np.stack([minmax.add_residual(r, minmax.denormalise(d, s)) for r, d, s in zip(recon, decoded, spans)])
        total = base_bits + 8 * minmax.NUM_BYTES + bits
        points.append({"codec": f"base+{name}", "parameter": codec.parameter, "bits_per_face": float(total.mean()),
                       "enhancement_bits_per_face": float(bits.mean()), **quality(crops, final)})
    return points


def anchor_points(crops, codecs) -> list[dict]:
    points = []
    for name, codec in codecs:
        decoded, bits = evaluation.code_images(codec, crops)
        points.append({"codec": name, "parameter": codec.parameter, "bits_per_face": float(bits.mean()),
                       **quality(crops, decoded)})
    return points


def learned_codecs(prefix: str) -> list:
    return [("learned" if prefix == "residual" else "learned_e2e", make_codec("learned", d))
            for d in sorted(pathlib.Path(FLAGS.learned_dir).glob(f"{prefix}_l*")) if (d / "meta.json").is_file()]


def bd_table(points: list[dict]) -> list[dict]:
    curves = {}
    for p in points:
        curves.setdefault(p["codec"], []).append((p["bits_per_face"], p["psnr"]))
    rows = []
    for test, anchor in (("base+jpeg", "jpeg"), ("base+jpeg2000", "jpeg2000"), ("base+learned", "jpeg2000"),
                         ("base+learned", "learned_e2e"), ("learned_e2e", "jpeg2000")):
        if len(curves.get(test, [])) >= 4 and len(curves.get(anchor, [])) >= 4:
            (ra, pa), (rt, pt) = (np.array(sorted(curves[c])).T for c in (anchor, test))
            try:
                rows.append({"test": test, "anchor": anchor, "bd_rate_percent": metrics.bd_rate(ra, pa, rt, pt),
                             "bd_psnr_db": metrics.bd_psnr(ra, pa, rt, pt)})
            except ValueError as exc:
                rows.append({"test": test, "anchor": anchor, "error": str(exc)})
    return rows


def main(_):
    extractor = facenet.FeatureExtractor()
    pairs, faces = data.load_pair_faces(FLAGS.lfw_dir, FLAGS.pairs or f"{FLAGS.lfw_dir}/pairs.txt",
                                        [int(f) for f in FLAGS.folds] if FLAGS.folds else None, FLAGS.align,
                                        extractor, f"{facenet.DEFAULT_KEY}-fixed")
    count = FLAGS.max_images or len(faces.paths)
    crops, features = faces.crops[:count], faces.features[:count]
    model = base_layer.load(FLAGS.base_layer)
    records = model.encode(features)
    base_bits = 8.0 * np.array([len(r) for r in records])
    recon = residuals.reconstruct(reconstructor.load(FLAGS.reconstructor), model.decode(records))
    jpeg = [("jpeg", make_codec("jpeg", q)) for q in FLAGS.jpeg_qualities]
    jpeg2000 = [("jpeg2000", make_codec("jpeg2000", r)) for r in FLAGS.jpeg2000_ratios]
    points = proposed_points(crops, base_bits, recon, jpeg + jpeg2000 + learned_codecs("residual"))
    points += anchor_points(crops, jpeg + jpeg2000 + learned_codecs("original"))
    base_accuracy = metrics.evaluate_pairs(pairs, faces.index(), model.decode(model.encode(faces.features)))
    result = {
        "num_images": count, "align": FLAGS.align, "base_layer": FLAGS.base_layer,
        "base_bits_per_face": float(base_bits.mean()), "reconstruction_only": quality(crops, recon),
        "points": points, "bd": bd_table(points),
        # the proposed stream's analysis accuracy is its base layer's, whatever the enhancement rate
        "rate_accuracy_points": [{"codec": p["codec"], "parameter": p["parameter"], "bits_per_face": p["bits_per_face"],
                                  "accuracy": base_accuracy.accuracy, "accuracy_std": base_accuracy.accuracy_std}
                                 for p in points if p["codec"].startswith("base+")],
    }
    evaluation.write_json(FLAGS.output_json, result)
    for p in points:
        print(f"{p['codec']:>16} {pathlib.Path(str(p['parameter'])).name:>16}: {p['bits_per_face']:9.1f} bits, "
              f"PSNR {p['psnr']:.2f} dB, MS-SSIM {p['ms_ssim']:.4f}")
    for row in result["bd"]:
        print(row)
    if FLAGS.plot:
        evaluation.plot_curves(points, "bits_per_face", "psnr", FLAGS.plot,
                               f"Rate-distortion on {count} LFW crops", ylabel="PSNR (dB)")


if __name__ == "__main__":
    app.run(main)
