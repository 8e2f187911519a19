"""Speed of every stage in faces/s on this CPU, batch 1 and batched, in one run, with the CPU's vector flags.

``crops``: every stage from an aligned crop, with Pillow JPEG, glymur JPEG2000 and every other image codec of the
registry (the headerless JPEG, AVIF, JPEG XL, WebP: their payloads, header rebuilt) on the same crops (ratios in
the JSON). ``files``: image files -> .sfc one file at a time (``ScalableCodec.encode``) against the batched
pipeline ``sfc compress`` runs (``sfc_tf.apps.batch_encode``: alignment threads ahead of network batches), the stages it
overlaps timed alone, ``sfc compress`` itself (start-up excluded: a one-file run subtracted), and FaceNet's plain
float32 forward pass at batch 64 as the yardstick. The full encode runs the per-face mode decision (``--mode
auto``: every candidate prediction is coded and the best kept) unless told a fixed mode.

  python eval/benchmark.py --lfw_dir ../shared/data/lfw [--parts files] [--output_json FILE]
"""

import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np
from absl import app, flags

from sfc_tf import bitstream, runs
from sfc_tf.apps import batch_encode
from sfc_tf.apps.prefetch import prefetched_map
from sfc_tf.base import align, facenet
from sfc_tf.codec import ScalableCodec
from sfc_tf.data import folders
from sfc_tf.enhancement import layer
from sfc_tf.enhancement.prediction import mode_id
from sfc_tf.enhancement.registry import make_codec
from sfc_tf.errors import SfcError
from sfc_tf.evaluation import anchors, cpu, curves

FLAGS = flags.FLAGS
flags.DEFINE_string("lfw_dir", None, "LFW root.", required=True)
flags.DEFINE_integer("faces", 64, "Faces per batched measurement.")
flags.DEFINE_integer("single", 8, "Faces timed one at a time for the batch-1 figures.")
flags.DEFINE_string("enhancement", "jpeg", "Enhancement codec of the full encode/decode measurement.")
flags.DEFINE_string("quality", "50", "Its quality parameter.")
flags.DEFINE_string("mode", "auto", "Prediction mode of the full encode (auto: per-face decision).")
flags.DEFINE_integer("learned_quality", 3, "Quality index of the learned enhancement codecs timed (if shipped).")
flags.DEFINE_list("image_codecs", ["jpeg", "avif", "jpegxl", "webp"], "Image codecs timed beside Pillow JPEG.")
flags.DEFINE_string("output_json", None, "Result JSON; default: runs/benchmark/<time>/benchmark.json.")
runs.define_flags(trainer=False)
flags.DEFINE_list("parts", ["crops", "files"], "crops: stages from aligned crops; files: image files -> .sfc.")
flags.DEFINE_integer("files", 128, "Image files of the files part: the first of --lfw_dir/*/*.jpg, sorted.")
flags.DEFINE_integer("batch_size", batch_encode.DEFAULT_BATCH, "Faces per network call of the batched pipeline.")
flags.DEFINE_string("align", "mtcnn", "Alignment of the files part.")


def rate(function, items, batched: bool) -> float:
    """faces/s of ``function`` over ``items``: one call for the batch, or one call per item."""
    function(items[:1]) if batched else function(items[0])  # warm-up (graph tracing, caches)
    start = time.perf_counter()
    if batched:
        function(items)
    else:
        for item in items:
            function(item)
    return len(items) / (time.perf_counter() - start)


def measured(stages: dict) -> list[dict]:
    """One row per stage: faces/s one at a time (the first ``--single`` items) and in one batched call. A stage is
    (function, items), or ((one at a time, batched), items) where the two paths are different functions."""
    rows = []
    for name, (function, items) in stages.items():
        one, many = function if isinstance(function, tuple) else (function, function)
        items = list(items) if isinstance(items, list) else items
        row = {
            "stage": name,
            "batch_1_faces_per_s": rate(one, items[: FLAGS.single], batched=False),
            "batched_faces_per_s": rate(many, items, batched=True),
            "batch": len(items),
        }
        rows.append(row)
        print(
            f"{name:>48}: {row['batch_1_faces_per_s']:10.1f} faces/s (batch 1), "
            f"{row['batched_faces_per_s']:10.1f} faces/s (batch {len(items)})"
        )
    return rows


