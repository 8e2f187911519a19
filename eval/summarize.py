"""docs/results.md: the tables of the result JSONs in eval/results, each with the command that produced it.

  python eval/summarize.py --output docs/results.md --overwrite   # regenerate the results doc
  python eval/summarize.py                                        # print it
  python eval/summarize.py --headline                             # print the README's headline table
  python eval/summarize.py --modern                               # print the README's modern-codecs table

The document is generated, never edited by hand: tests/test_summarize.py fails when docs/results.md differs from what
this script writes, or when README.md's headline or modern-codecs table differs from ``--headline`` or ``--modern``.
To add a result file, add one ``Section`` to ``SECTIONS`` (and, if its JSON does not record the command that made
it, one entry to ``COMMANDS``).
"""

import dataclasses
import json
import pathlib
import shlex
import sys
from collections.abc import Callable
from typing import Any

from absl import app, flags

from sfc_tf import settings

FLAGS = flags.FLAGS
flags.DEFINE_string("results", None, "Directory of result JSONs; default: eval/results of this checkout.")
flags.DEFINE_string("output", None, "Write the document here instead of printing it.")
flags.DEFINE_bool("overwrite", False, "Replace --output if it exists.")
flags.DEFINE_bool("headline", False, "Print only the README's headline table.")
flags.DEFINE_bool("modern", False, "Print only the README's rate-distortion table against the modern codecs.")

LFW = "--lfw_dir ../shared/data/lfw --folds 1,2,3,4"
RD = f"python eval/rate_distortion.py {LFW}"
RECONSTRUCTION = f"python eval/reconstruction.py {LFW}"

