"""Store a trained learned codec's weights as float16: half the bytes of a shipped model.

  python train/convert_weights.py --checkpoint runs/x/conditional_l0.01 \\
      --output checkpoints/enhancement/conditional_l0.01 --weights_dtype float16

The weights are rounded to the dtype, the range-coding tables rebuilt from the rounded model, and meta.json keeps
the source's record plus its sha256 (``converted_from``). Measure the converted family before shipping it
(eval/rate_distortion.py): rounding changes the decoded pixels slightly.
"""

from absl import app, flags

from sfc_tf.enhancement import learned
from sfc_tf.errors import SfcError

FLAGS = flags.FLAGS
flags.DEFINE_string("checkpoint", None, "A saved learned codec (BLS2017 or FaceCodec folder).", required=True)
flags.DEFINE_string("output", None, "New folder for the converted model (must not exist).", required=True)
flags.DEFINE_enum("weights_dtype", "float16", list(learned.WEIGHT_DTYPES), "Storage dtype of the weights.")


def main(_):
    try:
        meta = learned.convert(FLAGS.checkpoint, FLAGS.output, FLAGS.weights_dtype)
    except (SfcError, FileExistsError, ValueError) as exc:
        raise SystemExit(f"convert_weights: {exc}") from exc
    print(f"{FLAGS.output}: {', '.join(meta['files'])} ({meta['weights_dtype']}), sha256 {meta['sha256'][:16]}")


if __name__ == "__main__":
    app.run(main)