def enhancement_stages(label: str, codec, mode: int, crops: np.ndarray, predictions) -> dict:
    """Encode and decode of the enhancement layer with ``codec`` against ``predictions`` (``enhancement.layer``)."""
    coded = layer.encode(codec, mode, crops, predictions)

    def encode(c):
        return layer.encode(codec, mode, c if c.ndim == 4 else c[None], predictions[: len(c) if c.ndim == 4 else 1])

    def decode(items):
        items = items if isinstance(items, list) else [items]
        return layer.decode(codec, mode, items, predictions[: len(items)])

    return {f"enhancement {label} encode": (encode, crops), f"enhancement {label} decode": (decode, coded)}


def image_codec_stages(codec, crops: np.ndarray) -> dict:
    """Encode and decode of crops with an image codec of the registry."""
    payloads = codec.encode_many(crops)
    label = f"{codec.name} q{codec.parameter}"
    return {
        f"{label} encode": (lambda c: codec.encode_many(c if c.ndim == 4 else c[None]), crops),
        f"{label} decode": (lambda b: codec.decode_many(b if isinstance(b, list) else [b]), payloads),
    }


def crops_part() -> dict:
    """Every stage from aligned crops of LFW fold 1, with the image codecs beside them."""
    pairs_file = f"{FLAGS.lfw_dir}/pairs.txt"
    _, faces = folders.load_pair_faces(
        FLAGS.lfw_dir,
        pairs_file,
        [1],
        "mtcnn",
        facenet.FeatureExtractor(),
        f"{facenet.DEFAULT_KEY}-fixed",
        progress=False,
    )
    crops = faces.crops[: FLAGS.faces]
    codec = ScalableCodec.from_pretrained(align="crop")
    models = codec.models
    base = models.base_layer
    features = models.extractor(crops)
    payloads = base.encode_payloads(features, crops)
    decoded, thumbnails = base.decode_layers(payloads)
    files = codec.encode_crops(crops, FLAGS.enhancement, FLAGS.quality, FLAGS.mode)
    base_files = [bitstream.strip_enhancement(f) for f in files]
    jpeg, jpeg2000 = make_codec("jpeg-file", 50), make_codec("jpeg2000", 40)
    jpeg_bytes, j2k_bytes = jpeg.encode_many(crops), jpeg2000.encode_many(crops)
    others = {name: make_codec(name) for name in FLAGS.image_codecs}  # each at its default quality
    # the decoder's predictions: with the colour thumbnail of a set that codes one
    reconstructions = base.correct(models.reconstruct(decoded), thumbnails)
    predicted = base.correct(models.predict(decoded), thumbnails)
    enhancement_codecs = [
        ("JPEG q50 (paper residual)", jpeg, "reconstruction", reconstructions),
        ("JPEG q50 (mmse residual)", jpeg, "mmse", predicted),
        ("JPEG2000 40:1 (paper residual)", jpeg2000, "reconstruction", reconstructions),
    ]
    for name, label, prediction in (
        ("learned", "learned residual", reconstructions),
        ("conditional", "conditional", predicted),
    ):
        try:
            learned = codec.enhancement_codec(name, FLAGS.learned_quality)
        except (SfcError, ValueError) as exc:  # not registered in this checkout: reported, not timed
            print(f"{label}: not timed ({exc})")
            continue
        enhancement_codecs.append(
            (
                f"{label} q{FLAGS.learned_quality}",
                learned,
                "reconstruction" if name == "learned" else "mmse",
                prediction,
            )
        )
    stages = {
        "feature extraction": (lambda x: models.extractor(x if x.ndim == 4 else x[None]), crops),
        "base encode": (lambda i: base.encode_payloads(features[np.r_[i]], crops[np.r_[i]]), np.arange(len(crops))),
        "base decode (bytes -> feature)": (lambda r: base.decode_payloads(r if isinstance(r, list) else [r]), payloads),
        "reconstruction": (lambda f: models.reconstruct(f if f.ndim == 2 else f[None]), decoded),
        "coding prediction (mmse)": (lambda f: models.predict(f if f.ndim == 2 else f[None]), decoded),
        f"full encode (crop -> .sfc, mode {FLAGS.mode})": (
            lambda c: codec.encode_crops(c if c.ndim == 4 else c[None], FLAGS.enhancement, FLAGS.quality, FLAGS.mode),
            crops,
        ),
        "base-only decode (.sfc -> feature)": (
            lambda f: codec.decode_many(f if isinstance(f, list) else [f], "base"),
            base_files,
        ),
        "full decode (.sfc -> face)": (lambda f: codec.decode_many(f if isinstance(f, list) else [f], "full"), files),
        **{
            name: stage
            for label, image_codec, mode, prediction in enhancement_codecs
            for name, stage in enhancement_stages(label, image_codec, mode_id(mode), crops, prediction).items()
        },
        "Pillow JPEG q50 encode": (lambda c: jpeg.encode_many(c if c.ndim == 4 else c[None]), crops),
        "Pillow JPEG q50 decode": (lambda b: jpeg.decode_many(b if isinstance(b, list) else [b]), jpeg_bytes),
        "glymur JPEG2000 40:1 encode": (lambda c: jpeg2000.encode_many(c if c.ndim == 4 else c[None]), crops),
        "glymur JPEG2000 40:1 decode": (lambda b: jpeg2000.decode_many(b if isinstance(b, list) else [b]), j2k_bytes),
        **{name: stage for other in others.values() for name, stage in image_codec_stages(other, crops).items()},
    }
    rows = measured(stages)
    by_name = {r["stage"]: r["batched_faces_per_s"] for r in rows}
    ratios = {
        "full decode / Pillow JPEG decode": by_name["full decode (.sfc -> face)"] / by_name["Pillow JPEG q50 decode"],
        "full decode / glymur JPEG2000 decode": by_name["full decode (.sfc -> face)"]
        / by_name["glymur JPEG2000 40:1 decode"],
        "base-only decode / Pillow JPEG decode": by_name["base-only decode (.sfc -> feature)"]
        / by_name["Pillow JPEG q50 decode"],
        **{
            f"{other.name} q{other.parameter} {step} / Pillow JPEG {step}": by_name[
                f"{other.name} q{other.parameter} {step}"
            ]
            / by_name[f"Pillow JPEG q50 {step}"]
            for other in others.values()
            for step in ("encode", "decode")
        },
    }
    return {"model_set": codec.model_set.name, "stages": rows, "ratios": ratios}


