"""Markdown tables of the result JSONs in eval/results (the README quotes them).

python eval/summarize.py --results eval/results
"""

import json
import pathlib

from absl import app, flags

from sfc_tf import settings

FLAGS = flags.FLAGS
flags.DEFINE_string("results", None, "Directory of result JSONs; default: eval/results of this checkout.")


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def rate_accuracy(result: dict) -> str:
    rows = [
        [
            p["codec"],
            p["parameter"],
            f"{p['bits_per_face']:.1f}",
            f"{p['accuracy']:.4f} ± {p['accuracy_std']:.4f}",
            f"{p['entropy_bits_per_face']:.1f}" if "entropy_bits_per_face" in p else "",
        ]
        for p in sorted(result["points"], key=lambda p: (p["codec"], p["bits_per_face"]))
    ]
    return f"reference (unquantized features): {result['reference_accuracy']:.4f}\n\n" + table(
        ["codec", "parameter", "coded bits/face", "accuracy", "ideal bits/face"], rows
    )


def _modes(point: dict) -> str:
    chosen = point.get("modes_chosen", {})
    return ", ".join(f"{name} {count}" for name, count in sorted(chosen.items(), key=lambda kv: -kv[1]))


def rate_distortion(result: dict) -> str:
    rows = [
        [
            p["curve"],
            p["parameter"],
            f"{p['bits_per_face']:.0f}",
            f"{p['payload_bits_per_face']:.0f}",
            f"{p['psnr']:.2f}"
            + (f" ({p['images_at_psnr_ceiling']} at cap)" if p.get("images_at_psnr_ceiling") else ""),
            f"{p['ms_ssim']:.4f}",
            _modes(p),
        ]
        for p in sorted(result["points"], key=lambda p: (p["curve"], p["bits_per_face"]))
    ]
    bd = [
        [
            r["test"],
            r["anchor"],
            f"{r['bd_rate_percent']:+.1f}%" if "bd_rate_percent" in r else r["bd_rate_error"],
            f"{r['bd_psnr_db']:+.2f}" if "bd_psnr_db" in r else r["bd_psnr_error"],
            f"{r['psnr_overlap']:.2f}",
        ]
        for r in result["bd"]
    ]
    alone = [
        [name, f"{result[key]['psnr']:.2f}", f"{result[key]['ms_ssim']:.4f}"]
        for name, key in (
            ("reconstruction x_hat (paper)", "reconstruction_only"),
            ("MMSE coding prediction", "mmse_prediction_only"),
            ("mean face", "mean_face_only"),
        )
        if key in result
    ]
    stride = result.get("ms_ssim_stride", 1)
    return (
        f"{result['num_images']} crops, model set {result['model_set']}"
        + "".join(f", learned family {name}" for name in result.get("learned_families", []))
        + f" (MS-SSIM on every {stride}-th); base layer alone: "
        f"{result['base_file_bits_per_face']:.1f} bits/face as a file, {result['base_record_bits_per_face']:.1f} "
        "as a record\n\n"
        + table(["prediction alone (base layer only)", "PSNR (dB)", "MS-SSIM"], alone)
        + "\n\n"
        + table(
            ["curve", "parameter", "file bits/face", "payload bits/face", "PSNR (dB)", "MS-SSIM", "modes chosen"], rows
        )
        + "\n\n"
        + table(["proposed", "anchor", "BD-rate", "BD-PSNR (dB)", "PSNR overlap"], bd)
    )


def modern_codecs(result: dict) -> str:
    """One row per curve of a rate-distortion run with the modern codecs: its rates and PSNRs, and its BD-rate
    against JPEG2000, against JPEG files and against the other anchors it was compared with (its own format's files
    and payloads, for the scalable streams)."""
    bd = {(r["test"], r["anchor"]): r.get("bd_rate_percent") for r in result["bd"]}

    def cell(test: str, anchor: str) -> str:
        value = bd.get((test, anchor))
        return "" if value is None else f"{value:+.1f}%"

    rows = []
    for curve in dict.fromkeys(p["curve"] for p in result["points"]):
        points = [p for p in result["points"] if p["curve"] == curve]
        others = [a for t, a in bd if t == curve and a not in ("jpeg2000", "jpeg-file") and bd[t, a] is not None]
        rows.append(
            [
                curve,
                f"{min(p['bits_per_face'] for p in points):.0f}..{max(p['bits_per_face'] for p in points):.0f}",
                f"{min(p['psnr'] for p in points):.2f}..{max(p['psnr'] for p in points):.2f}",
                cell(curve, "jpeg2000"),
                cell(curve, "jpeg-file"),
                ", ".join(f"{cell(curve, a)} vs {a}" for a in others),
            ]
        )
    header = ["curve", "bits/face (whole files)", "PSNR (dB)", "vs JPEG2000", "vs JPEG files", "vs its own format"]
    return f"{result['num_images']} crops, model set {result['model_set']}, BD-rates (bjontegaard, Akima)\n\n" + table(
        header, rows
    )


def benchmark(result: dict) -> str:
    rows = [
        [r["stage"], f"{r['batch_1_faces_per_s']:,.1f}", f"{r['batched_faces_per_s']:,.1f}", r["batch"]]
        for r in result["stages"]
    ]
    ratios = [[name, f"{value:.3f}"] for name, value in result["ratios"].items()]
    return (
        table(["stage", "faces/s, batch 1", "faces/s, batched", "batch"], rows)
        + "\n\n"
        + table(["ratio (batched)", "value"], ratios)
    )


def lambda_sweep(result: dict) -> str:
    rows = [
        [r["perceptual_weight"], r["steps"], f"{r['psnr']:.2f}", f"{r['ssim']:.4f}", f"{r['identity_cosine']:.4f}"]
        for r in result["runs"]
    ]
    return (
        f"{result['images']} images of {result['held_out_identities']} held-out training identities; "
        f"chosen lambda ({result['criterion']}): {result['chosen_perceptual_weight']}\n\n"
        + table(["lambda", "steps", "PSNR (dB)", "SSIM", "FaceNet cosine to original"], rows)
    )


SUMMARIES = {
    "rate_accuracy_mtcnn.json": rate_accuracy,
    "rate_distortion.json": rate_distortion,
    "rate_distortion_learned.json": rate_distortion,
    "rate_distortion_paper_set.json": rate_distortion,
    "rate_distortion_learned_paper_set.json": rate_distortion,
    "rate_distortion_conditional.json": rate_distortion,
    "rate_distortion_thumb2.json": rate_distortion,
    "rate_distortion_learned_thumb2.json": rate_distortion,
    "rate_distortion_conditional_thumb2.json": rate_distortion,
    "rate_distortion_modern_512.json": modern_codecs,
    "rate_distortion_modern.json": modern_codecs,
    "benchmark.json": benchmark,
    "lambda_sweep.json": lambda_sweep,
}


def main(_):
    for name, summarize in SUMMARIES.items():
        path = pathlib.Path(FLAGS.results or settings.REPO_ROOT / "eval" / "results") / name
        if path.is_file():
            print(f"## {name}\n\n{summarize(json.loads(path.read_text()))}\n")


if __name__ == "__main__":
    app.run(main)
