"""Speed of learned enhancement layers, old and new side by side in one run: encode and decode of each codec's
payloads (given the default model set's reconstruction for a conditional codec) in faces/s, batched and one face
at a time, on the first LFW folds 1-4 crops. Codecs are registered families at a quality, or checkpoint folders
(e.g. a retired family's, from a checkout of an older commit).

  python eval/learned_speed.py --lfw_dir ../shared/data/lfw --families hyperprior-conditional:8 \\
      --checkpoints OLD_CHECKOUT/checkpoints/enhancement/conditional_thumb2_l0.01 \\
      --output_json eval/results/learned_speed.json
"""

import time

import numpy as np
from absl import app, flags

from sfc_tf import runs, zoo
from sfc_tf.base import facenet
from sfc_tf.bitstream import NO_PREDICTION, RECONSTRUCTION
from sfc_tf.codec import ScalableCodec
from sfc_tf.enhancement import layer, learned
from sfc_tf.evaluation import cpu, curves

FLAGS = flags.FLAGS
flags.DEFINE_string("lfw_dir", None, "LFW root.", required=True)
flags.DEFINE_list("families", ["hyperprior-conditional:8"], "Registered learned families as NAME:QUALITY.")
flags.DEFINE_list("checkpoints", [], "Learned checkpoint folders (single-rate, or FOLDER:RATE for variable-rate).")
flags.DEFINE_integer("faces", 64, "Faces per batched measurement.")
flags.DEFINE_integer("single", 8, "Faces timed one at a time.")
flags.DEFINE_integer("repeats", 3, "Timed repetitions of each measurement (the fastest is kept).")
flags.DEFINE_string("output_json", None, "Result JSON; default: runs/learned_speed/<time>/learned_speed.json.")
runs.define_flags(trainer=False)


def parameters() -> dict[str, tuple]:
    """Label -> (checkpoint folder, rate index or None) of every codec to time."""
    found = {}
    for spec in FLAGS.families:
        name, _, quality = spec.partition(":")
        found[spec] = zoo.learned_family(name).checkpoint(int(quality or 1))
    for spec in FLAGS.checkpoints:
        parameter = learned.checkpoint_spec(spec)
        found[spec] = parameter if isinstance(parameter, tuple) else (parameter, None)
    return found


def fastest(work, repeats: int) -> float:
    """The shortest wall time of ``repeats`` runs of ``work`` (after one untimed run: tracing, caches)."""
    work()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


def measure(codec, mode: int, crops: np.ndarray, predictions: np.ndarray | None) -> dict:
    coded = layer.encode(codec, mode, crops, predictions)
    single = slice(0, FLAGS.single)

    def one_by_one(function):
        def run():
            for i in range(FLAGS.single):
                function(slice(i, i + 1))

        return run

    def encode(rows):
        return layer.encode(codec, mode, crops[rows], None if predictions is None else predictions[rows])

    def decode(rows):
        return layer.decode(codec, mode, coded[rows], None if predictions is None else predictions[rows])

    n = len(crops)
    return {
        "bits_per_face": float(np.mean([8 * len(c.payload) for c in coded])),
        f"encode batch {n} (faces/s)": n / fastest(lambda: encode(slice(None)), FLAGS.repeats),
        f"decode batch {n} (faces/s)": n / fastest(lambda: decode(slice(None)), FLAGS.repeats),
        "encode batch 1 (faces/s)": FLAGS.single / fastest(one_by_one(encode), FLAGS.repeats),
        "decode batch 1 (faces/s)": FLAGS.single / fastest(one_by_one(decode), FLAGS.repeats),
        "single_faces": len(crops[single]),
    }


def main(_):
    runs.resolve_outputs(FLAGS, "learned_speed")
    _, faces = curves.lfw_pair_faces(FLAGS.lfw_dir, [1, 2, 3, 4], "mtcnn", None, facenet.FeatureExtractor())
    crops = faces.crops[: FLAGS.faces]
    codec = ScalableCodec.from_pretrained(align="mtcnn")
    prediction = codec.analyse(crops, faces.features[: FLAGS.faces]).predictions(RECONSTRUCTION)
    results = {}
    for label, (folder, rate) in parameters().items():
        image_codec = learned.load_codec(folder if rate is None else (folder, rate))
        conditional = isinstance(image_codec, learned.ConditionalCodec)
        mode = RECONSTRUCTION if conditional else NO_PREDICTION
        results[label] = {
            "checkpoint": str(folder),
            "rate": rate,
            "conditional": conditional,
            **measure(image_codec, mode, crops, prediction if conditional else None),
        }
        print(label, {k: round(v, 1) for k, v in results[label].items() if isinstance(v, float)})
    curves.write_json(
        FLAGS.output_json,
        {**cpu.conditions(), "faces": len(crops), "codecs": results},
    )


if __name__ == "__main__":
    app.run(main)
