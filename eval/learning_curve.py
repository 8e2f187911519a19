"""Learning curve of a learned codec in training: every weight snapshot of a run (``train/train_face_codec.py
--snapshot_every``) coded on the first LFW folds 1-4 crops through the real codec and container, with its BD-rate
against anchor curves of rate-distortion JSONs (e.g. AV1 payloads and AVIF files of eval/rate_distortion.py).

A conditional run is scored as the scalable stream (base layer + the snapshot coding every face given the default
model set's reconstruction: whole .sfc files); an end-to-end run as its own payloads. Snapshots already in the
output JSON are kept, so the script can be re-run as the training goes on. ``--init_from`` scores the checkpoint
a fine-tune started from as its step 0, and ``--steps_before`` counts the steps that checkpoint had, so a curve
continued over several runs reads in total steps.

  python eval/learning_curve.py --lfw_dir ../shared/data/lfw --run runs/hp_conditional --kind conditional \\
      --lmbdas 0.0005,0.00125,0.003125,0.0078,0.0195,0.0488,0.122,0.305 \\
      --anchors "eval/results/rate_distortion_modern_512.json:av1 (payload)" \\
      --output_json eval/results/learning_curve_conditional.json --plot eval/results/learning_curve.png
"""

import json
import pathlib
import tempfile

import numpy as np
from absl import app, flags

from sfc_tf import bitstream, metrics, runs
from sfc_tf.base import facenet
from sfc_tf.bitstream import RECONSTRUCTION
from sfc_tf.codec import ScalableCodec, enhancement_layer
from sfc_tf.enhancement import hyperprior, layer, learned
from sfc_tf.evaluation import curves

FLAGS = flags.FLAGS
flags.DEFINE_string("lfw_dir", None, "LFW root.", required=True)
flags.DEFINE_list("folds", ["1", "2", "3", "4"], "1-based folds.")
flags.DEFINE_integer("max_images", 512, "The first N crops of the folds.")
flags.DEFINE_string("run", None, "Training run folder (with snapshots/step_N).", required=True)
flags.DEFINE_enum("kind", "conditional", ["conditional", "original"], "The run's kind.")
flags.DEFINE_list("lmbdas", None, "The run's --lmbdas.", required=True)
flags.DEFINE_list("anchors", [], "JSON:curve pairs whose curves each snapshot is compared with (BD-rate).")
flags.DEFINE_string("init_from", None, "The run's --init_from checkpoint (a fine-tune's start), scored as step 0.")
flags.DEFINE_integer("steps_before", 0, "Training steps the --init_from checkpoint had (added to the run's steps).")
flags.DEFINE_string(
    "output_json", None, "Result JSON (extended on each run); default: runs/learning_curve/<time>/learning_curve.json."
)
runs.define_flags(trainer=False)
flags.DEFINE_string("plot", None, "PNG: BD-rate against training step, one line per anchor.")


def snapshot_points(model, crops: np.ndarray, analysis, codec: ScalableCodec) -> list[dict]:
    """Rate and PSNR of every trained quality of ``model`` (its weights loaded), coded as users code."""
    points = []
    with tempfile.TemporaryDirectory() as tmp:
        learned.save(model, tmp)
        for rate in range(model.num_rates):
            quality = 2 * rate
            image_codec = learned.load_codec((tmp, quality))
            if FLAGS.kind == "conditional":
                prediction = analysis.predictions(RECONSTRUCTION)
                coded = layer.encode(image_codec, RECONSTRUCTION, crops, prediction)
                files = [
                    bitstream.pack(
                        bitstream.SfcFile(
                            codec.align, codec.model_set.id, base, enhancement_layer(image_codec, RECONSTRUCTION, c)
                        )
                    )
                    for base, c in zip(analysis.base_payloads, coded)
                ]
                decoded = layer.decode(image_codec, RECONSTRUCTION, coded, prediction)
                bits = np.array([8.0 * len(f) for f in files])
            else:
                decoded, bits = curves.code_images(image_codec, crops, progress=False)
            psnr = np.minimum(metrics.psnr(crops, decoded), metrics.PSNR_CEILING_DB)
            points.append({"quality": quality + 1, "bits_per_face": float(bits.mean()), "psnr": float(psnr.mean())})
        learned.unload_all()
    return points


def anchor_points() -> list[dict]:
    points = []
    for spec in FLAGS.anchors:
        path, curve = spec.split(":", 1)
        found = [p for p in json.loads(pathlib.Path(path).read_text())["points"] if p["curve"] == curve]
        if not found:
            raise app.UsageError(f"{path} has no curve {curve!r}")
        points += found
    return points


def main(_):
    runs.resolve_outputs(FLAGS, "learning_curve", extend=True)
    out = pathlib.Path(FLAGS.output_json)
    result = json.loads(out.read_text()) if out.is_file() else {"snapshots": {}}
    pairs, faces = curves.lfw_pair_faces(
        FLAGS.lfw_dir, [int(f) for f in FLAGS.folds], "mtcnn", None, facenet.FeatureExtractor()
    )
    crops = faces.crops[: FLAGS.max_images]
    codec = ScalableCodec.from_pretrained(align="mtcnn")
    analysis = codec.analyse(crops, faces.features[: FLAGS.max_images])
    if FLAGS.init_from:  # the run's architecture is its start's
        model = learned.build(json.loads(pathlib.Path(FLAGS.init_from, learned.META_FILE).read_text()))
    else:
        lmbdas = [float(v) for v in FLAGS.lmbdas]
        model = hyperprior.HyperpriorFaceCodec(lmbdas, conditional=FLAGS.kind == "conditional")
    starts = [(0, FLAGS.init_from, learned.restore_weights)] if FLAGS.init_from else []
    for snapshot in sorted(pathlib.Path(FLAGS.run, "snapshots").glob("step_*")):
        starts.append((int(snapshot.name.split("_")[1]), snapshot, learned.read_weights))
    for run_step, weights, read in starts:
        step = str(FLAGS.steps_before + run_step)
        if step in result["snapshots"]:
            continue
        read(model, weights)
        result["snapshots"][step] = snapshot_points(model, crops, analysis, codec)
        print(
            f"step {step}: "
            + ", ".join(f"{p['bits_per_face']:.0f} b {p['psnr']:.2f} dB" for p in result["snapshots"][step])
        )
    anchors = anchor_points()
    curve = f"{FLAGS.kind} snapshot"
    for step, points in result["snapshots"].items():
        rows = curves.bd_rows(
            [{**p, "curve": curve} for p in points] + anchors,
            [(curve, a.split(":", 1)[1]) for a in FLAGS.anchors],
        )
        result.setdefault("bd", {})[step] = rows
    result.update(run=FLAGS.run, kind=FLAGS.kind, lmbdas=FLAGS.lmbdas, num_images=len(crops), anchors=FLAGS.anchors)
    result.update(init_from=FLAGS.init_from, steps_before=FLAGS.steps_before)
    curves.write_json(out, result)
    if FLAGS.plot:
        curves.plot_learning_curve(result, FLAGS.plot)


if __name__ == "__main__":
    app.run(main)
