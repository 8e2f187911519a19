"""Evaluation shared by the eval/ binaries: coding crops with an image codec (the anchors) or with the scalable
codec (the files users write), rate-accuracy and rate-distortion points, Bjontegaard deltas, JSON and plots.

Every rate is the size of what a user stores: whole ``.sfc`` files for the scalable stream (a base-only file is the
base-layer record + 24 bits), the codec's own file for an anchor; the bare payloads come second
(``payload_bits_per_face``). PSNR is the mean of per-face PSNR, each capped at ``metrics.PSNR_CEILING_DB``."""

from __future__ import annotations

import json
import pathlib
from typing import Iterable, Sequence

import numpy as np

from sfc_tf import metrics
from sfc_tf.base import facenet
from sfc_tf.data import folders


def _chunks(count: int, size: int, desc: str, progress: bool):
    from tqdm import tqdm

    return tqdm(range(0, count, size), desc=desc, disable=not progress, leave=False)


def lfw_pair_faces(
    lfw_dir: str,
    folds: Sequence[int] | None,
    align: str = "mtcnn",
    pairs_file: str | None = None,
    extractor=None,
    progress: bool = True,
):
    """The LFW pairs of ``folds`` (``None``: all; ``pairs_file`` default ``<lfw_dir>/pairs.txt``) and the crops and
    shipped FaceNet features of every image they use, cached under the one key all evaluations share."""
    return folders.load_pair_faces(
        lfw_dir,
        pairs_file or f"{lfw_dir}/pairs.txt",
        folds,
        align,
        extractor or facenet.FeatureExtractor(),
        f"{facenet.DEFAULT_KEY}-fixed",
        progress,
    )


