"""Rate-distortion on LFW face crops (the paper's Figs. 4-5), measured on the path users run.

The scalable stream: ``ScalableCodec.encode_analysis`` writes the .sfc files, every byte of each file is counted,
``ScalableCodec.decode_many`` decodes them again. Curves of the stream:
  base+<codec> (paper)   the paper's enhancement layer: min-max(x - x_hat) of the reconstruction (the paper's JPEG is
                         ``jpeg-file``; ``jpeg`` is headerless, its tables implied by the quality)
  base+<codec> (auto)    the default: per face, the best of the codec's prediction modes (none, mean face,
                         MMSE prediction; for learned families their direct partner and their own mode)
  base+<family> (<mode>) a conditional family coding every face given its own prediction (``--conditional_families``)
Anchors code the crop directly (no base layer) as users store it: a JPEG file (the paper's), a J2K codestream, a
learned payload, and the files of the modern codecs (``--anchors``, ``sfc_tf.evaluation.anchors``): WebP, AVIF (4:4:4
and 4:2:0 at libavif's default speed 6, and 4:4:4 at ``--avif_slow_speed``), JPEG XL, HEIC. A format with a container
gives a second curve named by the codec inside, "av1 (payload)", "vp8 (payload)", "hevc (payload)", whose rate is
that codec's bitstream without the container (an AVIF's AV1 data without its ISOBMFF boxes, a WebP's VP8 frame
without RIFF, a HEIC's HEVC NAL units and parameter sets). Per point: bits per
face (whole files; payloads in a second column), PSNR (mean of per-face PSNR, each capped at 60 dB), MS-SSIM, and
the modes chosen. BD-rate / BD-PSNR with the ``bjontegaard`` package.

  python eval/rate_distortion.py --lfw_dir ../shared/data/lfw --folds 1,2,3,4 \\
      --output_json eval/results/rate_distortion.json --plot eval/results/rate_distortion.png

The stream's verification accuracy is its base layer's at every enhancement rate (features of the original crop);
the JSON's ``rate_accuracy_points`` carry it for eval/rate_accuracy.py.
"""

import json
import pathlib
import sys
import time

import numpy as np
from absl import app, flags

from sfc_tf import metrics, runs, zoo
from sfc_tf.base import facenet
from sfc_tf.bitstream import ALIGNMENTS, MEAN_FACE, MMSE
from sfc_tf.codec import ScalableCodec
from sfc_tf.enhancement import learned
from sfc_tf.enhancement.registry import make_codec
from sfc_tf.evaluation import anchors, curves