# How each result file was made, for the files whose JSON does not say (or says it with a scratch output path).
# Files written by a script that records its own command (eval/rate_distortion.py, eval/fuzz_decode.py,
# eval/batch_invariance.py) need no entry; compare_curves.py's command is rebuilt from the pairs in its JSON.
COMMANDS = {
    "verify_lfw_mtcnn.json": f"python eval/verify_lfw.py {LFW} --align mtcnn "
    "--output_json eval/results/verify_lfw_mtcnn.json",
    "rate_accuracy_mtcnn.json": f"python eval/rate_accuracy.py {LFW} --align mtcnn "
    "--output_json eval/results/rate_accuracy_mtcnn.json --plot eval/results/rate_accuracy_mtcnn.png\n"
    "python eval/rate_accuracy.py --lfw_dir ../shared/data/lfw --add_to_existing "
    "--extra_points eval/results/rate_distortion.json "
    "--output_json eval/results/rate_accuracy_mtcnn.json --plot eval/results/rate_accuracy_mtcnn.png",
    "mean_face_baseline.json": f"python eval/mean_face_baseline.py {LFW} "
    "--output_json eval/results/mean_face_baseline.json",
    "reconstruction.json": f"{RECONSTRUCTION} --base_layer checkpoints/base_layer/step_0.08.npz "
    "--reconstructor checkpoints/reconstructor --output_json eval/results/reconstruction.json "
    "--grid_png eval/results/reconstruction_grid.png",
    "reconstruction_identity_ft0.01.json": f"{RECONSTRUCTION} --reconstructor runs/r22/id0.01_ft4 "
    "--base_layer checkpoints/base_layer/step_0.08.npz --output_json eval/results/reconstruction_identity_ft0.01.json "
    "--grid_png eval/results/reconstruction_identity_ft0.01.png  "
    "# runs/r22/id0.01_ft4 is what checkpoints/reconstructor_faces ships",
    "reconstruction_thumbnail2.json": f"{RECONSTRUCTION} --model_set step0.08-faces-thumb2 "
    "--output_json eval/results/reconstruction_thumbnail2.json --grid_png eval/results/reconstruction_thumbnail2.png",
    "rate_distortion_hyperprior.json": f"{RD} --streams= --anchors= --learned_families= "
    "--conditional_families hyperprior-conditional --learned_qualities 1,3,5,7,9,11,13,15 --modes paper,auto "
    "--ms_ssim_stride 8 --output_json eval/results/rate_distortion_hyperprior.json "
    "--plot eval/results/rate_distortion_hyperprior.png",
    "rate_distortion_modern_512.json": f"{RD} --streams= --learned_families= --anchors avif,webp,jpegxl "
    "--avif_slow_speed -1 --ms_ssim_stride 8 --max_images 512 "
    "--output_json eval/results/rate_distortion_modern_512.json",
    "rate_distortion_thumb2.json": f"{RD} --learned_families= --model_set step0.08-faces-thumb2 --ms_ssim_stride 8 "
    "--output_json eval/results/rate_distortion_thumb2.json --plot eval/results/rate_distortion_thumb2.png",
    "rate_distortion_paper_set.json": f"{RD} --learned_families= --model_set step0.08 --ms_ssim_stride 8 "
    "--output_json eval/results/rate_distortion_paper_set.json --plot eval/results/rate_distortion_paper_set.png",
    "rate_distortion_learned_paper_set.json": f"{RD} --model_set step0.08 --learned_families bls2017-residual "
    "--jpeg_qualities= --jpeg2000_ratios 200,100,50,25,12 --ms_ssim_stride 8 "
    "--output_json eval/results/rate_distortion_learned_paper_set.json "
    "--plot eval/results/rate_distortion_learned_paper_set.png",
    "benchmark.json": "python eval/benchmark.py --lfw_dir ../shared/data/lfw --output_json eval/results/benchmark.json",
    "learned_speed.json": "python eval/learned_speed.py --lfw_dir ../shared/data/lfw "
    "--families hyperprior-conditional:8,hyperprior-conditional:15 "
    "--checkpoints OLD/checkpoints/enhancement/conditional_thumb2_l0.01,"
    "OLD/checkpoints/enhancement/conditional_thumb2_l0.1 "
    "--output_json eval/results/learned_speed.json  # OLD: git worktree add OLD 9e3bf09",
    "learning_curve_conditional.json": "python eval/learning_curve.py --lfw_dir ../shared/data/lfw "
    "--run runs/hp_continue --kind conditional --lmbdas 0.0005,0.00125,0.003125,0.0078,0.0195,0.0488,0.122,0.305 "
    "--init_from OLD/checkpoints/enhancement/hyperprior_conditional --steps_before 6500 "
    "--anchors 'eval/results/rate_distortion_modern_512.json:av1 (payload),"
    "eval/results/rate_distortion_modern_512.json:avif,eval/results/rate_distortion_modern_512.json:jpeg2000' "
    "--output_json eval/results/learning_curve_conditional.json --plot eval/results/learning_curve_conditional.png  "
    "# runs/hp_continue: the 6,500-step model continued 2,500 steps, what ships (docs/training.md); "
    "OLD: git worktree add OLD a3b1f52",
    "learning_curve_control.json": "python eval/learning_curve.py --lfw_dir ../shared/data/lfw "
    "--run runs/hp_original_continue --kind original "
    "--lmbdas 0.0005,0.00125,0.003125,0.0078,0.0195,0.0488,0.122,0.305 "
    "--init_from runs/hyperprior_original --steps_before 6500 "
    "--anchors 'eval/results/rate_distortion_modern_512.json:av1 (payload),"
    "eval/results/rate_distortion_modern_512.json:avif,eval/results/rate_distortion_modern_512.json:jpeg2000' "
    "--output_json eval/results/learning_curve_control.json --plot eval/results/learning_curve_control.png  "
    "# runs/hyperprior_original, runs/hp_original_continue: the end-to-end control (docs/training.md)",
    "identification.json": "python eval/identification.py --lfw_dir ../shared/data/lfw "
    "--output_json eval/results/identification.json --plot eval/results/identification.png",
    "archive_throughput.json": "python eval/archive_throughput.py --lfw_dir ../shared/data/lfw --images 100 "
    "--output_json eval/results/archive_throughput.json",
    "lambda_sweep.json": "python eval/lambda_sweep.py --lfw_dir ../shared/data/lfw "
    "--runs runs/sweep/l0,runs/sweep/l1e-06,runs/sweep/l1e-05 --output_json eval/results/lambda_sweep.json  "
    "# each run: train/train_reconstructor.py as in docs/training.md with --perceptual_weight 0, 1e-6, 1e-5",
    "fuzz_decode_every_seed.json": "python eval/fuzz_decode.py --runs 100000 --seed 7 --rss_margin_mb 512 "
    "--output_json eval/results/fuzz_decode_every_seed.json",
    "fuzz_decode_every_seed_margin256.json": "python eval/fuzz_decode.py --runs 100000 --seed 4 "
    "--output_json eval/results/fuzz_decode_every_seed_margin256.json",
    "fuzz_decode_new_codecs.json": "python eval/fuzz_decode.py --runs 40000 --seed 5 --trim_every 500 "
    "--seed_codecs jpeg,avif,jpegxl,webp --output_json eval/results/fuzz_decode_new_codecs.json",
    "fuzz_decode_new_codecs_long.json": "python eval/fuzz_decode.py --runs 220000 --seed 6 --trim_every 500 "
    "--seed_codecs jpeg,avif,jpegxl,webp --output_json eval/results/fuzz_decode_new_codecs_long.json",
    "fuzz_decode_default_set15.json": "python eval/fuzz_decode.py --runs 60000 --seed 11 --trim_every 500 "
    "--output_json eval/results/fuzz_decode_default_set15.json",
    "fuzz_decode_thumbnail_set.json": "python eval/fuzz_decode.py --runs 60000 --seed 15 --trim_every 500 "
    "--model_set step0.08-faces-thumb2 --work_dir /tmp/sfc_fuzz15 "
    "--output_json eval/results/fuzz_decode_thumbnail_set.json",
}


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def percent(value: float | None) -> str:
    return "" if value is None else f"{value:+.1f} %"


