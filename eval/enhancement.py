"""Enhancement layer on LFW (folds 1-4 crops): per codec and rate, bits per face of the enhancement layer
(incl. its 4-byte min/max field) and PSNR of the final reconstruction; the learned codec's coded size against
its entropy model's estimate; plain anchors (JPEG, JPEG2000, end-to-end learned on the crops, no base layer).

  python eval/enhancement.py --lfw_dir ../shared/data/lfw --reconstructor checkpoints/reconstructor \
      --learned checkpoints/enhancement/residual_l0.01,... --learned_original checkpoints/enhancement/original_l0.01,... \
      --output_json eval/results/enhancement.json --plot eval/results/enhancement.png

``--accuracy`` also runs FaceNet on every final reconstruction and writes LFW verification accuracy per point
(key ``rate_accuracy_points``, readable by eval/rate_accuracy.py --extra_points).
"""

import pathlib

import numpy as np
from absl import app, flags

from sfc_tf import base_layer, data, evaluation, facenet, metrics, residuals
from sfc_tf.enhancement import ResidualCodec, evaluation as enhancement_evaluation, make_codec

FLAGS = flags.FLAGS
flags.DEFINE_string("lfw_dir", None, "LFW root.", required=True)
flags.DEFINE_string("pairs", None, "pairs.txt; default <lfw_dir>/pairs.txt.")
flags.DEFINE_list("folds", ["1", "2", "3", "4"], "1-based folds whose images are coded.")
flags.DEFINE_enum("align", "mtcnn", ["mtcnn", "center"], "Face crop.")
flags.DEFINE_string("base_layer", "checkpoints/base_layer/step_0.08.npz", "Base-layer model.")
flags.DEFINE_string("reconstructor", "checkpoints/reconstructor", "Reconstructor directory or checkpoint prefix.")
flags.DEFINE_list("jpeg_qualities", ["5", "20", "50", "80", "95"], "JPEG qualities (residual and anchor).")
flags.DEFINE_list("jpeg2000_ratios", ["200", "100", "50", "25", "12"], "JPEG2000 compression ratios.")
flags.DEFINE_list("learned", [], "Learned enhancement checkpoints trained on residuals.")
flags.DEFINE_list("learned_original", [], "Learned checkpoints trained on the crops (end-to-end anchor).")
flags.DEFINE_bool("image_anchors", True, "Also code the crops with JPEG/JPEG2000 directly.")
flags.DEFINE_integer("limit", 0, "Code only the first N images (quick runs); 0 = all.")
flags.DEFINE_bool("accuracy", False, "LFW verification accuracy of every final reconstruction (FaceNet).")
flags.DEFINE_string("output_json", "eval/results/enhancement.json", "Result JSON.")
flags.DEFINE_string("plot", None, "PNG of PSNR against bits per face.")


def main(_):
    extractor = facenet.FeatureExtractor()
    pairs, faces = data.load_pair_faces(FLAGS.lfw_dir, FLAGS.pairs or f"{FLAGS.lfw_dir}/pairs.txt",
                                        [int(f) for f in FLAGS.folds], FLAGS.align, extractor,
                                        f"{facenet.DEFAULT_KEY}-fixed")
    count = FLAGS.limit or len(faces.crops)
    crops, features = faces.crops[:count], faces.features[:count]
    base = base_layer.load(FLAGS.base_layer)
    base_records = base.encode(features)
    base_bits = float(np.mean([8 * len(r) for r in base_records]))
    model = residuals.load_reconstructor(FLAGS.reconstructor)
    recon = residuals.reconstruct(model, base.decode(base_records), progress=True)
    residual = np.stack([residuals.residual(c, r) for c, r in zip(crops, recon)])
    points = [{"codec": "none", "input": "residual", "parameter": None, "enhancement_bits_per_face": 0.0,
               "base_bits_per_face": base_bits, "bits_per_face": base_bits,
               "bpp": base_bits / crops[0, ..., 0].size, "psnr": float(np.mean(metrics.psnr(crops, recon))),
               "decoded": recon}]
    residual_codecs = [make_codec("jpeg", q) for q in FLAGS.jpeg_qualities]
    residual_codecs += [make_codec("jpeg2000", r) for r in FLAGS.jpeg2000_ratios]
    residual_codecs += [make_codec("learned", d) for d in FLAGS.learned]
    for codec in residual_codecs:
        point, final = enhancement_evaluation.residual_point(ResidualCodec(codec), crops, recon, residual, base_bits)
        points.append({**point, "decoded": final})
    anchors = [make_codec("learned", d) for d in FLAGS.learned_original]
    if FLAGS.image_anchors:
        anchors += [make_codec("jpeg", q) for q in FLAGS.jpeg_qualities]
        anchors += [make_codec("jpeg2000", r) for r in FLAGS.jpeg2000_ratios]
    for codec in anchors:
        point, decoded = enhancement_evaluation.image_point(codec, crops)
        points.append({**point, "decoded": decoded})
    for point in points:
        if point["codec"] == "learned":
            point["parameter"] = pathlib.Path(point["parameter"]).name
        decoded = point.pop("decoded")
        if FLAGS.accuracy and count == len(faces.crops):
            index = faces.index()
            point["accuracy"] = metrics.evaluate_pairs(pairs, index, extractor(decoded)).accuracy
        print(f"{point['input']:>8} {point['codec']:>9} {point['parameter']!s:>22}: "
              f"{point['bits_per_face']:9.1f} bits/face, PSNR {point['psnr']:6.2f} dB"
              + (f", coded/estimated latent bits {1 + point['rate_estimate']['relative_difference']:.4f}"
                 if "rate_estimate" in point else ""))
    payload = {"images": count, "folds": FLAGS.folds, "align": FLAGS.align, "base_layer": FLAGS.base_layer,
               "base_layer_id": base.model_id, "reconstructor": FLAGS.reconstructor,
               "reconstructor_id": str(getattr(model, "model_id", "")), "points": points}
    if FLAGS.accuracy:
        payload["rate_accuracy_points"] = [
            {**p, "codec": f"{p['codec']}+base" if p["input"] == "residual" else p["codec"]}
            for p in points if "accuracy" in p]
    evaluation.write_json(FLAGS.output_json, payload)
    if FLAGS.plot:
        curves = [{**p, "codec": f"{p['codec']} ({p['input']})"} for p in points if p["codec"] != "none"]
        evaluation.plot_curves(curves, "bits_per_face", "psnr", FLAGS.plot,
                               f"LFW folds {','.join(FLAGS.folds)} ({count} crops): PSNR vs rate", ylabel="PSNR (dB)")


if __name__ == "__main__":
    app.run(main)