FLAGS = flags.FLAGS
flags.DEFINE_string("lfw_dir", None, "LFW root (not with --merge).")
flags.DEFINE_string("pairs", None, "pairs.txt; default <lfw_dir>/pairs.txt.")
flags.DEFINE_list("folds", ["1", "2", "3", "4"], "1-based folds.")
flags.DEFINE_enum("align", "mtcnn", ALIGNMENTS, "Face crop.")
flags.DEFINE_integer("max_images", 0, "Evaluate on the first N images only (0: all).")
flags.DEFINE_string("model_set", None, "Registered model set (default: the registry's default).")
flags.DEFINE_list("jpeg_qualities", ["5", "10", "20", "40", "60", "80", "90"], "JPEG qualities.")
flags.DEFINE_list("jpeg2000_ratios", ["200", "100", "50", "25", "12", "6"], "JPEG2000 compression ratios.")
flags.DEFINE_list(
    "anchors",
    ["webp", "avif", "jpegxl", "heic"],
    "Modern codecs coding the crop directly, as files and (with a container) as payloads: webp, avif, jpegxl, heic "
    "(heic needs pillow-heif, an evaluation extra; skipped with a note when missing).",
)
flags.DEFINE_list("webp_qualities", ["0", "5", "15", "30", "50", "70", "85", "95"], "WebP qualities.")
flags.DEFINE_list("avif_qualities", ["5", "10", "20", "30", "40", "50", "60", "70"], "AVIF qualities (libavif).")
flags.DEFINE_list("avif_pixel_formats", ["yuv444", "yuv420"], "AVIF chroma formats at the default speed (6).")
flags.DEFINE_integer("avif_slow_speed", 2, "libavif speed of the slow AVIF curve (4:4:4); -1: none.")
flags.DEFINE_list("jpegxl_qualities", ["1", "10", "25", "40", "55", "70", "85", "95"], "JPEG XL qualities (libjxl).")
flags.DEFINE_list("heic_qualities", ["5", "15", "25", "35", "50", "65", "80", "90"], "HEIC qualities (x265).")
flags.DEFINE_list(
    "streams",
    ["jpeg-file", "jpeg", "jpeg2000", "avif", "jpegxl", "webp"],
    "Enhancement codecs coded as the scalable stream's enhancement layer (--modes curves each), at their "
    "--*_qualities; jpeg-file: the paper's JPEG files, jpeg: headerless.",
)
flags.DEFINE_list(
    "learned_families",
    None,
    "Residual-kind learned families: paper and auto curves (their direct partner is the anchor); default: the "
    "registry's default residual family; empty: none.",
)
flags.DEFINE_list(
    "learned_checkpoints",
    [],
    "Further learned checkpoint directories (e.g. a model in training; FOLDER:RATE for a rate of a variable-rate "
    "one), each scored as a direct anchor named by its path and compared with JPEG2000.",
)
flags.DEFINE_string(
    "learned_curve",
    None,
    "Score the --learned_checkpoints as the rates of one curve of this name "
    "(e.g. a family in training), with its BD-rate against JPEG2000 and the registered families.",
)
flags.DEFINE_list("conditional_families", [], "Conditional learned families: auto curves against their partner.")
flags.DEFINE_list(
    "learned_qualities",
    [],
    "Qualities of the learned families to code (default: all; e.g. a variable-rate family's "
    "trained rates, 1,3,...,15).",
)
flags.DEFINE_list(
    "modes",
    ["paper", "auto"],
    "Stream curves: paper (the paper's residual), auto (the per-face "
    "decision) and/or a fixed prediction mode for every face (none, mean_face, mmse, smoothed).",
)
flags.DEFINE_string("shard", "1/1", "k/n: code every n-th image from the k-th, for one of n processes.")
flags.DEFINE_list("merge", [], "JSONs of shards 1/n .. n/n of one run: pool them into --output_json, run nothing.")
flags.DEFINE_string("output_json", None, "Result JSON; default: runs/rate_distortion/<time>/rate_distortion.json.")
runs.define_flags(trainer=False)
flags.DEFINE_string("plot", None, "PNG plot (PSNR and MS-SSIM against bits per face).")
flags.DEFINE_integer("ms_ssim_stride", 1, "MS-SSIM on every n-th face (PSNR always on all; MS-SSIM is slow here).")


def curve_modes(enhancement: str, family: str | None) -> list[tuple[str, str]]:
    """(curve label, mode) per --modes entry for one stream. ``paper`` is the paper's residual of the reconstruction
    (for residual families trained against it); for a conditional family, conditional coding on its own prediction
    for every face, labelled by that prediction."""
    own = None if family is None else zoo.learned_family(family).mode
    if enhancement == "conditional" and own is None:
        raise app.UsageError(f"conditional family {family!r} names no prediction mode in the registry")
    out = {}
    for mode in FLAGS.modes:
        if mode == "paper" and enhancement == "conditional":
            out.setdefault(own, own)
        elif not (mode == "paper" and family is not None and own != "reconstruction"):
            out.setdefault(mode, {"paper": "reconstruction"}.get(mode, mode))
    return list(out.items())


def stream_points(codec, analysis, enhancement: str, qualities, family: str | None, name: str) -> list[dict]:
    return [
        curves.stream_rd_point(
            codec,
            analysis,
            enhancement,
            quality,
            mode,
            family,
            f"base+{name} ({label})",
            ms_ssim_stride=FLAGS.ms_ssim_stride,
        )
        for label, mode in curve_modes(enhancement, family)
        for quality in qualities
    ]


def stream_qualities(name: str) -> list[str]:
    """The --*_qualities (or ratios) flag of an enhancement codec."""
    return {
        "jpeg-file": FLAGS.jpeg_qualities,
        "jpeg": FLAGS.jpeg_qualities,
        "jpeg2000": FLAGS.jpeg2000_ratios,
        "avif": FLAGS.avif_qualities,
        "jpegxl": FLAGS.jpegxl_qualities,
        "webp": FLAGS.webp_qualities,
    }[name]


def own_anchors(name: str, modern: list[str]) -> list[str]:
    """The anchor curves of an enhancement codec's own format: files, and payloads where there is a container."""
    if name in ("jpeg-file", "jpeg"):
        return ["jpeg-file"]
    payloads = {"avif": "av1", "webp": "vp8"}
    return [curve for curve in modern if curve.split()[0] in (name, payloads.get(name))]


