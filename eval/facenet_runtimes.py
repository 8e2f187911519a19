"""FaceNet's faster CPU runtimes against the float32 graph every encoder runs, in one run on the same crops: faces/s
at one batch size and the lowest cosine of a feature to its float32 reference (a float path must keep >= 0.9999 to
replace it), with the CPU's vector flags; and, on the LFW pairs of ``--accuracy_folds``, the verification accuracy
of the default base layer coding each runtime's features (a reduced-precision path must stay within 0.1 point of
the reference) and the share of base payloads identical to the reference's.

  python eval/facenet_runtimes.py --lfw_dir ../shared/data/lfw [--output_json FILE]

Runtimes: TensorFlow Lite with its XNNPACK delegate (float32); Keras mixed precision ``mixed_bfloat16`` (oneDNN
bfloat16 kernels on CPUs with AVX512_BF16 or AMX); grappler's oneDNN auto mixed precision (bfloat16), last because
it switches a process-wide optimizer option.
"""

import os
import pathlib
import time
from collections.abc import Callable

import numpy as np
import tensorflow as tf
from absl import app, flags

from sfc_tf import metrics, runs
from sfc_tf.base import align, facenet, inference
from sfc_tf.codec import ScalableCodec
from sfc_tf.evaluation import cpu, curves

FLAGS = flags.FLAGS
flags.DEFINE_string("lfw_dir", None, "LFW root.", required=True)
flags.DEFINE_integer("batch", 64, "Faces per call (the first of --lfw_dir/*/*.jpg, sorted, center crops).")
flags.DEFINE_integer("repeats", 2, "Timed calls per runtime after a warm-up; the fastest is kept.")
flags.DEFINE_list("accuracy_folds", ["1", "2", "3", "4"], "LFW folds of the accuracy check (empty: none).")
flags.DEFINE_string("output_json", None, "Result JSON; default: runs/facenet_runtimes/<time>/facenet_runtimes.json.")
runs.define_flags(trainer=False)


def fastest(call, x: np.ndarray) -> tuple[np.ndarray, float]:
    """Unit-norm features of ``call(x)`` and faces/s of its fastest timed call."""
    out = np.asarray(call(x), np.float32)
    best = float("inf")
    for _ in range(FLAGS.repeats):
        start = time.perf_counter()
        call(x)
        best = min(best, time.perf_counter() - start)
    return out / np.linalg.norm(out, axis=1, keepdims=True), len(x) / best


def tflite(model) -> Callable:
    """The model converted to TensorFlow Lite (float32), run by the XNNPACK delegate on every core."""
    signature = tf.TensorSpec((FLAGS.batch, facenet.IMAGE_SIZE, facenet.IMAGE_SIZE, 3), tf.float32)
    concrete = tf.function(lambda x: model(x, training=False)).get_concrete_function(signature)
    interpreter = tf.lite.Interpreter(
        model_content=tf.lite.TFLiteConverter.from_concrete_functions([concrete], model).convert(),
        num_threads=os.cpu_count(),
    )
    interpreter.allocate_tensors()
    source, target = interpreter.get_input_details()[0]["index"], interpreter.get_output_details()[0]["index"]

    def call(x):
        interpreter.set_tensor(source, x)
        interpreter.invoke()
        return interpreter.get_tensor(target)

    return call


def mixed_bfloat16(model) -> Callable:
    """The same weights in a model built under Keras's ``mixed_bfloat16`` policy (bfloat16 compute)."""
    tf.keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        mixed = facenet.build_model()
    finally:
        tf.keras.mixed_precision.set_global_policy("float32")
    mixed.set_weights(model.get_weights())
    graph = inference.graph(mixed, (facenet.IMAGE_SIZE, facenet.IMAGE_SIZE, 3))
    return lambda x: graph(x).numpy()