def files_part() -> dict:
    """Image files -> .sfc: one at a time against the batched pipeline, the stages it overlaps, ``sfc compress``."""
    paths = sorted(pathlib.Path(FLAGS.lfw_dir).glob("*/*.jpg"))[: FLAGS.files]
    codec = ScalableCodec.from_pretrained(align=FLAGS.align)
    aligner, workers = codec.aligner, batch_encode.default_workers()
    coding = (FLAGS.enhancement, FLAGS.quality, FLAGS.mode)

    def threaded(function):
        return lambda items: [f.result() for f in prefetched_map(function, items, workers, 2 * FLAGS.batch_size)]

    def pipeline(batch_size: int):
        def code(items):
            items = items if isinstance(items, list) else [items]
            return [o.data for o in batch_encode.encode_files(codec, items, *coding, batch_size=batch_size)]

        return code

    def one_at_a_time(path):
        return codec.encode(path, *coding)

    crops = np.stack(threaded(aligner)(paths))
    features = codec.extractor(crops)

    def coded(rows):
        rows = np.r_[rows]
        return codec.encode_analysis(codec.analyse(crops[rows], features[rows]), *coding)

    batched = f"file -> .sfc pipeline (batch 1 | batch {FLAGS.batch_size})"
    stages = {
        "image decoding (1 thread | threads)": ((align.load_image, threaded(align.load_image)), paths),
        f"{FLAGS.align} alignment (1 thread | threads)": ((aligner, threaded(aligner)), paths),
        "FaceNet float32": (lambda c: codec.extractor(c if c.ndim == 4 else c[None]), crops[:64]),
        "base layer + predictions + enhancement": (coded, np.arange(len(crops))),
        "file -> .sfc one at a time (codec.encode)": (
            (one_at_a_time, lambda ps: [one_at_a_time(p) for p in ps]),
            paths,
        ),
        batched: ((pipeline(1), pipeline(FLAGS.batch_size)), paths),
    }
    rows = measured(stages)
    same = pipeline(FLAGS.batch_size)(paths[: FLAGS.single]) == [one_at_a_time(p) for p in paths[: FLAGS.single]]
    by_name = {r["stage"]: r for r in rows}
    reference = by_name["file -> .sfc one at a time (codec.encode)"]["batched_faces_per_s"]
    facenet_64 = by_name["FaceNet float32"]["batched_faces_per_s"]
    pipelined = by_name[batched]["batched_faces_per_s"]
    command = compress_command_rate(paths)
    summary = {
        "files": len(paths),
        "align": FLAGS.align,
        "batch_size": FLAGS.batch_size,
        "alignment_threads": workers,
        "pipeline_bytes_equal_one_at_a_time": same,
        "sfc_compress_faces_per_s": command,
        "facenet_float32_batch64_faces_per_s": facenet_64,
        "pipeline / one at a time": pipelined / reference,
        "pipeline / FaceNet float32 batch 64": pipelined / facenet_64,
        "sfc compress / FaceNet float32 batch 64": command / facenet_64,
    }
    print(json.dumps(summary, indent=2))
    return {"model_set": codec.model_set.name, "stages": rows, "summary": summary}