def command(name: str, result: dict) -> str:
    """The command that produced ``eval/results/<name>``: ``COMMANDS``, else rebuilt from a compare_curves.py JSON,
    else the one the JSON records."""
    if name in COMMANDS:
        return COMMANDS[name]
    if "command" not in result and "bd" in result and all(":" in r["test"] for r in result["bd"]):
        pairs = " ".join(f"--test {shlex.quote(r['test'])} --anchor {shlex.quote(r['anchor'])}" for r in result["bd"])
        plot = f" --plot {result['plot']}" if "plot" in result else ""
        return f"python eval/compare_curves.py {pairs} --output_json eval/results/{name}{plot}"
    if "command" not in result:
        raise ValueError(f"{name}: no command recorded; add one to COMMANDS in eval/summarize.py")
    if "shard_commands" in result:  # eval/rate_distortion.py --shard k/n runs, pooled by --merge
        stem = pathlib.Path(name).stem
        shards = [f"runs/{stem}/shard{k}.json" for k in range(1, len(result["shard_commands"]) + 1)]
        lines = [recorded(name, line, output=path) for path, line in zip(shards, result["shard_commands"])]
        return "\n".join(lines + [recorded(name, result["command"], merge=shards)])
    return recorded(name, result["command"])


def recorded(name: str, line: str, output: str | None = None, merge: list[str] | None = None) -> str:
    """A command as a binary recorded it (``" ".join(sys.argv)``), as it reads for the committed file: its
    ``--output_json`` is ``output`` (default ``eval/results/<name>``), its ``--merge`` inputs are ``merge``, a
    ``--plot`` outside eval/results is dropped, and an empty value (``--flag ''``, recorded as ``--flag`` and an
    empty word) is written ``--flag=``."""
    words, out = line.split(" "), []
    while words:
        word = words.pop(0)
        flag, equals, value = word.partition("=")
        if flag in ("--output_json", "--plot", "--merge"):
            value = value if equals else (words.pop(0) if words else "")
            if flag == "--output_json":
                out.append(f"--output_json {output or f'eval/results/{name}'}")
            elif flag == "--merge":
                out.append(f"--merge {','.join(merge or [value])}")
            elif value.startswith("eval/results/"):
                out.append(f"--plot {value}")
        elif word.startswith("--") and not equals and words and words[0] == "":
            words.pop(0)
            out.append(f"{word}=")
        elif word:
            out.append(word)
    return " ".join(out)


# -- renderers: one JSON in, markdown out -------------------------------------------------------------------


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


def verification(result: dict) -> str:
    return table(
        ["alignment", "pairs", "accuracy (k-fold)", "FaceNet"],
        [
            [
                result["align"],
                result["num_pairs"],
                f"{result['accuracy']:.4f} ± {result['accuracy_std']:.4f}",
                result["facenet_key"],
            ]
        ],
    )