def auto_mixed_precision(model) -> Callable:
    """The float32 model traced anew with grappler's oneDNN bfloat16 auto mixed precision switched on."""
    tf.config.optimizer.set_experimental_options({"auto_mixed_precision_onednn_bfloat16": True})
    graph = inference.graph(model, (facenet.IMAGE_SIZE, facenet.IMAGE_SIZE, 3))
    return lambda x: graph(x).numpy()


def features(call, crops: np.ndarray) -> np.ndarray:
    """Unit-norm features of every crop, in calls of --batch faces (the last one padded: TFLite's shape is fixed)."""
    out = []
    for i in range(0, len(crops), FLAGS.batch):
        x = facenet.standardize(crops[i : i + FLAGS.batch])
        padded = np.concatenate([x, np.zeros((FLAGS.batch - len(x), *x.shape[1:]), x.dtype)])
        out.append(np.asarray(call(padded), np.float32)[: len(x)])
    f = np.concatenate(out)
    return f / np.linalg.norm(f, axis=1, keepdims=True)


class AccuracyCheck:
    """LFW verification accuracy of the default base layer coding one runtime's features, against the reference."""

    def __init__(self, folds: list[int]):
        self.pairs, self.faces = curves.lfw_pair_faces(FLAGS.lfw_dir, folds)
        self.base_layer = ScalableCodec.from_pretrained().base_layer
        self.reference = None

    def __call__(self, call) -> dict:
        payloads = self.base_layer.encode_payloads(features(call, self.faces.crops), self.faces.crops)
        decoded = self.base_layer.decode_payloads(payloads)
        result = metrics.evaluate_pairs(self.pairs, self.faces.index(), decoded, mean=self.base_layer.mean)
        self.reference = self.reference or payloads
        return {
            "lfw_accuracy": result.accuracy,
            "lfw_accuracy_std": result.accuracy_std,
            "identical_base_payloads": float(np.mean([a == b for a, b in zip(payloads, self.reference)])),
        }


def main(_):
    runs.resolve_outputs(FLAGS, "facenet_runtimes")
    output = pathlib.Path(FLAGS.output_json)
    paths = sorted(pathlib.Path(FLAGS.lfw_dir).glob("*/*.jpg"))[: FLAGS.batch]
    x = facenet.standardize(np.stack([align.center_crop(align.load_image(p)) for p in paths]))
    model = facenet.load_model()
    reference = inference.graph(model, (facenet.IMAGE_SIZE, facenet.IMAGE_SIZE, 3))
    check = AccuracyCheck([int(f) for f in FLAGS.accuracy_folds]) if FLAGS.accuracy_folds else None
    rows, expected = [], None
    for name, make in (
        ("float32 graph (reference)", lambda m: lambda v: reference(v).numpy()),
        ("TensorFlow Lite XNNPACK float32", tflite),
        ("Keras mixed_bfloat16", mixed_bfloat16),
        ("grappler oneDNN auto mixed precision bfloat16", auto_mixed_precision),
    ):
        call = make(model)
        got, rate = fastest(call, x)
        expected = got if expected is None else expected
        rows.append({"runtime": name, "faces_per_s": rate, "min_cosine": float(np.min(np.sum(got * expected, 1)))})
        rows[-1].update(check(call) if check else {})
    for row in rows:
        row["speed_vs_reference"] = row["faces_per_s"] / rows[0]["faces_per_s"]
        print(
            f"{row['runtime']:>46}: {row['faces_per_s']:6.1f} faces/s ({row['speed_vs_reference']:.2f}x), "
            f"lowest cosine to float32 {row['min_cosine']:.6f}"
            + (f", LFW accuracy {row['lfw_accuracy']:.4f}" if check else "")
        )
    curves.write_json(
        output,
        {
            **cpu.conditions(),
            "batch": len(x),
            "accuracy_folds": FLAGS.accuracy_folds,
            "accuracy_pairs": len(check.pairs) if check else 0,
            "runtimes": rows,
        },
    )


if __name__ == "__main__":
    app.run(main)