def modern_anchors() -> list[tuple[str, str | None, list[str], object]]:
    """(file curve, payload curve or None, qualities, anchor of a quality) of each --anchors codec whose library is
    installed. The payload curves are named by the codec inside the container: AV1, VP8, HEVC."""

    def avif(pixel_format: str, speed: int = 6):
        return lambda quality: anchors.avif(quality, pixel_format, speed)

    kinds = {
        "webp": [("webp", "vp8 (payload)", FLAGS.webp_qualities, anchors.webp_file)],
        "avif": [
            (f"avif{suffix}", f"av1{suffix} (payload)", FLAGS.avif_qualities, avif(pixel_format))
            for pixel_format, suffix in (("yuv444", ""), ("yuv420", " 4:2:0"))
            if pixel_format in FLAGS.avif_pixel_formats
        ],
        "jpegxl": [("jpegxl", None, FLAGS.jpegxl_qualities, anchors.jpegxl_file)],
        "heic": [("heic", "hevc (payload)", FLAGS.heic_qualities, anchors.heic)],
    }
    if FLAGS.avif_slow_speed >= 0:
        suffix = f" speed {FLAGS.avif_slow_speed}"
        kinds["avif"].append(
            (f"avif{suffix}", f"av1{suffix} (payload)", FLAGS.avif_qualities, avif("yuv444", FLAGS.avif_slow_speed))
        )
    out = []
    for kind in FLAGS.anchors:
        if anchors.available(kind):
            out += kinds[kind]
        else:
            print(f"anchor {kind}: its library is not installed (pip install .[eval]); skipped")
    return out


def anchor_curves(anchor) -> list[dict]:
    """Points of the --anchors codecs: files, and payloads where the format has a container. ``anchor``: an anchor
    codec -> its point on this run's crops."""
    points = []
    for name, payload_name, qualities, make in modern_anchors():
        for quality in qualities:
            point = {**anchor(make(int(quality))), "curve": name}
            points.append(point)
            if payload_name is not None:
                points.append({**point, "curve": payload_name, "bits_per_face": point["payload_bits_per_face"]})
    return points


