"""Reconstructor training throughput (images/s) on this CPU for the speed options of
train/train_reconstructor.py, on real training crops.

  python eval/train_throughput.py --lfw_dir ../shared/data/lfw \\
      --vgg_weights ../shared/weights/vgg19_imagenet_block1-3.h5 --output_json eval/results/train_throughput.json
"""

import os

from absl import app, flags

from sfc_tf import runs
from sfc_tf.base import facenet
from sfc_tf.data import folders
from sfc_tf.evaluation import curves
from sfc_tf.reconstruction import training as training

FLAGS = flags.FLAGS
flags.DEFINE_string("lfw_dir", None, "LFW root.", required=True)
flags.DEFINE_string("identities", None, "Identity list; default <lfw_dir>/train_identities.txt.")
flags.DEFINE_string("vgg_weights", None, "VGG-19 weights file (blocks 1-3 suffice for block3_conv2).")
flags.DEFINE_integer("images", 512, "Training crops to use.")
flags.DEFINE_integer("steps", 4, "Timed steps per configuration (after one warm-up step).")
flags.DEFINE_integer("batch_size", 32, "Batch size.")
flags.DEFINE_string("output_json", None, "Result JSON; default: runs/train_throughput/<time>/train_throughput.json.")
runs.define_flags(trainer=False)

CONFIGS = {  # key: (label, TrainConfig options)
    "fp32": ("fp32, VGG on 160x160", {}),
    "vgg80": ("fp32, VGG on 80x80 (--perceptual_downsample 2)", {"perceptual_downsample": 2}),
    "bf16": ("bf16 (--mixed_precision), VGG on 80x80", {"perceptual_downsample": 2, "mixed_precision": True}),
    "xla": ("XLA (--jit_compile), VGG on 80x80", {"perceptual_downsample": 2, "jit_compile": True}),
    "mae": ("MAE only (lambda 0)", {"perceptual_weight": 0.0}),
    "identity": (
        "MAE + identity term (lambda 0, --identity_weight 0.1, frozen FaceNet)",
        {"perceptual_weight": 0.0, "identity_weight": 0.1},
    ),
    "mae_bf16": ("MAE only, bf16 (--mixed_precision)", {"perceptual_weight": 0.0, "mixed_precision": True}),
    "identity_bf16": (
        "MAE + identity term, bf16 (--mixed_precision)",
        {"perceptual_weight": 0.0, "identity_weight": 0.1, "mixed_precision": True},
    ),
}
flags.DEFINE_list("configs", list(CONFIGS), f"Configurations to time, of {', '.join(CONFIGS)}.")


def main(_):
    runs.resolve_outputs(FLAGS, "train_throughput")
    identities = folders.read_identity_list(FLAGS.identities or f"{FLAGS.lfw_dir}/train_identities.txt")
    paths = [p for p, _ in folders.list_images(FLAGS.lfw_dir, identities)]
    faces = folders.load_faces(
        FLAGS.lfw_dir, paths, "mtcnn", facenet.FeatureExtractor(), f"{facenet.DEFAULT_KEY}-fixed"
    )
    crops, views = faces.crops[: FLAGS.images], faces.features[None, : FLAGS.images]
    rows = []
    unknown = set(FLAGS.configs) - set(CONFIGS)
    if unknown:
        raise app.UsageError(f"unknown --configs {sorted(unknown)}; known: {', '.join(CONFIGS)}")
    for name, options in (CONFIGS[key] for key in FLAGS.configs):
        config = training.TrainConfig(
            "/tmp/unused", batch_size=FLAGS.batch_size, vgg_weights=FLAGS.vgg_weights, **options
        )
        rate = training.throughput(config, views, crops, FLAGS.steps)
        rows.append({"config": name, "images_per_second": round(rate, 2), **options})
        print(f"{name}: {rate:.2f} images/s")
    curves.write_json(
        FLAGS.output_json,
        {
            "batch_size": FLAGS.batch_size,
            "cpu_count": os.cpu_count(),
            "load_average_1min": os.getloadavg()[0],
            "results": rows,
        },
    )


if __name__ == "__main__":
    app.run(main)
