"""BD-rate / BD-PSNR between curves of two rate-distortion JSONs (eval/rate_distortion.py), e.g. the default model
set's stream against the paper set's, measured in separate runs on the same crops.

  python eval/compare_curves.py \\
      --test "eval/results/rate_distortion_learned.json:base+bls2017-residual-faces (auto)" \\
      --anchor "eval/results/rate_distortion_learned_paper_set.json:base+bls2017-residual (auto)" \\
      --output_json eval/results/compare_learned_auto.json [--plot eval/results/compare_learned_auto.png]
"""

import json

from absl import app, flags

from sfc_tf import runs
from sfc_tf.evaluation import curves

FLAGS = flags.FLAGS
flags.DEFINE_multi_string("test", None, "JSON:CURVE of a proposed curve (repeatable, paired with --anchor).")
flags.DEFINE_multi_string("anchor", None, "JSON:CURVE of its anchor.")
flags.DEFINE_string("output_json", None, "Result JSON; default: runs/compare_curves/<time>/compare_curves.json.")
flags.DEFINE_string("plot", None, "PNG of every compared curve (PSNR and MS-SSIM against bits per face).")
runs.define_flags(trainer=False)


def curve(spec: str) -> tuple[str, list[dict], int]:
    """(label, points, images) of ``path:curve``; the label names the file so equal curve names stay apart."""
    path, _, name = spec.partition(":")
    result = json.loads(open(path).read())
    points = [p for p in result["points"] if p["curve"] == name]
    if not points:
        raise app.UsageError(f"no curve {name!r} in {path}")
    return spec, [{**p, "curve": spec} for p in points], result["num_images"]


def main(_):
    runs.resolve_outputs(FLAGS, "compare_curves")
    if not FLAGS.test or len(FLAGS.test) != len(FLAGS.anchor or []):
        raise app.UsageError("give --test and --anchor in pairs")
    rows, plotted = [], {}
    for test, anchor in zip(FLAGS.test, FLAGS.anchor):
        (a, a_points, a_images), (b, b_points, b_images) = curve(test), curve(anchor)
        if a_images != b_images:
            raise app.UsageError(f"{test} is on {a_images} images, {anchor} on {b_images}")
        rows += curves.bd_rows(a_points + b_points, [(a, b)])
        plotted |= {a: a_points, b: b_points}
    result = {"bd_method": "bjontegaard package, akima", "bd": rows} | ({"plot": FLAGS.plot} if FLAGS.plot else {})
    curves.write_json(FLAGS.output_json, result)
    for row in rows:
        print(row)
    if FLAGS.plot:
        points = [{**p, "curve": p["curve"].partition(":")[2]} for spec_points in plotted.values() for p in spec_points]
        curves.plot_rate_distortion(points, FLAGS.plot, f"Rate-distortion on {a_images} LFW crops")


if __name__ == "__main__":
    app.run(main)