def reconstruction(result: dict) -> str:
    """PSNR, SSIM, MS-SSIM and identity (NbNet's type I / type II, by FaceNet and by dlib) of the faces decoded from
    the base layer alone; the mean-face baseline has only the first three."""

    def pair(prefix: str, kind: str) -> str:
        key = f"{prefix}accuracy_type_{kind}"
        if key not in result:
            return "-"
        return f"{result[key]:.3f} / {100 * result[f'{prefix}tar_type_{kind}']:.1f} %"

    what = result.get("model_set") or result.get("reconstructor") or "mean training face"
    return table(
        [
            "reconstruction",
            "PSNR (dB)",
            "SSIM",
            "MS-SSIM",
            "type I acc. / TAR@0.1 % (FaceNet)",
            "type I (dlib)",
            "type II (FaceNet)",
            "type II (dlib)",
        ],
        [
            [
                what,
                f"{result['psnr']:.2f} ± {result['psnr_std']:.2f}",
                f"{result['ssim']:.3f}",
                f"{result['ms_ssim']:.3f}",
                pair("", "i"),
                pair("dlib_", "i"),
                pair("", "ii"),
                pair("dlib_", "ii"),
            ]
        ],
    )


def _modes(point: dict) -> str:
    chosen = point.get("modes_chosen", {})
    return ", ".join(f"{name} {count}" for name, count in sorted(chosen.items(), key=lambda kv: -kv[1]))


def _curve_name(label: str) -> str:
    """``eval/results/x.json:curve`` -> ``curve (x.json)``; a bare curve name stays as it is."""
    path, sep, curve = label.rpartition(":")
    return f"{curve} ({pathlib.Path(path).name})" if sep and path.endswith(".json") else label


def bd_rates(result: dict) -> str:
    rows = [
        [
            _curve_name(r["test"]),
            _curve_name(r["anchor"]),
            percent(r.get("bd_rate_percent")) or r.get("bd_rate_error", ""),
            f"{r['bd_psnr_db']:+.2f}" if "bd_psnr_db" in r else r.get("bd_psnr_error", ""),
            f"{r['psnr_overlap']:.2f}",
        ]
        for r in result["bd"]
    ]
    return table(["proposed", "anchor", "BD-rate", "BD-PSNR (dB)", "PSNR overlap"], rows)


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
        + (f", learned families {', '.join(result['learned_families'])}" if result.get("learned_families") else "")
        + f" (MS-SSIM on {'every face' if stride == 1 else f'one face in {stride}'}); base layer alone: "
        f"{result['base_file_bits_per_face']:.1f} bits/face as a file, {result['base_record_bits_per_face']:.1f} "
        "as a record\n\n"
        + table(["prediction alone (base layer only)", "PSNR (dB)", "MS-SSIM"], alone)
        + "\n\n"
        + table(
            ["curve", "parameter", "file bits/face", "payload bits/face", "PSNR (dB)", "MS-SSIM", "modes chosen"], rows
        )
        + "\n\n"
        + bd_rates(result)
    )


def modern_codecs(result: dict) -> str:
    """One row per curve of a rate-distortion run with the modern codecs: its rates and PSNRs, and its BD-rate
    against JPEG2000, against JPEG files and against the other anchors it was compared with (its own format's files
    and payloads, for the scalable streams)."""
    bd = {(r["test"], r["anchor"]): r.get("bd_rate_percent") for r in result["bd"]}

    def cell(test: str, anchor: str) -> str:
        return percent(bd.get((test, anchor)))

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
    """The stages of each part a benchmark run measured (``crops``: from aligned crops, with its ratios; ``files``:
    image files -> .sfc, with its summary), after the CPU and the load it ran under."""
    parts = {name: result[name] for name in ("crops", "files") if name in result} or {"crops": result}
    cpu = result.get("cpu", {})
    flags_on = " ".join(name for name, on in cpu.get("flags", {}).items() if on)
    out = [
        f"{result['cpu_count']} cores ({cpu.get('model', 'CPU not recorded')}; {flags_on or 'flags not recorded'}), "
        f"1-minute load {result['load_average_1min']:.1f}; full encode/decode with {result['enhancement']} "
        f"{result['quality']}, mode {result['mode']}, model set {next(iter(parts.values()))['model_set']}"
    ]
    for name, part in parts.items():
        rows = [
            [r["stage"], f"{r['batch_1_faces_per_s']:,.1f}", f"{r['batched_faces_per_s']:,.1f}", r["batch"]]
            for r in part["stages"]
        ]
        out.append(table([f"stage ({name})", "faces/s, batch 1", "faces/s, batched", "batch"], rows))
        extra = part.get("ratios") or part.get("summary") or {}
        rows = [[key, f"{value:.3f}" if isinstance(value, float) else value] for key, value in extra.items()]
        out.append(table(["ratio (batched)" if "ratios" in part else "summary", "value"], rows))
    return "\n\n".join(out)


