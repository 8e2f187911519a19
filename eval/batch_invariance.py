"""Whether a face codes and decodes to the same bytes alone and in batches, and what that costs.

  python eval/batch_invariance.py --output_json eval/results/batch_invariance.json

Decoding: every conformance vector (tests/fixtures/conformance) at the reconstruction and full layers, one file at a
time and in consecutive batches of each ``--batch_sizes``; the counts of files whose pixels differ from the single
decode. Encoding: the fixture faces (center crops) coded one at a time and as one batch with every enhancement
codec, and the count of files whose bytes differ. Cost: a network never runs on one row (``inference.batch_invariant``
runs it as two); per network, the median time of a one-row call with and without that, and the decode speed of
whole files (JPEG q50 in the paper's mode) at batch 1 and 64 with and without it (interleaved, in one process).
"""

import pathlib
import statistics
import subprocess
import time

import numpy as np
import tensorflow as tf
from absl import app, flags

import sfc_tf
from sfc_tf import runs
from sfc_tf.base import align, facenet
from sfc_tf.codec import ScalableCodec
from sfc_tf.evaluation import cpu, curves

FLAGS = flags.FLAGS
flags.DEFINE_list("batch_sizes", ["2", "3", "7", "64", "150"], "Batch sizes compared with decoding alone.")
flags.DEFINE_integer("repeats", 30, "Timed calls per network and variant.")
flags.DEFINE_string("vectors", None, "Folder of .sfc files to decode (default: the conformance vectors).")
flags.DEFINE_string("output_json", None, "Result JSON; default: runs/batch_invariance/<time>/batch_invariance.json.")
runs.define_flags(trainer=False)

REPO = pathlib.Path(__file__).resolve().parent.parent
VECTORS = REPO / "tests" / "fixtures" / "conformance"
FACES = REPO / "tests" / "fixtures" / "lfw"
# (enhancement, quality, mode) of every codec: the paper's mode codes against the reconstruction, which a batch of
# one changed; mode auto codes every candidate prediction
ENCODINGS = (
    ("none", None, "auto"),
    ("jpeg-file", 90, "reconstruction"),
    ("jpeg", 90, "reconstruction"),
    ("jpeg2000", 10.0, "reconstruction"),
    ("avif", 70, "reconstruction"),
    ("jpegxl", 80, "reconstruction"),
    ("webp", 80, "reconstruction"),
    ("learned", 3, "reconstruction"),
    ("conditional", 3, "auto"),
)


def images(decoded) -> list[np.ndarray]:
    return [d.image for d in decoded]


def decoding(codec: ScalableCodec, files: list[bytes], sizes: list[int]) -> dict:
    result = {}
    for layers in ("reconstruction", "full"):
        alone = [codec.decode(f, layers).image for f in files]
        for size in sizes:
            batched = [
                image
                for i in range(0, len(files), size)
                for image in images(codec.decode_many(files[i : i + size], layers))
            ]
            result[f"{layers}_batch_{size}_files_differing"] = sum(
                not np.array_equal(a, b) for a, b in zip(alone, batched)
            )
    return result


def encoding(codec: ScalableCodec, crops: np.ndarray) -> dict:
    result = {}
    for enhancement, quality, mode in ENCODINGS:
        together = codec.encode_crops(crops, enhancement, quality, mode)
        alone = [codec.encode_crops(crops[i : i + 1], enhancement, quality, mode)[0] for i in range(len(crops))]
        result[f"{enhancement}_{quality}_{mode}_files_differing"] = sum(a != b for a, b in zip(alone, together))
    return result


