"""Train the deep feature reconstructor (DconvOp network) on decoded FaceNet features.

Paper settings are the defaults (batch 64, Adam, learning rate 0.01 -> 0.0001 exponentially over 50 epochs,
MAE + lambda x VGG-19 relu3_2 loss). A short CPU job on LFW training identities:

  python train/train_reconstructor.py --data_dir ../shared/data/lfw \
      --identities ../shared/data/lfw/train_identities.txt --vgg_weights ../shared/weights/vgg19_imagenet_block1-3.h5 \
      --epochs 36 --perceptual_weight 1e-6 --mixed_precision --perceptual_downsample 2 \
      --checkpoint_dir checkpoints/reconstructor

Re-running the same command resumes from <checkpoint_dir>/backup (model, optimizer, epoch).
"""

import pathlib
import shutil

import numpy as np
from absl import app, flags

from sfc_tf import data, distribute, facenet, losses
from sfc_tf import reconstructor_training as training

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", None, "Root of identity folders (LFW, VGGFace2).", required=True)
flags.DEFINE_string("identities", None, "Identity list to train on (e.g. train_identities.txt).")
flags.DEFINE_enum("align", "mtcnn", ["mtcnn", "center"], "Face crop.")
flags.DEFINE_integer("image_size", 160, "Crop size; the network's layer list produces 160.")
flags.DEFINE_float("validation_fraction", 0.05, "Share of identities held out for validation loss.")
flags.DEFINE_string("checkpoint_dir", "checkpoints/reconstructor", "Final weights + meta.json; backup/ for resume.")
flags.DEFINE_bool("resume", True, "Resume from <checkpoint_dir>/backup if present (else start fresh).")
flags.DEFINE_string("tensorboard_dir", None, "TensorBoard log directory.")
flags.DEFINE_integer("batch_size", 64, "Batch size (paper: 64).")
flags.DEFINE_integer("epochs", 50, "Epochs; the learning rate decays over exactly these (paper: 50).")
flags.DEFINE_float("initial_lr", 0.01, "Initial learning rate (paper: 0.01).")
flags.DEFINE_float("final_lr", 0.0001, "Learning rate at the last step (paper: 0.0001).")
flags.DEFINE_float("perceptual_weight", 1e-6, "lambda: weight of the VGG-19 perceptual term (1e-6: our sweep, README).")
flags.DEFINE_string("perceptual_layer", losses.DEFAULT_LAYER, "VGG-19 layer of the perceptual loss.")
flags.DEFINE_integer("perceptual_downsample", 1, "Average-pool images by this factor before VGG (CPU speed).")
flags.DEFINE_string("vgg_weights", None, "Local VGG-19 Keras weights file (default: download ImageNet weights).")
flags.DEFINE_enum("strategy", "default", list(distribute.STRATEGIES), "tf.distribute strategy.")
flags.DEFINE_bool("jit_compile", False, "XLA-compile the train step (slower on this CPU; see README).")
flags.DEFINE_bool("mixed_precision", False, "mixed_bfloat16 policy (oneDNN bf16 on AVX512_BF16 CPUs).")
flags.DEFINE_float("max_minutes", None, "Stop after the epoch in which this many minutes have passed.")
flags.DEFINE_list("base_layer", [], "Base-layer model files: train on features decoded at these rates.")
flags.DEFINE_list("noise_steps", ["0", "0.05", "0.1", "0.2"],
                  "Without --base_layer: uniform-noise steps standing in for quantization (0 = clean).")
flags.DEFINE_integer("seed", 0, "Random seed.")


def feature_degraders():
    if FLAGS.base_layer:
        from sfc_tf import base_layer

        return [base_layer.load(path).quantize_dequantize for path in FLAGS.base_layer]
    rng = np.random.default_rng(FLAGS.seed)
    return [lambda f, s=float(step): f if s == 0 else training.noisy_features(f, [s], rng)
            for step in FLAGS.noise_steps]


def main(_):
    if FLAGS.image_size != 160:
        raise app.UsageError("the reconstructor's layer list produces 160x160 faces; --image_size must be 160")
    identities = data.read_identity_list(FLAGS.identities) if FLAGS.identities else None
    items = data.list_images(FLAGS.data_dir, identities)
    names = sorted({path.split("/")[0] for path, _ in items})
    held_out = set(np.random.default_rng(FLAGS.seed).permutation(names)[:int(len(names) * FLAGS.validation_fraction)])
    train_paths = [path for path, _ in items if path.split("/")[0] not in held_out]
    extractor = facenet.FeatureExtractor()
    all_faces = data.load_faces(FLAGS.data_dir, [p for p, _ in items], FLAGS.align, extractor,
                                f"{facenet.DEFAULT_KEY}-fixed")
    faces = all_faces.subset(train_paths)
    degraders = feature_degraders()
    views = training.decoded_feature_views(faces.features, degraders)
    validation = None
    if held_out:     # scored at the middle rate of the list
        held = all_faces.subset([path for path, _ in items if path.split("/")[0] in held_out])
        validation = (degraders[len(degraders) // 2](held.features).astype(np.float32), held.crops)
    if not FLAGS.resume:
        shutil.rmtree(pathlib.Path(FLAGS.checkpoint_dir) / "backup", ignore_errors=True)
    config = training.TrainConfig(
        checkpoint_dir=FLAGS.checkpoint_dir, epochs=FLAGS.epochs, batch_size=FLAGS.batch_size,
        initial_lr=FLAGS.initial_lr, final_lr=FLAGS.final_lr, perceptual_weight=FLAGS.perceptual_weight,
        perceptual_layer=FLAGS.perceptual_layer, perceptual_downsample=FLAGS.perceptual_downsample,
        vgg_weights=FLAGS.vgg_weights, strategy=FLAGS.strategy, jit_compile=FLAGS.jit_compile,
        mixed_precision=FLAGS.mixed_precision, max_minutes=FLAGS.max_minutes, log_dir=FLAGS.tensorboard_dir,
        seed=FLAGS.seed)
    meta = training.train(config, views, faces.crops, {
        "data": {"data_dir": FLAGS.data_dir, "identities": FLAGS.identities, "align": FLAGS.align,
                 "train_images": len(train_paths), "held_out_identities": sorted(held_out),
                 "validation_images": 0 if validation is None else len(validation[1]),
                 "facenet": facenet.DEFAULT_KEY},
        "decoded_features": {"base_layer": FLAGS.base_layer, "noise_steps": None if FLAGS.base_layer
                             else [float(s) for s in FLAGS.noise_steps]},
    }, validation)
    print(f"saved {FLAGS.checkpoint_dir}: {meta['final_metrics']}, {meta['images_per_second']} images/s")


if __name__ == "__main__":
    app.run(main)