def learned_speed(result: dict) -> str:
    columns = ["encode batch 64 (faces/s)", "decode batch 64 (faces/s)", "encode batch 1 (faces/s)"]
    columns.append("decode batch 1 (faces/s)")
    rows = [
        [name, f"{codec['bits_per_face']:,.0f}", *(f"{codec[c]:.1f}" for c in columns)]
        for name, codec in result["codecs"].items()
    ]
    note = f"{result['note']}\n\n" if "note" in result else ""
    if "cpu" in result:
        flags_on = " ".join(name for name, on in result["cpu"]["flags"].items() if on)
        note += f"{result['cpu']['model']} ({flags_on}), 1-minute load {result['load_average_1min']:.1f}\n\n"
    return note + table(["codec", "bits per face", *(c.replace(" (faces/s)", "") for c in columns)], rows)


def learning_curve(result: dict) -> str:
    """Per scored step: the snapshot's span of bits and PSNR, and its BD-rate against each anchor."""
    anchors = sorted({row["anchor"] for rows in result["bd"].values() for row in rows})
    rows = []
    for step in sorted(result["bd"], key=int):
        points, bd = result["snapshots"][step], {r["anchor"]: r.get("bd_rate_percent") for r in result["bd"][step]}
        rows.append(
            [
                f"{int(step):,}",
                f"{min(p['bits_per_face'] for p in points):,.0f}..{max(p['bits_per_face'] for p in points):,.0f}",
                f"{min(p['psnr'] for p in points):.2f}..{max(p['psnr'] for p in points):.2f}",
                *(percent(bd.get(a)) for a in anchors),
            ]
        )
    start = ""
    if result.get("init_from"):
        start = f"; step {result.get('steps_before', 0):,} is `{result['init_from']}`, where this run started"
    head = f"{result['kind']} codec, every trained quality at a fixed mode, {result['num_images']} crops{start}\n\n"
    bits = "bits/face (whole files)" if result["kind"] == "conditional" else "bits/face (payloads)"
    return head + table(["step", bits, "PSNR (dB)", *(f"vs {a}" for a in anchors)], rows)


def identification(result: dict) -> str:
    rows = [
        [r["features"], f"{r['bits_per_face']:,.0f}", f"{100 * r['rank1']:.1f} %"] for r in result["identification"]
    ]
    speed = [
        [
            f"{r['gallery']:,}",
            f"{r['exact_queries_per_s']:,.0f}",
            f"{r['hnsw_queries_per_s']:,.0f}",
            f"{r['hnsw_build_s']:.0f} s",
            f"{100 * r['hnsw_rank1_agreement']:.1f} %",
        ]
        for r in result["speed"]
    ]
    return (
        f"{result['images']} crops: gallery {result['gallery']} identities, {result['probes']} probes\n\n"
        + table(["features", "bits/face (file)", "rank-1"], rows)
        + "\n\n"
        + table(["gallery", "exact, queries/s", "FAISS HNSW, queries/s", "HNSW build", "HNSW rank-1 = exact"], speed)
    )