def median_ms(function, x, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        np.asarray(function(x))
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def one_row_cost(codec: ScalableCodec, crop: np.ndarray, feature: np.ndarray, repeats: int) -> dict:
    """Median ms of a one-row call of each network: as the codec runs it (two rows) and on one row."""
    networks = {
        "facenet": (codec.extractor.model, facenet.standardize(crop[None], "fixed").astype(np.float32)),
        "reconstructor": (codec.models.reconstructor, feature[None]),
        "predictor": (codec.models.predictor.network, feature[None]),
    }
    result = {}
    for name, (model, x) in networks.items():
        padded = tf.function(lambda batch, m=model: m(tf.concat([batch, batch], 0), training=False)[:1])
        single = tf.function(lambda batch, m=model: m(batch, training=False))
        padded(x), single(x)  # traced
        timings = {"one_row_ms": [], "as_two_rows_ms": []}
        for _ in range(3):  # interleaved, so that load from other processes falls on both alike
            timings["one_row_ms"].append(median_ms(single, x, repeats // 3))
            timings["as_two_rows_ms"].append(median_ms(padded, x, repeats // 3))
        result[name] = {k: round(statistics.median(v), 2) for k, v in timings.items()}
    return result


def one_row_graph(model) -> tf.types.experimental.GenericFunction:
    """A network's inference graph as it was before ``inference.batch_invariant``: one row runs as one row."""
    return tf.function(
        lambda x: model(x, training=False),
        autograph=False,
        input_signature=[tf.TensorSpec((None, model.feature_dim), tf.float32)],
    )


def decode_speed(codec: ScalableCodec, files: list[bytes], layers: str, rounds: int = 3) -> dict:
    """faces/s decoding ``files`` one at a time (16 files) and 64 at once, with the networks as they run (a single row
    run as two) and as they ran before (one row), in the same process, the variants interleaved ``rounds`` times."""
    networks = [codec.models.reconstructor, codec.models.predictor.network]
    variants = {"as_two_rows": [n.infer for n in networks], "one_row": [one_row_graph(n) for n in networks]}
    speeds = {f"{variant}_batch_{size}_faces_per_s": [] for variant in variants for size in (1, 64)}
    for _ in range(rounds):
        for variant, graphs in variants.items():
            for network, graph in zip(networks, graphs):
                network.__dict__["infer"] = graph  # the cached property ``infer``, replaced
            codec.decode_many(files[:2], layers)  # traced, warm
            start = time.perf_counter()
            for f in files[:16]:
                codec.decode(f, layers)
            speeds[f"{variant}_batch_1_faces_per_s"].append(16 / (time.perf_counter() - start))
            start = time.perf_counter()
            codec.decode_many((files * 64)[:64], layers)
            speeds[f"{variant}_batch_64_faces_per_s"].append(64 / (time.perf_counter() - start))
    for network, graph in zip(networks, variants["as_two_rows"]):
        network.__dict__["infer"] = graph
    return {name: round(statistics.median(values), 1) for name, values in speeds.items()}


def code_version() -> str:
    """The commit of the sfc_tf that ran (the same script measures the code before a change and after it)."""
    package = pathlib.Path(sfc_tf.__file__).resolve().parent
    run = subprocess.run(["git", "-C", str(package), "describe", "--always", "--dirty"], capture_output=True, text=True)
    return f"{package}: {run.stdout.strip() or 'unknown'}"


def main(_):
    runs.resolve_outputs(FLAGS, "batch_invariance")
    files = [p.read_bytes() for p in sorted(pathlib.Path(FLAGS.vectors or VECTORS).glob("*.sfc"))]
    codec = ScalableCodec.from_pretrained(align="center")
    crops = np.stack([align.center_crop(align.load_image(p)) for p in sorted(FACES.glob("*/*.jpg"))])
    # the full decode needs the reconstructor
    paper_files = codec.encode_crops(crops, "jpeg-file", 50, "reconstruction")
    feature = codec.decode(paper_files[0], "base").feature
    started = time.time()
    result = {
        "command": f"python eval/batch_invariance.py --batch_sizes {','.join(FLAGS.batch_sizes)}"
        + (f" --vectors {FLAGS.vectors}" if FLAGS.vectors else ""),
        "sfc_tf": code_version(),
        "vectors": len(files),
        "decoding": decoding(codec, files, [int(s) for s in FLAGS.batch_sizes]),
        "fixture_faces": len(crops),
        "encoding": encoding(codec, crops),
        "one_row_call_ms": one_row_cost(codec, crops[0], feature, FLAGS.repeats),
        "decode_speed": {layers: decode_speed(codec, paper_files, layers) for layers in ("reconstruction", "full")},
        "model_set": codec.model_set.name,
        **cpu.conditions(),
    }
    result["wall_time_s"] = round(time.time() - started, 1)
    curves.write_json(FLAGS.output_json, result)
    print(result)


if __name__ == "__main__":
    app.run(main)
