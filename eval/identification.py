"""1:N identification from base layers (sfc index / sfc search) and search speed against the gallery size.

  python eval/identification.py --lfw_dir ../shared/data/lfw --output_json eval/results/identification.json

Identification: the crops of LFW folds 1-4; gallery = the first image (sorted) of every identity, probes = the
other images of identities with several. Each registered model set codes every face to a base-only ``.sfc`` file
(``ScalableCodec``); the gallery index is built from the gallery's files (``SearchIndex.from_files``), the probes'
files are decoded and searched, as ``sfc index`` / ``sfc search`` do. The float FaceNet features are the
reference. Speed: synthetic galleries of N entries, each a real LFW FaceNet feature moved by Gaussian noise about
as far as another image of the same person is (re-normalised), queried with entries moved again; exact search
against FAISS HNSW (queries/s for a batch of queries, graph build time, rank-1 agreement with exact search).
"""

import json
import os
import pathlib
import time

import numpy as np
import tensorflow  # noqa: F401  (TF 2.14 builds no functional Keras model if first imported inside app.run)
from absl import app, flags

from sfc_tf import metrics, runs, zoo
from sfc_tf.apps.search import SearchIndex
from sfc_tf.codec import ScalableCodec
from sfc_tf.evaluation import curves

FLAGS = flags.FLAGS
flags.DEFINE_string("lfw_dir", None, "LFW root.", required=True)
flags.DEFINE_list("folds", ["1", "2", "3", "4"], "1-based folds of pairs.txt whose images are used.")
flags.DEFINE_list("model_sets", [], "Registered model sets (names or ids); default: all.")
flags.DEFINE_list("gallery_sizes", ["10000", "100000", "1000000"], "Gallery sizes of the speed measurement.")
flags.DEFINE_integer("queries", 1000, "Queries per speed measurement.")
flags.DEFINE_string("output_json", None, "Result JSON; default: runs/identification/<time>/identification.json.")
runs.define_flags(trainer=False)
flags.DEFINE_string("plot", None, "PNG: rank-1 accuracy against bits per face.")


def split(paths: list[str]) -> tuple[list[int], list[int]]:
    """Gallery rows (first image of each identity) and probe rows (the others of identities with several)."""
    by_identity: dict[str, list[int]] = {}
    for row, path in sorted(enumerate(paths), key=lambda item: item[1]):
        by_identity.setdefault(pathlib.Path(path).parent.name, []).append(row)
    gallery = [rows[0] for rows in by_identity.values()]
    probes = [row for rows in by_identity.values() for row in rows[1:]]
    return gallery, probes


def identification(faces, model_sets) -> tuple[list[dict], int, int]:
    labels = [pathlib.Path(p).parent.name for p in faces.paths]
    gallery, probes = split(faces.paths)
    truth = [labels[r] for r in probes]
    mean = ScalableCodec.from_pretrained().base_layer.mean
    reference = SearchIndex(
        metrics.centered(faces.features[gallery], mean),
        [labels[r] for r in gallery],
        [faces.paths[r] for r in gallery],
        zoo.model_set().id,
        mean,
    )
    found = reference.search(reference.centre(faces.features[probes]), 1, "exact").labels
    rows = [
        {
            "features": "float32 FaceNet (uncoded)",
            "bits_per_face": 32 * faces.features.shape[1],
            "rank1": float(np.mean([f[0] == t for f, t in zip(found, truth)])),
        }
    ]
    for entry in model_sets:
        codec = ScalableCodec.from_pretrained(entry.id, align="mtcnn")
        files = codec.encode_analysis(codec.analyse(faces.crops, faces.features)).files
        index = SearchIndex.from_files(
            codec, [files[r] for r in gallery], [labels[r] for r in gallery], [faces.paths[r] for r in gallery]
        )
        decoded = np.stack([d.feature for d in codec.decode_many([files[r] for r in probes], "base")])
        found = index.search(index.centre(decoded), 1, "exact").labels
        rows.append(
            {
                "features": f"base layer, model set {entry.name}",
                "model_set": entry.id,
                "bits_per_face": float(np.mean([8 * len(f) for f in files])),
                "rank1": float(np.mean([f[0] == t for f, t in zip(found, truth)])),
            }
        )
        print(rows[-1])
    return rows, len(gallery), len(probes)


def moved(features: np.ndarray, distance: float, rng) -> np.ndarray:
    """Unit features moved by isotropic Gaussian noise of expected norm ``distance``, re-normalised."""
    noise = rng.standard_normal(features.shape).astype(np.float32) * (distance / np.sqrt(features.shape[1]))
    out = features + noise
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def speed(features: np.ndarray, sizes: list[int], queries: int) -> list[dict]:
    rng = np.random.default_rng(0)
    rows = []
    for size in sizes:
        gallery = moved(features[rng.integers(0, len(features), size)], 0.8, rng)
        index = SearchIndex(gallery, [""] * size, [""] * size, 0, None)
        probe = moved(gallery[rng.integers(0, size, queries)], 0.5, rng)
        row = {"gallery": size, "queries": queries}
        start = time.perf_counter()
        exact = index.search(probe, 1, "exact")
        row["exact_queries_per_s"] = queries / (time.perf_counter() - start)
        start = time.perf_counter()
        index.search(probe[:1], 1, "faiss")  # builds the HNSW graph
        row["hnsw_build_s"] = time.perf_counter() - start
        start = time.perf_counter()
        approximate = index.search(probe, 1, "faiss")
        row["hnsw_queries_per_s"] = queries / (time.perf_counter() - start)
        row["hnsw_rank1_agreement"] = float(np.mean(exact.rows[:, 0] == approximate.rows[:, 0]))
        print(row)
        rows.append(row)
    return rows


def plot(rows: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    coded = [r for r in rows if "model_set" in r]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.semilogx([r["bits_per_face"] for r in coded], [r["rank1"] for r in coded], "o-", label="base layer (.sfc)")
    ax.axhline(rows[0]["rank1"], color="gray", ls="--", label="float32 features (uncoded)")
    ax.set(
        xlabel="bits per face (whole base-only .sfc file)",
        ylabel="rank-1 identification accuracy",
        title="1:N identification on LFW folds 1-4",
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(_):
    runs.resolve_outputs(FLAGS, "identification")
    start = time.time()
    _, faces = curves.lfw_pair_faces(FLAGS.lfw_dir, [int(f) for f in FLAGS.folds])
    model_sets = (
        [zoo.model_set(m if not m.isdigit() else int(m)) for m in FLAGS.model_sets]
        if FLAGS.model_sets
        else list(zoo.model_sets().values())
    )
    rows, gallery, probes = identification(faces, model_sets)
    result = {
        "images": len(faces.paths),
        "gallery": gallery,
        "probes": probes,
        "identification": rows,
        "speed": speed(faces.features, [int(s) for s in FLAGS.gallery_sizes], FLAGS.queries),
        "cpu_count": os.cpu_count(),
        "wall_time_s": round(time.time() - start, 1),
    }
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.output_json)), exist_ok=True)
    pathlib.Path(FLAGS.output_json).write_text(json.dumps(result, indent=1))
    if FLAGS.plot:
        plot(rows, FLAGS.plot)


if __name__ == "__main__":
    app.run(main)
