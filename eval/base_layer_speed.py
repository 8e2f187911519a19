"""Batched base-layer coding speed on this machine: encode and decode faces/s of real LFW features.

  python eval/base_layer_speed.py --lfw_dir ../shared/data/lfw --base_layer checkpoints/base_layer/step_0.08.npz \\
      --output_json eval/results/base_layer_speed.json

The evaluation images' features (``--folds``) are repeated up to ``--num_faces`` so that one batch is large.
"""

import json
import os

import numpy as np
from absl import app, flags

from sfc_tf import runs, settings
from sfc_tf.base import base_layer
from sfc_tf.bitstream import ALIGNMENTS
from sfc_tf.evaluation import curves

FLAGS = flags.FLAGS
flags.DEFINE_string("lfw_dir", None, "LFW root.", required=True)
flags.DEFINE_string("pairs", None, "pairs.txt; default <lfw_dir>/pairs.txt.")
flags.DEFINE_list("folds", ["1", "2", "3", "4"], "Folds whose images give the features.")
flags.DEFINE_enum("align", "mtcnn", ALIGNMENTS, "Face crop.")
flags.DEFINE_string("base_layer", None, "Base-layer model file; default: the shipped base_layer/step_0.08.npz.")
flags.DEFINE_integer("num_faces", 10_000, "Faces per batch.")
flags.DEFINE_integer("repeats", 5, "Timed calls per measurement (median).")
flags.DEFINE_string("output_json", None, "Result JSON; default: runs/base_layer_speed/<time>/base_layer_speed.json.")
runs.define_flags(trainer=False)


def main(_):
    runs.resolve_outputs(FLAGS, "base_layer_speed")
    base_path = FLAGS.base_layer or str(settings.shipped("base_layer/step_0.08.npz"))
    _, faces = curves.lfw_pair_faces(FLAGS.lfw_dir, [int(f) for f in FLAGS.folds], FLAGS.align, FLAGS.pairs)
    features = np.resize(faces.features, (FLAGS.num_faces, faces.features.shape[1]))
    result = curves.base_layer_speed(base_layer.load(base_path), features, FLAGS.repeats)
    result.update(model=base_path, align=FLAGS.align, cpu_count=os.cpu_count(), load_average=os.getloadavg()[0])
    curves.write_json(FLAGS.output_json, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    app.run(main)
