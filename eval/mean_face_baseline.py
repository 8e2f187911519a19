"""The floor a face reconstructor must beat: one constant image, the mean training crop, as the "reconstruction"
of every LFW folds 1-4 crop (PSNR, SSIM and MS-SSIM as eval/reconstruction.py computes them).

  python eval/mean_face_baseline.py --lfw_dir ../shared/data/lfw --folds 1,2,3,4 \\
      --output_json eval/results/mean_face_baseline.json
"""

import numpy as np
from absl import app, flags

from sfc_tf import runs
from sfc_tf.bitstream import ALIGNMENTS
from sfc_tf.data import folders
from sfc_tf.evaluation import curves

FLAGS = flags.FLAGS
flags.DEFINE_string("lfw_dir", None, "LFW root.", required=True)
flags.DEFINE_string("pairs", None, "pairs.txt; default <lfw_dir>/pairs.txt.")
flags.DEFINE_list("folds", None, "1-based folds; default: every fold the header declares.")
flags.DEFINE_string("identities", None, "Training identity list; default <lfw_dir>/train_identities.txt.")
flags.DEFINE_enum("align", "mtcnn", ALIGNMENTS, "Face crop.")
flags.DEFINE_string(
    "output_json", None, "Result JSON; default: runs/mean_face_baseline/<time>/mean_face_baseline.json."
)
runs.define_flags(trainer=False)


def main(_):
    runs.resolve_outputs(FLAGS, "mean_face_baseline")
    identities = folders.read_identity_list(FLAGS.identities or f"{FLAGS.lfw_dir}/train_identities.txt")
    train = folders.load_faces(
        FLAGS.lfw_dir, [p for p, _ in folders.list_images(FLAGS.lfw_dir, identities)], FLAGS.align
    )
    _, faces = folders.load_pair_faces(
        FLAGS.lfw_dir,
        FLAGS.pairs or f"{FLAGS.lfw_dir}/pairs.txt",
        [int(f) for f in FLAGS.folds] if FLAGS.folds else None,
        FLAGS.align,
    )
    mean_face = np.round(train.crops.astype(np.float64).mean(axis=0)).astype(np.uint8)
    constant = np.broadcast_to(mean_face, faces.crops.shape)
    result = {
        "train_images": len(train.paths),
        "eval_images": len(faces.paths),
        "align": FLAGS.align,
        **curves.reconstruction_quality(faces.crops, np.ascontiguousarray(constant)),
    }
    curves.write_json(FLAGS.output_json, result)
    print(result)


if __name__ == "__main__":
    app.run(main)
