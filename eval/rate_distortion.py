"""Rate-distortion on LFW face crops (the paper's Figs. 4-5) and the enhancement layer's evidence.

Proposed: base layer (feature) + reconstruction + enhancement layer coding the min-max normalised residual with
JPEG, JPEG2000 or the learned codec; total = base-layer record + 4 bytes of min/max + enhancement payload,
all real bytes. Anchors coding the crop directly: JPEG, JPEG2000, and the same learned architecture trained
on the crops (plain end-to-end, ``original_l*`` checkpoints). Per point: total and enhancement bits per face,
PSNR (mean of per-face PSNR, each capped at 60 dB so losslessly decoded faces stay finite) and MS-SSIM of the
final decoded crops; for learned codecs, the coded latent bits against the entropy
model's estimate. BD-rate / BD-PSNR of each proposed curve against its anchors.

  python eval/rate_distortion.py --lfw_dir ../shared/data/lfw --folds 1,2,3,4 \
      --output_json eval/results/rate_distortion.json --plot eval/results/rate_distortion.png

The proposed stream's verification accuracy is its base layer's at every enhancement rate (features of the
original crop); the JSON's ``rate_accuracy_points`` carry it for eval/rate_accuracy.py.
"""

import pathlib

import numpy as np
import tensorflow as tf
from absl import app, flags

from sfc_tf import base_layer, data, evaluation, facenet, metrics, residuals
from sfc_tf.enhancement import ResidualCodec, evaluation as enhancement_evaluation, make_codec

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
flags.DEFINE_string("plot", None, "PNG plot (PSNR and MS-SSIM against bits per face).")

# tf.image.ssim_multiscale's default 5 scales need sides > 160; 4 scales with its first 4 weights.
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363)
# (proposed curve, anchor curve) pairs of the BD table: each proposed scheme against the anchor coding with
# the same codec (the paper's pairing), and against the plain end-to-end learned codec.
BD_PAIRS = (("base+jpeg", "jpeg"), ("base+jpeg2000", "jpeg2000"), ("base+learned", "learned"),
            ("base+learned", "jpeg2000"), ("base+jpeg", "learned"), ("base+jpeg2000", "learned"),
            ("learned", "jpeg2000"))


def ms_ssim(originals: np.ndarray, decoded: np.ndarray) -> float:
    values = tf.image.ssim_multiscale(tf.constant(originals), tf.constant(decoded), 255,
                                      power_factors=MS_SSIM_WEIGHTS).numpy()
    return float(np.mean(values))


def learned_codecs(prefix: str) -> list:
    return [make_codec("learned", str(d)) for d in sorted(pathlib.Path(FLAGS.learned_dir).glob(f"{prefix}_l*"))
            if (d / "meta.json").is_file()]


def curve_name(point: dict) -> str:
    return f"base+{point['codec']}" if point["input"] == "residual" else point["codec"]


MIN_RATE_SPAN = 1.5      # a curve must cover at least this max/min rate ratio to enter a BD comparison


def bd_table(points: list[dict]) -> list[dict]:
    curves = {}
    for p in points:
        curves.setdefault(p["curve"], []).append((p["bits_per_face"], p["psnr"]))
    rows = []
    for test, anchor in BD_PAIRS:
        if len(curves.get(test, [])) >= 4 and len(curves.get(anchor, [])) >= 4:
            (ra, pa), (rt, pt) = (np.array(sorted(curves[c])).T for c in (anchor, test))
            row = {"test": test, "anchor": anchor}
            narrow = [f"{c} spans only x{r.max() / r.min():.2f} in rate" for c, r in ((anchor, ra), (test, rt))
                      if r.max() / r.min() < MIN_RATE_SPAN]
            if narrow:      # a cubic through points at one rate is not a curve: no BD figure at all
                rows.append({**row, "bd_rate_error": "; ".join(narrow), "bd_psnr_error": "; ".join(narrow)})
                continue
            for key, error_key, measure in (("bd_rate_percent", "bd_rate_error", metrics.bd_rate),
                                            ("bd_psnr_db", "bd_psnr_error", metrics.bd_psnr)):
                try:        # each needs overlap on its own axis: BD-PSNR can exist where BD-rate cannot
                    row[key] = measure(ra, pa, rt, pt)
                except ValueError as exc:
                    row[error_key] = str(exc)
            rows.append(row)
    return rows