def archive_throughput(result: dict) -> str:
    return table(
        ["images", "enhancement", "sfc compress, faces/s", "Beam DirectRunner, faces/s", "workers", "identical files"],
        [
            [
                result["images"],
                result["enhancement"],
                f"{result['sfc_compress_faces_per_s']:.2f}",
                f"{result['beam_faces_per_s']:.2f}",
                result["beam_workers"],
                f"{result['identical_files']} of {result['images']}",
            ]
        ],
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


def fuzz(result: dict) -> str:
    return (
        table(
            [
                "inputs",
                "minutes",
                "crashes or hangs",
                "silent splices",
                "refused (SfcError)",
                "decoded: feature / reconstruction / full",
                "splices refused",
                "RSS, models loaded / peak (MB)",
            ],
            [
                [
                    f"{result['runs']:,}",
                    f"{result['wall_time_s'] / 60:.1f}",
                    result["crashes"],
                    result["silent_splices"],
                    f"{result['refused']:,}",
                    f"{result['decoded_base']:,} / {result['decoded_reconstruction']:,} / {result['decoded_full']:,}",
                    f"{result['splices_refused']:,}",
                    f"{result['models_loaded_rss_mb']:,.0f} / {result['peak_rss_mb']:,.0f}",
                ]
            ],
        )
        + _parsed_by_codec(result)
        + _stopped_by(result)
    )


def _stopped_by(result: dict) -> str:
    """What ended a run early (libFuzzer's line: a crash, a hang or the RSS limit)."""
    failure = result.get("first_failure")
    return f"\n\nStopped by: `{failure.strip()}`" if failure else ""


def _parsed_by_codec(result: dict) -> str:
    """Inputs that parsed whole, by enhancement codec: how often each payload decoder was reached."""
    if "parsed_by_codec" not in result:
        return ""
    counts = result["parsed_by_codec"]
    return "\n\n" + table(["inputs parsed whole, by codec", *counts], [["", *(f"{n:,}" for n in counts.values())]])


def batch_invariance(result: dict) -> str:
    decoding = [[key.replace("_", " "), value] for key, value in result["decoding"].items()]
    encoding = [[key.replace("_", " "), value] for key, value in result["encoding"].items()]
    return (
        f"{result['vectors']} conformance vectors decoded alone and in batches; {result['fixture_faces']} fixture "
        f"faces coded alone and as one batch (model set {result['model_set']})\n\n"
        + table(["decoding", "count"], decoding)
        + "\n\n"
        + table(["encoding", "count"], encoding)
    )


# -- the document ------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Section:
    """One result file: its heading, the renderer of its JSON and an optional sentence on what it measures."""

    file: str
    render: Callable[[dict], str]
    title: str
    note: str = ""


SECTIONS = [
    Section("verify_lfw_mtcnn.json", verification, "LFW verification, uncoded FaceNet features"),
    Section("rate_accuracy_mtcnn.json", rate_accuracy, "Rate-accuracy: base layer against JPEG / JPEG2000 (Fig. 2)"),
    Section("reconstruction.json", reconstruction, "Reconstruction from the base layer: the paper's model set"),
    Section("reconstruction_identity_ft0.01.json", reconstruction, "Reconstruction: model set step0.08-faces"),
    Section("reconstruction_thumbnail2.json", reconstruction, "Reconstruction: the default set step0.08-faces-thumb2"),
    Section("mean_face_baseline.json", reconstruction, "Reconstruction floor: the mean training face"),
    Section("lambda_sweep.json", lambda_sweep, "Reconstructor: perceptual weight sweep"),
    Section(
        "compare_hyperprior.json",
        bd_rates,
        "The learned codec against the best anchors (3,074 crops)",
        "![the learned codec against the best anchors](../eval/results/compare_hyperprior.png)",
    ),
    Section(
        "rate_distortion_hyperprior.json",
        rate_distortion,
        "The learned codec: curves (3,074 crops)",
        "![the learned codec's curves](../eval/results/rate_distortion_hyperprior.png)",
    ),
    Section(
        "learning_curve_conditional.json",
        learning_curve,
        "The learned codec's learning curve (512 crops)",
        "![learning curve](../eval/results/learning_curve_conditional.png)",
    ),
    Section(
        "learning_curve_control.json",
        learning_curve,
        "The end-to-end control's learning curve (512 crops)",
        "The same architecture without p, scored as its payloads alone (no base layer, no container); the "
        "conditional codec's rows above count whole `.sfc` files.\n\n"
        "![learning curve of the control](../eval/results/learning_curve_control.png)",
    ),
    Section("rate_distortion_modern.json", rate_distortion, "Modern codecs: every anchor and stream (3,074 crops)"),
    Section("rate_distortion_modern_512.json", modern_codecs, "Modern anchors: AVIF, AV1 payload, JPEG XL, WebP"),
    Section("rate_distortion_thumb2.json", rate_distortion, "Default set, JPEG and JPEG2000 (3,074 crops)"),
    Section("rate_distortion_paper_set.json", rate_distortion, "The paper's configuration: JPEG and JPEG2000"),
    Section("rate_distortion_learned_paper_set.json", rate_distortion, "The paper's configuration: learned"),
    Section("benchmark.json", benchmark, "Speed of every stage"),
    Section("learned_speed.json", learned_speed, "Speed of the learned codec against the family it replaced"),
    Section("identification.json", identification, "1:N identification and search speed"),
    Section("archive_throughput.json", archive_throughput, "Archive pipeline (Apache Beam) throughput"),
    Section("batch_invariance.json", batch_invariance, "Batch and single coding"),
    Section("fuzz_decode_every_seed.json", fuzz, "Decoder fuzzing: every seed, 100,000 inputs"),
    Section("fuzz_decode_every_seed_margin256.json", fuzz, "Decoder fuzzing: every seed, the default RSS margin"),
    Section("fuzz_decode_new_codecs.json", fuzz, "Decoder fuzzing: the modern codecs' seeds"),
    Section("fuzz_decode_new_codecs_long.json", fuzz, "Decoder fuzzing: the modern codecs' seeds, a long run"),
    Section("fuzz_decode_default_set15.json", fuzz, "Decoder fuzzing: every registered model in the seeds"),
    Section("fuzz_decode_thumbnail_set.json", fuzz, "Decoder fuzzing: the thumbnail model set's files"),
]

HEADER = """# Results

Generated by `python eval/summarize.py --output docs/results.md --overwrite` from the JSONs in `eval/results/`:
do not edit (tests/test_summarize.py fails on a hand edit). Every table names its file and the command that wrote
it; docs/evaluation.md says what each script measures. LFW folds 1-4 of `pairs.txt` (identities disjoint from
training), MTCNN crops, every bit of each `.sfc` file counted; BD-rates by the `bjontegaard` package (Akima), over
the PSNR range two curves share (the "PSNR overlap")."""


def load(results: pathlib.Path, name: str) -> dict[str, Any]:
    return json.loads((results / name).read_text())


def wrap(line: str, width: int = 116) -> str:
    """A shell command broken before its flags into lines of at most ``width`` characters (a trailing comment stays
    on the last line)."""
    code, hash_, comment = line.partition("  # ")
    lines: list[str] = []
    for part in code.split(" --"):
        if lines and len(lines[-1]) + len(part) + 3 <= width:
            lines[-1] += " --" + part
        else:
            lines.append(("    --" if lines else "") + part)
    return " \\\n".join(lines) + (f"  # {comment}" if hash_ else "")


def section(results: pathlib.Path, entry: Section) -> str:
    result = load(results, entry.file)
    commands = [wrap(line) for line in command(entry.file, result).splitlines()]
    lines = [f"## {entry.title}", "", f"`eval/results/{entry.file}`, from:", "", "```sh", *commands]
    lines += ["```", ""]
    if entry.note:
        lines += [entry.note, ""]
    return "\n".join(lines + [entry.render(result)])


def document(results: pathlib.Path) -> str:
    """The whole of docs/results.md."""
    contents = [f"- [{s.title}](#{anchor(s.title)})" for s in SECTIONS]
    body = [section(results, s) for s in SECTIONS]
    return "\n\n".join([HEADER, "\n".join(contents), *body]) + "\n"


def anchor(title: str) -> str:
    """GitHub's heading anchor."""
    kept = "".join(c for c in title.lower() if c.isalnum() or c in " -_")
    return kept.replace(" ", "-")


# -- the README's headline table ---------------------------------------------------------------------------


def _bare(label: str) -> str:
    path, sep, curve = label.rpartition(":")
    return curve if sep and path.endswith(".json") else label


def _bd(result: dict, test: str, anchor_: str) -> float:
    for r in result["bd"]:
        if _bare(r["test"]) == test and _bare(r["anchor"]) == anchor_:
            return r["bd_rate_percent"]
    raise KeyError(f"no BD-rate of {test!r} against {anchor_!r}")


def _point(result: dict, codec: str, parameter: Any) -> dict:
    return next(p for p in result["points"] if p["codec"] == codec and str(p["parameter"]) == str(parameter))


def _stage(result: dict, stage: str) -> float:
    return next(r["batched_faces_per_s"] for r in result.get("crops", result)["stages"] if r["stage"] == stage)


def headline(results: pathlib.Path) -> str:
    """The README's one table: rate-accuracy, rate-distortion against the best anchors, speed."""
    accuracy = load(results, "rate_accuracy_mtcnn.json")
    base, j2k, jpeg = (_point(accuracy, *p) for p in (("base", 0.08), ("jpeg2000", 50.0), ("jpeg", 20)))
    compare = load(results, "compare_hyperprior.json")
    paper = load(results, "rate_distortion_paper_set.json")
    paper_learned = load(results, "rate_distortion_learned_paper_set.json")
    speed = load(results, "benchmark.json")
    hp = "base+hyperprior-conditional (auto)"
    rows = [
        [
            "verification accuracy (2,400 pairs) at bits per face",
            f"base layer: {base['accuracy']:.4f} at {base['bits_per_face']:.1f}",
            f"JPEG2000 {j2k['accuracy']:.4f} at {j2k['bits_per_face']:,.0f}; "
            f"JPEG {jpeg['accuracy']:.4f} at {jpeg['bits_per_face']:,.0f}",
            "rate_accuracy_mtcnn.json",
        ],
        [
            "BD-rate of base + `hyperprior-conditional` (auto, 3,074 crops)",
            f"{percent(_bd(compare, hp, 'jpeg2000'))} vs JPEG2000, {percent(_bd(compare, hp, 'webp'))} vs WebP, "
            f"{percent(_bd(compare, hp, 'jpegxl'))} vs JPEG XL",
            f"{percent(_bd(compare, hp, 'avif'))} vs AVIF files, "
            f"{percent(_bd(compare, hp, 'av1 (payload)'))} vs the AV1 payload alone",
            "compare_hyperprior.json",
        ],
        [
            "BD-rate of the paper's configuration (3,074 crops)",
            f"JPEG: {percent(_bd(paper, 'base+jpeg (paper)', 'jpeg'))} vs JPEG",
            f"JPEG2000: {percent(_bd(paper, 'base+jpeg2000 (paper)', 'jpeg2000'))} vs JPEG2000; learned: "
            f"{percent(_bd(paper_learned, 'base+bls2017-residual (paper)', 'jpeg2000'))} vs JPEG2000",
            "rate_distortion_paper_set.json, rate_distortion_learned_paper_set.json",
        ],
        [
            f"faces/s, batches of 64, {speed['cpu_count']} CPU cores",
            f"base-only decode {_stage(speed, 'base-only decode (.sfc -> feature)'):,.0f}; "
            f"full decode {_stage(speed, 'full decode (.sfc -> face)'):,.0f}",
            f"full encode {_stage(speed, 'full encode (crop -> .sfc, mode auto)'):,.1f} "
            f"(FaceNet {_stage(speed, 'feature extraction'):,.1f})",
            "benchmark.json",
        ],
    ]
    return table(["measure", "ours", "against", "eval/results/"], rows)


def modern(results: pathlib.Path) -> str:
    """The README's rate-distortion table: every anchor (files and payloads) and every scalable stream of the
    3,074-crop run with the modern codecs."""
    return modern_codecs(load(results, "rate_distortion_modern.json"))


def main(_):
    results = pathlib.Path(FLAGS.results or settings.REPO_ROOT / "eval" / "results")
    if FLAGS.headline or FLAGS.modern:
        text = (headline if FLAGS.headline else modern)(results) + "\n"
    else:
        text = document(results)
    if FLAGS.output is None:
        sys.stdout.write(text)
        return
    output = pathlib.Path(FLAGS.output)
    if output.exists() and not FLAGS.overwrite:
        sys.exit(f"summarize: {output} exists (pass --overwrite to replace it)")
    output.write_text(text)


if __name__ == "__main__":
    app.run(main)