def main(_):
    runs.resolve_outputs(FLAGS, "rate_distortion")
    if FLAGS.merge:
        result = curves.pool_rd_shards([json.loads(pathlib.Path(path).read_text()) for path in FLAGS.merge])
        result["command"] = " ".join(["python", *sys.argv])
        return report(result)
    if not FLAGS.lfw_dir:
        raise app.UsageError("--lfw_dir is required (the LFW root)")
    start = time.time()
    extractor = facenet.FeatureExtractor()
    pairs, faces = curves.lfw_pair_faces(
        FLAGS.lfw_dir, [int(f) for f in FLAGS.folds], FLAGS.align, FLAGS.pairs, extractor
    )
    try:
        selected = curves.shard(FLAGS.shard, FLAGS.max_images or len(faces.paths))
    except ValueError as error:
        raise app.UsageError(str(error)) from None
    crops = faces.crops[selected]
    count = len(crops)
    codec = ScalableCodec.from_pretrained(FLAGS.model_set, align=FLAGS.align)
    analysis = codec.analyse(crops, faces.features[selected])

    def anchor(image_codec):
        return curves.anchor_rd_point(image_codec, crops, ms_ssim_stride=FLAGS.ms_ssim_stride)

    points = [anchor(anchors.jpeg_file(int(q))) for q in FLAGS.jpeg_qualities]
    points += [anchor(make_codec("jpeg2000", r)) for r in FLAGS.jpeg2000_ratios]
    points += anchor_curves(anchor)
    modern = list(dict.fromkeys(p["curve"] for p in points if p["curve"] not in ("jpeg-file", "jpeg2000")))
    bd_pairs = [("jpeg-file", "jpeg2000")] + [(name, ref) for name in modern for ref in ("jpeg2000", "jpeg-file")]
    for name in FLAGS.streams:
        points += stream_points(codec, analysis, name, stream_qualities(name), None, name)
        bd_pairs += [
            (f"base+{name} ({mode})", reference)
            for mode in FLAGS.modes
            for reference in dict.fromkeys([*own_anchors(name, modern), "jpeg2000", "jpeg-file"])
        ]
        # what the base layer's information buys in texture: its MMSE prediction against the fixed mean face
        bd_pairs.append((f"base+{name} (mmse)", f"base+{name} (mean_face)"))
    residual_families = (
        FLAGS.learned_families
        if FLAGS.learned_families is not None
        else [zoo.learned_family(kind="residual", for_set=codec.model_set).name]
    )
    direct_points = {}  # a direct partner's point per checkpoint: families and qualities share them
    for kind, names in (("learned", residual_families), ("conditional", FLAGS.conditional_families)):
        for name in names:
            family = zoo.learned_family(name)
            direct = zoo.learned_family(family.direct)
            qualities = [int(q) for q in FLAGS.learned_qualities] or list(family.qualities)
            for quality in qualities:
                checkpoint = direct.checkpoint(family.direct_quality(quality))
                if checkpoint not in direct_points:
                    direct_points[checkpoint] = {**anchor(make_codec("learned", checkpoint)), "curve": direct.name}
                    points.append(direct_points[checkpoint])
            points += stream_points(codec, analysis, kind, qualities, name, name)
            bd_pairs += [
                (f"base+{name} ({label})", anchor_name)
                for label, _ in curve_modes(kind, name)
                for anchor_name in (direct.name, "jpeg2000", *modern)
            ] + [(direct.name, "jpeg2000")]
    for spec in FLAGS.learned_checkpoints:
        points.append(
            {**anchor(make_codec("learned", learned.checkpoint_spec(spec))), "curve": FLAGS.learned_curve or spec}
        )
    if FLAGS.learned_curve:
        bd_pairs += [
            (FLAGS.learned_curve, anchor_name)
            for anchor_name in [
                "jpeg2000",
                *filter(None, (zoo.learned_family(name).direct for name in residual_families)),
                *modern,
            ]
        ]
    base_files = codec.encode_analysis(analysis).files
    recon = analysis.predictions.reconstruction
    # centred on the training-identity feature mean (the model's PCA mean), as verify_lfw.py and rate_accuracy.py
    all_features = codec.base_layer.decode_payloads(codec.base_layer.encode_payloads(faces.features, faces.crops))
    base_accuracy = metrics.evaluate_pairs(pairs, faces.index(), all_features, mean=codec.base_layer.mean)
    result = {
        "command": " ".join(["python", *sys.argv]),
        "library_versions": anchors.library_versions(),
        "num_images": count,
        "shard": FLAGS.shard,
        "align": FLAGS.align,
        "folds": FLAGS.folds,
        "model_set": codec.model_set.name,
        "learned_families": residual_families + FLAGS.conditional_families,
        "base_file_bits_per_face": float(np.mean([8 * len(f) for f in base_files])),
        "base_record_bits_per_face": float(np.mean([8 * (len(p) + 2) for p in analysis.base_payloads])),
        "psnr_ceiling_db": metrics.PSNR_CEILING_DB,
        "bd_method": "bjontegaard package, akima",
        "ms_ssim_stride": FLAGS.ms_ssim_stride,
        "reconstruction_only": curves.quality_summary(crops, recon, FLAGS.ms_ssim_stride),
        "mmse_prediction_only": curves.quality_summary(crops, analysis.predictions(MMSE), FLAGS.ms_ssim_stride),
        "mean_face_only": curves.quality_summary(crops, analysis.predictions(MEAN_FACE), FLAGS.ms_ssim_stride),
        "points": points,
        "bd_pairs": bd_pairs,
        "bd": curves.bd_rows(points, bd_pairs),
        "base_layer_accuracy": base_accuracy.accuracy,
        "rate_accuracy_points": [
            {
                "codec": p["curve"],
                "parameter": p["parameter"],
                "bits_per_face": p["bits_per_face"],
                "accuracy": base_accuracy.accuracy,
                "accuracy_std": base_accuracy.accuracy_std,
            }
            for p in points
            if p["curve"].startswith("base+")
        ],
        "wall_time_s": round(time.time() - start, 1),
    }
    report(result)


def report(result: dict) -> None:
    """Write the result JSON, print its points and BD rows, draw the plot."""
    curves.write_json(FLAGS.output_json, result)
    points = result["points"]
    for p in points:
        print(
            f"{p['curve']:>32} {p['parameter']!s:>22}: {p['bits_per_face']:9.1f} bits, PSNR {p['psnr']:.2f} dB, "
            f"MS-SSIM {p['ms_ssim']:.4f}" + (f", modes {p['modes_chosen']}" if "modes_chosen" in p else "")
        )
    for row in result["bd"]:
        print(row)
    if FLAGS.plot:
        title = f"Rate-distortion on {result['num_images']} LFW crops (folds {','.join(result['folds'])})"
        curves.plot_rate_distortion(points, FLAGS.plot, title)


if __name__ == "__main__":
    app.run(main)
