"""Export the codec's networks as SavedModels in TF Serving's layout ``<export_dir>/<model>/<version>/``.

  python train/export.py --export_dir serving/models --models facenet,reconstructor,enhancement,decoder \
      --reconstructor checkpoints/reconstructor --enhancement checkpoints/enhancement/residual_l0.01

Models: facenet (offline FaceNet weights), reconstructor, enhancement (learned codec: encode/decode),
decoder (full decode: reconstructor + learned enhancement decode + residual add). Signatures: docs/serving.md.
"""

import functools

from absl import app, flags

from sfc_tf import residuals, serving
from sfc_tf.enhancement import learned
from sfc_tf.errors import SfcError

FLAGS = flags.FLAGS
flags.DEFINE_string("export_dir", "serving/models", "Root of the model repository (one folder per model).")
flags.DEFINE_list("models", list(serving.MODEL_NAMES), f"Models to export, from {list(serving.MODEL_NAMES)}.")
flags.DEFINE_integer("version", 1, "Version folder to write (must not exist).")
flags.DEFINE_string("facenet_weights", None, "Keras FaceNet weights; default: the converted offline weights.")
flags.DEFINE_string("reconstructor", "checkpoints/reconstructor", "Reconstructor directory or checkpoint prefix.")
flags.DEFINE_string("enhancement", "checkpoints/enhancement/residual_l0.01", "Learned enhancement checkpoint.")


def main(_):
    # Each checkpoint loads once (building the learned codec's range-coding tables takes a while).
    reconstructor = functools.cache(lambda: residuals.load_reconstructor(FLAGS.reconstructor))
    enhancement = functools.cache(lambda: learned.load_model(FLAGS.enhancement)[0])
    loaders = {
        serving.FACENET: lambda: serving.load_facenet(weights_path=FLAGS.facenet_weights),
        serving.RECONSTRUCTOR: lambda: serving.ReconstructorExport(reconstructor(), reconstructor().feature_dim),
        serving.ENHANCEMENT: lambda: serving.EnhancementExport(enhancement()),
        serving.DECODER: lambda: serving.DecoderExport(reconstructor(), reconstructor().feature_dim, enhancement()),
    }
    unknown = set(FLAGS.models) - set(loaders)
    if unknown:
        raise app.UsageError(f"unknown models {sorted(unknown)}; choose from {list(serving.MODEL_NAMES)}")
    for name in FLAGS.models:
        try:
            print(f"{name} -> {serving.export(loaders[name](), FLAGS.export_dir, FLAGS.version)}")
        except (SfcError, FileExistsError) as exc:
            raise SystemExit(f"export {name}: {exc}") from exc


if __name__ == "__main__":
    app.run(main)
