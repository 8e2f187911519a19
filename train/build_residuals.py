"""Build the enhancement layer's training set: min-max normalised residuals of training-identity crops against
their reconstructions from base-layer-decoded features (the real bytes decoded, exactly as the decoder sees them).

  python train/build_residuals.py --data_dir ../shared/data/lfw \\
      --identities ../shared/data/lfw/train_identities.txt --output decoder.npz

``--base_layer`` and ``--reconstructor`` default to the registry's default model set (``sfc models``).

Writes ``--output`` (residuals uint8 (N,160,160,3), low/high float32, paths, ids of the models); by default a
file in ``<cache>/residuals/`` named after the crop, the base layer's step and the reconstructor.
``--reconstructor`` also takes a training checkpoint prefix (work in progress; see decoder.load_reconstructor).
"""

import hashlib
import pathlib
import re

import numpy as np
from absl import app, flags

from sfc_tf import settings, zoo
from sfc_tf.base import base_layer, facenet
from sfc_tf.bitstream import ALIGNMENTS
from sfc_tf.data import folders
from sfc_tf.enhancement import layer
from sfc_tf.reconstruction import decoder

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", None, "Root of identity folders.", required=True)
flags.DEFINE_string("identities", None, "Identity list (training identities only).", required=True)
flags.DEFINE_enum("align", "mtcnn", ALIGNMENTS, "Face crop.")
flags.DEFINE_string("base_layer", None, "Base-layer model; default: the default model set's.")
flags.DEFINE_string(
    "reconstructor", None, "Reconstructor directory or checkpoint prefix; default: the default model set's."
)
flags.DEFINE_string(
    "output", None, "Output .npz; default: a file in <cache>/residuals/ named after crop, base step and reconstructor."
)


def main(_):
    paths = [p for p, _ in folders.list_images(FLAGS.data_dir, folders.read_identity_list(FLAGS.identities))]
    faces = folders.load_faces(
        FLAGS.data_dir, paths, FLAGS.align, facenet.FeatureExtractor(), f"{facenet.DEFAULT_KEY}-fixed"
    )
    base = base_layer.load(FLAGS.base_layer or zoo.model_set().path("base_layer"))
    decoded, thumbnails = base.decode_layers(base.encode_payloads(faces.features, faces.crops))
    model = decoder.load_reconstructor(FLAGS.reconstructor or zoo.model_set().path("reconstructor"))
    rebuilt = base.correct(decoder.reconstruct(model, decoded, progress=True), thumbnails)  # as the decoder does
    images, spans = layer.normalised_residuals(faces.crops, rebuilt)
    shipped = re.fullmatch("[0-9a-f]{64}", model.model_id)  # a shipped model's id is its sha256, as in zoo.json
    tag = model.model_id if shipped else hashlib.sha256(model.model_id.encode()).hexdigest()
    thumbnail = "" if thumbnails is None else f"_thumbnail{base.thumbnail.grid}"
    default_name = f"train_{FLAGS.align}_{base.step}{thumbnail}_{tag[:12]}.npz"
    out = pathlib.Path(FLAGS.output or settings.cache_dir() / "residuals" / default_name)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        out,
        residuals=images,
        low=np.array([s.low for s in spans], np.float32),
        high=np.array([s.high for s in spans], np.float32),
        paths=np.array(paths),
        base_layer=base.model_id,
        reconstructor=model.model_id,
    )
    print(f"{len(images)} residuals -> {out}; mean range {np.mean([s.high - s.low for s in spans]):.1f}")


if __name__ == "__main__":
    app.run(main)