def code_images(codec, crops: np.ndarray, progress: bool = True, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Encode and decode every crop with an image codec (an anchor): (decoded uint8 crops, bits per crop)."""
    return code_files(codec, crops, progress, batch_size)[:2]


def code_files(
    codec, crops: np.ndarray, progress: bool = True, batch_size: int = 64
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``code_images``, and the bits of the codec's payload in each file: the file without its container for a
    ``sfc_tf.evaluation.anchors.FileAnchor``, else all of it."""
    payload_bytes = getattr(codec, "payload_bytes", len)
    decoded, bits, payload_bits = np.empty_like(crops), np.empty(len(crops)), np.empty(len(crops))
    for i in _chunks(len(crops), batch_size, f"{codec.name} {codec.parameter}", progress):
        files = codec.encode_many(crops[i : i + batch_size])
        decoded[i : i + batch_size] = codec.decode_many(files)
        bits[i : i + batch_size] = [8 * len(f) for f in files]
        payload_bits[i : i + batch_size] = [8 * payload_bytes(f) for f in files]
    return decoded, bits, payload_bits


def point(codec: str, parameter, bits: np.ndarray, result: metrics.VerificationResult, **extra) -> dict:
    return {
        "codec": codec,
        "parameter": parameter,
        "bits_per_face": float(np.mean(bits)),
        "accuracy": result.accuracy,
        "accuracy_std": result.accuracy_std,
        **extra,
    }


def base_layer_points(
    models: Sequence, pairs, index: dict, features: np.ndarray, mean: np.ndarray | None = None
) -> list[dict]:
    """Analyze-then-compress: features of the original crops through each base-layer model's real bytes
    (``mean``: see ``metrics.centered``). Rates: the base-only .sfc file, and its record (CRC-16 + payload)."""
    from sfc_tf import bitstream

    points = []
    for model in models:
        payloads = model.encode_payloads(features)
        decoded = model.decode_payloads(payloads)
        files = [bitstream.pack(bitstream.SfcFile("mtcnn", 1, p)) for p in payloads]
        points.append(
            point(
                "base",
                model.step,
                8.0 * np.array([len(f) for f in files]),
                metrics.evaluate_pairs(pairs, index, decoded, mean=mean),
                payload_bits_per_face=float(np.mean([8 * (len(p) + bitstream.BASE_CRC_BYTES) for p in payloads])),
                entropy_bits_per_face=float(model.entropy_bits(features).mean()),
                model_id=model.model_id[:16],
            )
        )
    return points


def base_layer_speed(model, features: np.ndarray, repeats: int = 5) -> dict:
    """Batched base-layer encode and decode throughput (faces/s, median of ``repeats`` after a warm-up call)
    and the single-face decode latency, on ``features`` (N, D)."""
    import time

    def median_seconds(function, *args):
        function(*args)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            function(*args)
            times.append(time.perf_counter() - start)
        return float(np.median(times))

    records = model.encode(features)
    encode, decode = median_seconds(model.encode, features), median_seconds(model.decode, records)
    return {
        "faces": len(features),
        "step": model.step,
        "bits_per_face": 8.0 * np.mean([len(r) for r in records]),
        "encode_faces_per_s": len(features) / encode,
        "decode_faces_per_s": len(features) / decode,
        "single_face_decode_ms": 1e3 * median_seconds(model.decode, records[:1]),
    }


def anchor_points(
    codecs: Iterable,
    pairs,
    index: dict,
    crops: np.ndarray,
    extractor,
    progress: bool = True,
    mean: np.ndarray | None = None,
) -> list[dict]:
    """Compress-then-analyze: FaceNet features of crops decoded from each image codec."""
    points = []
    for codec in codecs:
        decoded, bits = code_images(codec, crops, progress)
        features = extractor(decoded)
        result = metrics.evaluate_pairs(pairs, index, features, mean=mean)
        points.append(
            point(codec.name, codec.parameter, bits, result, psnr=float(np.mean(metrics.psnr(crops, decoded))))
        )
    return points


def write_json(path: str | pathlib.Path, payload: dict) -> None:
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n")


def plot_rate_accuracy(result: dict, path: str | pathlib.Path) -> None:
    """The rate-accuracy figure of a ``rate_accuracy.py`` result: accuracy against bits per face, log x."""
    plot_curves(
        result["points"],
        "bits_per_face",
        "accuracy",
        path,
        f"LFW verification vs rate ({result['num_pairs']} pairs, {result['align']} crops)",
        result["reference_accuracy"],
        ylabel="verification accuracy",
    )


def add_rate_accuracy_points(
    result_path: str | pathlib.Path, points: list[dict], plot_path: str | pathlib.Path | None = None
) -> dict:
    """Hook for later codecs (e.g. "base+jpeg"): add ``points`` (same keys as ``point``) to an existing
    rate-accuracy JSON, replacing earlier points of the same codec names, and redraw its plot. Returns the
    updated result."""
    result_path = pathlib.Path(result_path)
    result = json.loads(result_path.read_text())
    codecs = {p["codec"] for p in points}
    result["points"] = [p for p in result["points"] if p["codec"] not in codecs] + list(points)
    write_json(result_path, result)
    if plot_path:
        plot_rate_accuracy(result, plot_path)
    return result


def plot_curves(
    points: list[dict],
    x: str,
    y: str,
    path: str | pathlib.Path,
    title: str,
    reference: float | None = None,
    xlabel: str = "bits per face",
    ylabel: str | None = None,
) -> None:
    """One line per codec of ``y`` against ``x`` (log x axis), PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.5))
    for codec in dict.fromkeys(p["codec"] for p in points):
        curve = sorted((p[x], p[y]) for p in points if p["codec"] == codec)
        axis.plot(*zip(*curve), marker="o", label=codec)
    if reference is not None:
        axis.axhline(reference, color="gray", linestyle="--", label="uncompressed features")
    axis.set_xscale("log")
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel or y)
    axis.set_title(title)
    axis.grid(True, which="both", alpha=0.3)
    axis.legend()
    figure.tight_layout()
    pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)


# -- rate-distortion ---------------------------------------------------------------------------------------------

# tf.image.ssim_multiscale's default 5 scales need sides > 160; 4 scales with its first 4 weights.
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363)


def _per_image(measure, originals: np.ndarray, decoded: np.ndarray, batch_size: int = 256) -> np.ndarray:
    import tensorflow as tf

    return np.concatenate(
        [
            measure(tf.constant(originals[i : i + batch_size]), tf.constant(decoded[i : i + batch_size])).numpy()
            for i in range(0, len(originals), batch_size)
        ]
    )


def ms_ssim(originals: np.ndarray, decoded: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Per-image MS-SSIM of uint8 (N, 160, 160, 3) arrays."""
    import tensorflow as tf

    return _per_image(
        lambda a, b: tf.image.ssim_multiscale(a, b, 255, power_factors=MS_SSIM_WEIGHTS), originals, decoded, batch_size
    )


def ssim(originals: np.ndarray, decoded: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Per-image SSIM of uint8 (N, H, W, 3) arrays."""
    import tensorflow as tf

    return _per_image(lambda a, b: tf.image.ssim(a, b, 255), originals, decoded, batch_size)


def reconstruction_quality(crops: np.ndarray, rebuilt: np.ndarray) -> dict:
    """Per-image PSNR, SSIM and MS-SSIM of faces rebuilt from features (mean and standard deviation of each)."""
    values = {"psnr": metrics.psnr(crops, rebuilt), "ms_ssim": ms_ssim(crops, rebuilt), "ssim": ssim(crops, rebuilt)}
    return {
        key: value
        for name, array in values.items()
        for key, value in ((name, float(np.mean(array))), (f"{name}_std", float(np.std(array))))
    }


def quality_summary(crops: np.ndarray, decoded: np.ndarray, ms_ssim_stride: int = 1) -> dict:
    """Mean PSNR of all faces; MS-SSIM of every ``ms_ssim_stride``-th face (TF's MS-SSIM is slow on a CPU)."""
    psnr, capped = metrics.mean_psnr(crops, decoded)
    sample = slice(None, None, ms_ssim_stride)
    return {
        "psnr": psnr,
        "images_at_psnr_ceiling": capped,
        "ms_ssim": float(np.mean(ms_ssim(crops[sample], decoded[sample]))),
        "ms_ssim_images": len(crops[sample]),
    }


def anchor_rd_point(codec, crops: np.ndarray, progress: bool = True, ms_ssim_stride: int = 1) -> dict:
    """An image codec coding the crops directly (no base layer): the plain anchor."""
    decoded, bits, payload_bits = code_files(codec, crops, progress)
    return {
        "curve": codec.name,
        "parameter": _parameter(codec.parameter),
        "bits_per_face": float(bits.mean()),
        "payload_bits_per_face": float(payload_bits.mean()),
        **quality_summary(crops, decoded, ms_ssim_stride),
    }


def stream_rd_point(
    codec,
    analysis,
    enhancement: str,
    quality,
    mode: str,
    family: str | None = None,
    curve: str | None = None,
    batch_size: int = 64,
    progress: bool = True,
    ms_ssim_stride: int = 1,
) -> dict:
    """The scalable stream as users write it: ``codec.encode_analysis`` in batches, the whole .sfc files counted,
    every file decoded again with ``codec.decode_many``; the prediction modes chosen, counted per mode."""
    from sfc_tf import bitstream

    files, modes = [], []
    for i in _chunks(len(analysis.crops), batch_size, f"{enhancement} {quality} {mode}", progress):
        encoded = codec.encode_analysis(analysis.slice(i, i + batch_size), enhancement, quality, mode, family)
        files += encoded.files
        modes += [bitstream.MODES[m] for m in encoded.modes]
    decoded = np.concatenate(
        [
            np.stack([d.image for d in codec.decode_many(files[i : i + batch_size], "full")])
            for i in range(0, len(files), batch_size)
        ]
    )
    parsed = [bitstream.unpack(f) for f in files]
    base_bits = [8 * bitstream.base_part_bytes(f) for f in files]
    payload_bits = [
        8
        * (
            len(p.base_payload)
            + bitstream.BASE_CRC_BYTES
            + len(p.enhancement.payload)
            + (4 if p.enhancement.span is not None else 0)
        )
        for p in parsed
    ]
    names, counts = np.unique(modes, return_counts=True)
    return {
        "curve": curve or f"base+{enhancement}",
        "enhancement": enhancement,
        "parameter": _parameter(quality),
        "mode": mode,
        "bits_per_face": float(np.mean([8 * len(f) for f in files])),
        "base_bits_per_face": float(np.mean(base_bits)),
        "enhancement_bits_per_face": float(np.mean([8 * len(f) for f in files]) - np.mean(base_bits)),
        "payload_bits_per_face": float(np.mean(payload_bits)),
        "modes_chosen": {str(n): int(c) for n, c in zip(names, counts)},
        **quality_summary(analysis.crops, decoded, ms_ssim_stride),
    }


def _parameter(value):
    """A codec parameter as a table cell: a checkpoint path by its folder name (and rate)."""
    if isinstance(value, (tuple, list)):
        return f"{pathlib.Path(value[0]).name}@{value[1]}"
    if isinstance(value, str) and "/" in value:
        return pathlib.Path(value).name
    return value


def bd_rows(points: list[dict], pairs: Sequence[tuple[str, str]]) -> list[dict]:
    """BD-rate and BD-PSNR (the ``bjontegaard`` package, Akima interpolation) of each (test, anchor) curve pair,
    with the share of the two curves' PSNR range that overlaps; curves with fewer than 4 points are skipped."""
    import warnings

    import bjontegaard

    curves: dict[str, list] = {}
    for p in points:
        curves.setdefault(p["curve"], []).append((p["bits_per_face"], p["psnr"]))
    rows = []
    for test, anchor in pairs:
        if len(curves.get(test, [])) < 4 or len(curves.get(anchor, [])) < 4:
            continue
        (ra, pa), (rt, pt) = (np.array(sorted(curves[c])).T for c in (anchor, test))
        low, high = max(pa.min(), pt.min()), min(pa.max(), pt.max())
        row = {
            "test": test,
            "anchor": anchor,
            "psnr_overlap": float(max(high - low, 0) / (max(pa.max(), pt.max()) - min(pa.min(), pt.min()))),
        }
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for key, function in (("bd_rate_percent", bjontegaard.bd_rate), ("bd_psnr_db", bjontegaard.bd_psnr)):
                try:
                    row[key] = float(
                        function(ra, pa, rt, pt, method="akima", require_matching_points=False, min_overlap=0)
                    )
                except Exception as exc:  # the package raises ValueError/AssertionError on unusable curves
                    row[key.replace("percent", "error").replace("_db", "_error")] = str(exc)
        rows.append(row)
    return rows


def plot_rate_distortion(points: list[dict], path: str | pathlib.Path, title: str) -> None:
    """PSNR and MS-SSIM against bits per face (log x), one line per curve, one colour per image format; solid: the
    scalable streams with the per-face decision, dash-dotted: with one prediction mode for every face, dashed: files
    without a base layer, dotted: the codec data inside them, x: 4:2:0."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(13, 5))
    names = list(dict.fromkeys(p["curve"] for p in points))
    formats = list(dict.fromkeys(_image_format(name) for name in names))
    colours = plt.get_cmap("tab10" if len(formats) <= 10 else "tab20")
    for name in names:
        curve = sorted((p for p in points if p["curve"] == name), key=lambda p: p["bits_per_face"])
        stream = "-o" if name.endswith("(auto)") else "-.D"
        style = stream if name.startswith("base+") else ":^" if "(payload)" in name else "--s"
        style = style[:-1] + "x" if "4:2:0" in name else style
        colour = colours(formats.index(_image_format(name)))
        for axis, key in zip(axes, ("psnr", "ms_ssim")):
            axis.plot(
                [p["bits_per_face"] for p in curve], [p[key] for p in curve], style, ms=3, color=colour, label=name
            )
    for axis, label in zip(axes, ("PSNR (dB)", "MS-SSIM")):
        axis.set_xscale("log")
        axis.set_xlabel("bits per face (whole file)")
        axis.set_ylabel(label)
        axis.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7)
    figure.suptitle(title)
    figure.tight_layout()
    pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)


def _image_format(curve: str) -> str:
    """The format a curve codes in, so a stream, its format's files and their payloads share a colour: "base+avif
    (auto)", "avif 4:2:0" and "av1 (payload)" are all avif."""
    word = curve.removeprefix("base+").split(" ")[0]
    return {"av1": "avif", "vp8": "webp", "hevc": "heic", "jpeg-file": "jpeg"}.get(word, word)


def plot_learning_curve(result: dict, path: str | pathlib.Path) -> None:
    """BD-rate of each snapshot of a learning-curve result against each of its anchors, by training step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    steps = sorted(result["bd"], key=int)
    for anchor in sorted({row["anchor"] for rows in result["bd"].values() for row in rows}):
        found = [(int(s), r.get("bd_rate_percent")) for s in steps for r in result["bd"][s] if r["anchor"] == anchor]
        found = [(s, v) for s, v in found if v is not None]
        if found:
            ax.plot(*zip(*found), marker="o", label=f"vs {anchor}")
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xlabel("training step")
    ax.set_ylabel("BD-rate (%)")
    ax.set_title(f"{result['kind']} codec, {result['num_images']} LFW crops")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def shard(spec: str, count: int) -> slice:
    """The images of shard ``"k/n"`` of ``count``: every n-th from the k-th (1-based), so shards of one run can go
    to separate processes and be pooled with ``pool_rd_shards``."""
    try:
        k, n = (int(v) for v in spec.split("/"))
    except ValueError:
        raise ValueError(f"shard {spec!r}: expected k/n, e.g. 1/2") from None
    if not 1 <= k <= n:
        raise ValueError(f"shard {spec!r}: k must be in 1..n")
    if n > count:
        raise ValueError(f"shard {spec!r}: more shards than the {count} images")
    return slice(k - 1, count, n)


_SUMMED = ("images_at_psnr_ceiling", "ms_ssim_images", "num_images")
# what each shard measures on its own faces; every other key of a result must be the same in all shards
_PER_SHARD = {
    "command",
    "shard",
    "num_images",
    "base_file_bits_per_face",
    "base_record_bits_per_face",
    "reconstruction_only",
    "mmse_prediction_only",
    "mean_face_only",
    "points",
    "bd",
    "rate_accuracy_points",
    "wall_time_s",
}


def _pool(parts: list[dict], weights: list[int]) -> dict:
    """One point (or quality summary) from the same point of each shard: per-face means weighted by the shard's
    faces, MS-SSIM by its MS-SSIM faces, counts summed, mode counts added."""
    out = dict(parts[0])
    for key, value in parts[0].items():
        values = [p[key] for p in parts]
        if key in _SUMMED:
            out[key] = int(sum(values))
        elif key == "ms_ssim":
            out[key] = float(np.average(values, weights=[p["ms_ssim_images"] for p in parts]))
        elif key == "modes_chosen":
            out[key] = {m: sum(p[key].get(m, 0) for p in parts) for m in sorted({m for p in parts for m in p[key]})}
        elif all(v == value for v in values):
            continue
        elif isinstance(value, float):
            out[key] = float(np.average(values, weights=weights))
        else:
            raise ValueError(f"shards disagree on {key!r}: {values}")
    return out


def pool_rd_shards(results: list[dict]) -> dict:
    """One ``eval/rate_distortion.py`` result from the results of its shards (``--shard k/n``, same flags
    otherwise): every mean over all their faces, the BD rows computed again from the pooled curves."""
    shards = sorted(r["shard"] for r in results)
    n = int(shards[0].split("/")[1])
    if shards != [f"{k}/{n}" for k in range(1, n + 1)]:
        raise ValueError(f"shards {shards}: expected each of 1/{n} .. {n}/{n} once")
    for key in results[0].keys() - _PER_SHARD:
        if any(r.get(key) != results[0][key] for r in results):
            raise ValueError(f"shards disagree on {key!r}: were they run with the same flags?")
    keys = [[(p["curve"], str(p["parameter"])) for p in r["points"]] for r in results]
    if any(k != keys[0] for k in keys):
        raise ValueError("shards have different curves: were they run with the same flags?")
    weights = [r["num_images"] for r in results]
    pooled = {**results[0], "shard": f"1-{n}/{n}", "shard_commands": [r["command"] for r in results]}
    for key in ("reconstruction_only", "mmse_prediction_only", "mean_face_only"):
        pooled[key] = _pool([r[key] for r in results], weights)
    for key in ("num_images", "base_file_bits_per_face", "base_record_bits_per_face"):
        pooled[key] = _pool([{key: r[key]} for r in results], weights)[key]
    pooled["wall_time_s"] = round(sum(r["wall_time_s"] for r in results), 1)  # CPU-bound: the shards' total
    pooled["points"] = [_pool([r["points"][i] for r in results], weights) for i in range(len(keys[0]))]
    by_curve = {(p["curve"], str(p["parameter"])): p for p in pooled["points"]}
    pooled["rate_accuracy_points"] = [
        {**row, "bits_per_face": by_curve[(row["codec"], str(row["parameter"]))]["bits_per_face"]}
        for row in results[0]["rate_accuracy_points"]
    ]
    pooled["bd"] = bd_rows(pooled["points"], [tuple(pair) for pair in results[0]["bd_pairs"]])
    return pooled