def plot(points: list[dict], path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for name in dict.fromkeys(p["curve"] for p in points):
        curve = sorted((p for p in points if p["curve"] == name), key=lambda p: p["bits_per_face"])
        style = "-o" if name.startswith("base+") else "--s"
        for axis, key in zip(axes, ("psnr", "ms_ssim")):
            axis.plot([p["bits_per_face"] for p in curve], [p[key] for p in curve], style, ms=4, label=name)
    for axis, label in zip(axes, ("PSNR (dB)", "MS-SSIM")):
        axis.set_xscale("log")
        axis.set_xlabel("bits per face (base + enhancement)")
        axis.set_ylabel(label)
        axis.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main(_):
    extractor = facenet.FeatureExtractor()
    pairs, faces = data.load_pair_faces(FLAGS.lfw_dir, FLAGS.pairs or f"{FLAGS.lfw_dir}/pairs.txt",
                                        [int(f) for f in FLAGS.folds] if FLAGS.folds else None, FLAGS.align,
                                        extractor, f"{facenet.DEFAULT_KEY}-fixed")
    count = FLAGS.max_images or len(faces.paths)
    crops = faces.crops[:count]
    model = base_layer.load(FLAGS.base_layer)
    records = model.encode(faces.features)        # every pair image: the base layer's accuracy needs them all
    decoded_features = model.decode(records)
    base_bits = float(np.mean([8 * len(r) for r in records[:count]]))
    reconstructor = residuals.load_reconstructor(FLAGS.reconstructor)
    recon = residuals.reconstruct(reconstructor, decoded_features[:count], progress=True)
    residual = np.stack([residuals.residual(c, r) for c, r in zip(crops, recon)])
    jpeg = [make_codec("jpeg", q) for q in FLAGS.jpeg_qualities]
    jpeg2000 = [make_codec("jpeg2000", r) for r in FLAGS.jpeg2000_ratios]
    points = []
    for codec in jpeg + jpeg2000 + learned_codecs("residual"):
        point, final = enhancement_evaluation.residual_point(ResidualCodec(codec), crops, recon, residual, base_bits)
        points.append({**point, "ms_ssim": ms_ssim(crops, final)})
    for codec in jpeg + jpeg2000 + learned_codecs("original"):
        point, decoded = enhancement_evaluation.image_point(codec, crops)
        points.append({**point, "ms_ssim": ms_ssim(crops, decoded)})
    for point in points:
        point["curve"] = curve_name(point)
        if point["codec"] == "learned":
            point["parameter"] = pathlib.Path(point["parameter"]).name
    # centred on the training-identity feature mean (the model's PCA mean), as verify_lfw.py and rate_accuracy.py
    base_accuracy = metrics.evaluate_pairs(pairs, faces.index(), decoded_features, mean=model.mean)
    result = {
        "num_images": count, "align": FLAGS.align, "base_layer": FLAGS.base_layer, "base_layer_id": model.model_id,
        "reconstructor": FLAGS.reconstructor, "reconstructor_id": str(getattr(reconstructor, "model_id", "")),
        "base_bits_per_face": base_bits, "psnr_ceiling_db": metrics.PSNR_CEILING_DB,
        "reconstruction_only": {"psnr": metrics.mean_psnr(crops, recon)[0], "ms_ssim": ms_ssim(crops, recon)},
        "points": points, "bd": bd_table(points),
        "rate_accuracy_points": [{"codec": p["curve"], "parameter": p["parameter"],
                                  "bits_per_face": p["bits_per_face"], "accuracy": base_accuracy.accuracy,
                                  "accuracy_std": base_accuracy.accuracy_std}
                                 for p in points if p["input"] == "residual"],
    }
    evaluation.write_json(FLAGS.output_json, result)
    for p in points:
        estimate = p.get("rate_estimate")
        print(f"{p['curve']:>14} {p['parameter']!s:>16}: {p['bits_per_face']:9.1f} bits, PSNR {p['psnr']:.2f} dB, "
              f"MS-SSIM {p['ms_ssim']:.4f}" + (f", coded/estimated {1 + estimate['relative_difference']:.4f}"
                                               if estimate else ""))
    for row in result["bd"]:
        print(row)
    if FLAGS.plot:
        plot(points, FLAGS.plot, f"Rate-distortion on {count} LFW crops (folds {','.join(FLAGS.folds or ['all'])})")


if __name__ == "__main__":
    app.run(main)