def compress_command_rate(paths: list[pathlib.Path]) -> float:
    """faces/s of ``sfc compress`` over ``paths`` (copied into one folder), start-up excluded: the time of a run on
    the first file alone is subtracted from the run on all of them."""

    def seconds(files: list[pathlib.Path], folder: pathlib.Path) -> float:
        (folder / "in").mkdir()
        for path in files:
            (folder / "in" / path.name).write_bytes(path.read_bytes())
        command = [sys.executable, "-m", "sfc_tf.cli", "compress", str(folder / "in"), str(folder / "out")]
        command += ["--enhancement", FLAGS.enhancement, "--quality", FLAGS.quality, "--mode", FLAGS.mode]
        command += ["--align", FLAGS.align, "--batch_size", str(FLAGS.batch_size)]
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        return time.perf_counter() - start

    with tempfile.TemporaryDirectory() as one, tempfile.TemporaryDirectory() as every:
        return (len(paths) - 1) / (seconds(paths, pathlib.Path(every)) - seconds(paths[:1], pathlib.Path(one)))


def main(_):
    runs.resolve_outputs(FLAGS, "benchmark")
    output = pathlib.Path(FLAGS.output_json)
    parts = {"crops": crops_part, "files": files_part}
    unknown = set(FLAGS.parts) - set(parts)
    if unknown:
        raise app.UsageError(f"--parts: unknown {sorted(unknown)}; choose from {sorted(parts)}")
    results = {name: parts[name]() for name in FLAGS.parts}
    curves.write_json(
        output,
        {
            **cpu.conditions(),
            "cpu_count": os.cpu_count(),
            "enhancement": FLAGS.enhancement,
            "quality": FLAGS.quality,
            "mode": FLAGS.mode,
            "library_versions": anchors.library_versions(),
            **results,
        },
    )


if __name__ == "__main__":
    app.run(main)
