"""Build the enhancement layer's training set: min-max normalised residuals of training-identity crops against
their reconstructions from base-layer-decoded features (exactly as the decoder sees them).

  python train/build_residuals.py --data_dir ../shared/data/lfw \
      --identities ../shared/data/lfw/train_identities.txt --output cache/residuals_train.npz
"""

import pathlib

import numpy as np
from absl import app, flags

from sfc_tf import base_layer, data, facenet, reconstructor, residuals

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", None, "Root of identity folders.", required=True)
flags.DEFINE_string("identities", None, "Identity list (training identities only).", required=True)
flags.DEFINE_enum("align", "mtcnn", ["mtcnn", "center"], "Face crop.")
flags.DEFINE_string("base_layer", "checkpoints/base_layer/step_0.08.npz", "Base-layer model.")
flags.DEFINE_string("reconstructor", "checkpoints/reconstructor", "Reconstructor checkpoint.")
flags.DEFINE_string("output", None, "Output .npz (residuals uint8, low/high float32, paths).", required=True)


def main(_):
    paths = [p for p, _ in data.list_images(FLAGS.data_dir, data.read_identity_list(FLAGS.identities))]
    faces = data.load_faces(FLAGS.data_dir, paths, FLAGS.align, facenet.FeatureExtractor(),
                            f"{facenet.DEFAULT_KEY}-fixed")
    model = base_layer.load(FLAGS.base_layer)
    decoded = model.decode(model.encode(faces.features))
    recon = residuals.reconstruct(reconstructor.load(FLAGS.reconstructor), decoded)
    images, spans = residuals.residual_images(faces.crops, recon)
    out = pathlib.Path(FLAGS.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, residuals=images, low=np.array([s.low for s in spans], np.float32),
             high=np.array([s.high for s in spans], np.float32), paths=np.array(paths))
    print(f"{len(images)} residuals -> {out}")


if __name__ == "__main__":
    app.run(main)
