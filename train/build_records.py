"""Write training faces as sharded TFRecords (sfc_tf.data.records): aligned 160x160 crops with their FaceNet features
(and their mirror images' features), from an identity-folder tree (VGGFace2 layout) or a tensorflow-datasets dataset.
The training binaries stream them with --records.

  python train/build_records.py --data_dir ../shared/data/lfw --identities ../shared/data/lfw/train_identities.txt \\
      --output_dir ~/.cache/sfc_data/records/lfw_train
  python train/build_records.py --tfds celeb_a:train --output_dir ~/.cache/sfc_data/records/celeb_a

Re-running the same command after an interruption keeps the shards already written.
"""

import tensorflow  # noqa: F401  (TF 2.14 builds no functional Keras model if first imported inside app.run)
from absl import app, flags

from sfc_tf.bitstream import ALIGNMENTS
from sfc_tf.data import folders, records
from sfc_tf.errors import SfcError

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", None, "Root of identity folders (VGGFace2 / LFW layout).")
flags.DEFINE_string("tfds", None, "A tensorflow-datasets image dataset NAME[:SPLIT] instead of --data_dir.")
flags.DEFINE_string("tfds_data_dir", None, "tensorflow-datasets data folder (default: tfds's).")
flags.DEFINE_string("identities", None, "Identity list to keep (e.g. train_identities.txt).")
flags.DEFINE_enum("align", "mtcnn", ALIGNMENTS, "Face crop (MTCNN misses get the center crop).")
flags.DEFINE_integer("shard_size", 1000, "Faces per shard.", lower_bound=1)
flags.DEFINE_string("output_dir", None, "Folder for the shards and records.json.", required=True)


def main(_):
    if bool(FLAGS.data_dir) == bool(FLAGS.tfds):
        raise app.UsageError("give exactly one of --data_dir and --tfds")
    try:
        identities = folders.read_identity_list(FLAGS.identities) if FLAGS.identities else None
        built = records.build(
            FLAGS.output_dir,
            data_dir=FLAGS.data_dir,
            tfds=FLAGS.tfds,
            tfds_data_dir=FLAGS.tfds_data_dir,
            identities=identities,
            align=FLAGS.align,
            shard_size=FLAGS.shard_size,
        )
    except SfcError as exc:
        raise app.UsageError(str(exc)) from exc
    print(
        f"wrote {built.examples} faces of {len(built.identities)} identities in "
        f"{len(built.manifest['shards'])} shards to {built.directory}"
    )


if __name__ == "__main__":
    app.run(main)
