"""Store an identity-folder tree (LFW layout) as a tensorflow-datasets dataset with the features of tfds's ``lfw``
(``label``: the identity name, ``image``: the picture), so that ``--tfds NAME --tfds_data_dir DIR`` can be
exercised offline: tfds finds the prepared dataset by name in DIR, as it would a downloaded one.

  python tests/make_tfds_dataset.py --data_dir tests/fixtures/lfw --name lfw_fixture --tfds_data_dir /tmp/tfds
"""

import pathlib

import tensorflow  # noqa: F401  (TF 2.14 builds no functional Keras model if first imported inside app.run)
from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", None, "Root of identity folders.", required=True)
flags.DEFINE_string("identities", None, "Identity list to keep.")
flags.DEFINE_string("name", "lfw_local", "Dataset name.")
flags.DEFINE_string("tfds_data_dir", None, "tensorflow-datasets data folder to write into.", required=True)


def store(data_dir: str, name: str, tfds_data_dir: str, identities: list[str] | None = None):
    import numpy as np
    import tensorflow_datasets as tfds

    from sfc_tf.base import align
    from sfc_tf.data import folders

    items = folders.list_images(data_dir, identities)

    def examples():
        for i, (path, _) in enumerate(items):
            yield i, {"label": path.split("/")[0], "image": np.asarray(align.load_image(pathlib.Path(data_dir) / path))}

    features = tfds.features.FeaturesDict(
        {"label": tfds.features.Text(), "image": tfds.features.Image(shape=(None, None, 3))}
    )
    return tfds.dataset_builders.store_as_tfds_dataset(
        name=name, version="1.0.0", features=features, split_datasets={"train": examples()}, data_dir=tfds_data_dir
    )


def main(_):
    from sfc_tf.data import folders

    identities = folders.read_identity_list(FLAGS.identities) if FLAGS.identities else None
    builder = store(FLAGS.data_dir, FLAGS.name, FLAGS.tfds_data_dir, identities)
    print(f"stored {builder.info.splits['train'].num_examples} images as tfds {FLAGS.name!r} in {FLAGS.tfds_data_dir}")


if __name__ == "__main__":
    app.run(main)
