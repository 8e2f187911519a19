"""Evaluation helpers shared by the eval/ binaries: coding many crops with an image codec, rate-accuracy
points, JSON and plots."""

from __future__ import annotations

import json
import pathlib
from typing import Iterable, Sequence

import numpy as np

from sfc_tf import metrics


def code_images(codec, crops: np.ndarray, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Encode and decode every crop with ``codec``: (decoded uint8 crops, bits per crop)."""
    from tqdm import tqdm

    decoded, bits = np.empty_like(crops), np.empty(len(crops))
    for i in tqdm(range(len(crops)), desc=f"{codec.name} {codec.parameter}", disable=not progress, leave=False):
        data = codec.encode(crops[i])
        decoded[i], bits[i] = codec.decode(data), 8 * len(data)
    return decoded, bits


def point(codec: str, parameter, bits: np.ndarray, result: metrics.VerificationResult, **extra) -> dict:
    return {"codec": codec, "parameter": parameter, "bits_per_face": float(np.mean(bits)),
            "accuracy": result.accuracy, "accuracy_std": result.accuracy_std, **extra}


def base_layer_points(models: Sequence, pairs, index: dict, features: np.ndarray,
                      mean: np.ndarray | None = None) -> list[dict]:
    """Analyze-then-compress: features of the original crops through each base-layer model's real bytes
    (``mean``: see ``metrics.centered``)."""
    points = []
    for model in models:
        records = model.encode(features)
        decoded = model.decode(records)
        bits = 8.0 * np.array([len(r) for r in records])
        points.append(point("base", model.step, bits, metrics.evaluate_pairs(pairs, index, decoded, mean=mean),
                            entropy_bits_per_face=float(model.entropy_bits(features).mean()),
                            model_id=model.model_id[:16]))
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
    return {"faces": len(features), "step": model.step, "bits_per_face": 8.0 * np.mean([len(r) for r in records]),
            "encode_faces_per_s": len(features) / encode, "decode_faces_per_s": len(features) / decode,
            "single_face_decode_ms": 1e3 * median_seconds(model.decode, records[:1])}


def anchor_points(codecs: Iterable, pairs, index: dict, crops: np.ndarray, extractor,
                  progress: bool = True, mean: np.ndarray | None = None) -> list[dict]:
    """Compress-then-analyze: FaceNet features of crops decoded from each image codec."""
    points = []
    for codec in codecs:
        decoded, bits = code_images(codec, crops, progress)
        features = extractor(decoded)
        points.append(point(codec.name, codec.parameter, bits, metrics.evaluate_pairs(pairs, index, features, mean=mean),
                            psnr=float(np.mean(metrics.psnr(crops, decoded)))))
    return points


def write_json(path: str | pathlib.Path, payload: dict) -> None:
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n")


def plot_rate_accuracy(result: dict, path: str | pathlib.Path) -> None:
    """The rate-accuracy figure of a ``rate_accuracy.py`` result: accuracy against bits per face, log x."""
    plot_curves(result["points"], "bits_per_face", "accuracy", path,
                f"LFW verification vs rate ({result['num_pairs']} pairs, {result['align']} crops)",
                result["reference_accuracy"], ylabel="verification accuracy")


def add_rate_accuracy_points(result_path: str | pathlib.Path, points: list[dict],
                             plot_path: str | pathlib.Path | None = None) -> dict:
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


def plot_curves(points: list[dict], x: str, y: str, path: str | pathlib.Path, title: str,
                reference: float | None = None, xlabel: str = "bits per face", ylabel: str | None = None) -> None:
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
