"""Deep feature reconstruction on LFW: PSNR / SSIM / MS-SSIM of faces rebuilt from base-layer-decoded features
against the aligned originals, identity preservation as NbNet measures it, and a grid of originals over
reconstructions (the paper's Fig. 3).

  python eval/reconstruction.py --lfw_dir ../shared/data/lfw --folds 1,2,3,4 \\
      --model_set step0.08-faces-thumb2 --output_json eval/results/reconstruction_thumbnail2.json \\
      --grid_png eval/results/reconstruction_thumbnail2.png

The faces are what users get: base-only .sfc files written by the codec and decoded at the "reconstruction"
level (a model set whose base layer codes a colour thumbnail uses it), of ``--model_set`` or of the models named
by ``--base_layer`` / ``--reconstructor`` (the rest from the default set).

Identity, NbNet's two attacks (a reconstruction presented to the verifier that holds the originals):
- type I, the reconstruction against the original it was made from: ``accuracy_type_i`` in the LFW pair
  protocol (``metrics.evaluate_type_i``) and ``tar_type_i`` at FAR 0.1 %;
- type II, against other images of the same person: ``accuracy_type_ii``, the mean of each pair with its first
  and with its second face replaced by the reconstruction, and ``tar_type_ii`` at FAR 0.1 %.
The FAR threshold comes from every cross-identity pair of originals in the evaluated folds.
The same figures with dlib's face descriptor (``sfc_tf.evaluation.independent_verifier``), keys prefixed
``dlib_``: a second opinion that a reconstructor trained against FaceNet (the identity term) cannot have been fitted to.
"""

import numpy as np
from absl import app, flags

from sfc_tf import bitstream, metrics, runs, zoo
from sfc_tf.base import facenet
from sfc_tf.bitstream import ALIGNMENTS
from sfc_tf.codec import ScalableCodec
from sfc_tf.evaluation import curves, independent_verifier

FLAGS = flags.FLAGS
flags.DEFINE_string("lfw_dir", None, "LFW root.", required=True)
flags.DEFINE_string("pairs", None, "pairs.txt; default <lfw_dir>/pairs.txt.")
flags.DEFINE_list("folds", None, "1-based folds; default: every fold the header declares.")
flags.DEFINE_enum("align", "mtcnn", ALIGNMENTS, "Face crop.")
flags.DEFINE_string("model_set", None, "Registered model set (default: the registry's default).")
flags.DEFINE_string("base_layer", None, "Base-layer model to decode through instead of the model set's.")
flags.DEFINE_string("reconstructor", None, "Reconstructor checkpoint instead of the model set's.")
flags.DEFINE_string("output_json", None, "Result JSON; default: runs/reconstruction/<time>/reconstruction.json.")
runs.define_flags(trainer=False)
flags.DEFINE_string("grid_png", None, "PNG grid: originals over reconstructions.")
flags.DEFINE_integer("grid_faces", 8, "Faces in the grid.")
flags.DEFINE_float("far", 1e-3, "False accept rate of the TAR figures.")
flags.DEFINE_bool("independent_verifier", True, "Also score identity with dlib's face descriptor (dlib_ keys).")


def save_grid(originals: np.ndarray, rebuilt: np.ndarray, path: str) -> None:
    from PIL import Image

    grid = np.concatenate([np.concatenate(list(originals), axis=1), np.concatenate(list(rebuilt), axis=1)], axis=0)
    Image.fromarray(grid).save(path)


def identity_scores(pairs, index, identities, rebuilt_features, original_features) -> dict:
    """NbNet's type-I and type-II attacks in one verifier's feature space (pair accuracies and TAR at --far)."""
    first = metrics.evaluate_pairs(pairs, index, rebuilt_features, original_features)
    second = metrics.evaluate_pairs(pairs, index, original_features, rebuilt_features)
    return {
        "accuracy_type_i": metrics.evaluate_type_i(pairs, index, rebuilt_features, original_features).accuracy,
        "accuracy_type_ii": (first.accuracy + second.accuracy) / 2,
        "accuracy_type_ii_first": first.accuracy,
        "accuracy_type_ii_second": second.accuracy,
        **metrics.reconstruction_attacks(rebuilt_features, original_features, identities, FLAGS.far),
        "accuracy_original": metrics.evaluate_pairs(pairs, index, original_features).accuracy,
        "accuracy_reconstructed_both": metrics.evaluate_pairs(pairs, index, rebuilt_features).accuracy,
    }


def make_codec() -> ScalableCodec:
    """The --model_set, or the models named by --base_layer / --reconstructor."""
    chosen = zoo.model_set(FLAGS.model_set)
    if not (FLAGS.base_layer or FLAGS.reconstructor):
        return ScalableCodec(chosen, align=FLAGS.align)
    return ScalableCodec.from_paths(
        FLAGS.base_layer or chosen.path("base_layer"),
        FLAGS.reconstructor or chosen.path("reconstructor"),
        align=FLAGS.align,
    )


def main(_):
    runs.resolve_outputs(FLAGS, "reconstruction")
    extractor = facenet.FeatureExtractor()
    pairs, faces = curves.lfw_pair_faces(
        FLAGS.lfw_dir, [int(f) for f in FLAGS.folds] if FLAGS.folds else None, FLAGS.align, FLAGS.pairs, extractor
    )
    codec = make_codec()
    files = codec.encode_analysis(codec.analyse(faces.crops, faces.features)).files
    rebuilt = np.stack([d.image for d in codec.decode_many(files, "reconstruction")])
    index = faces.index()
    result = {
        **curves.reconstruction_quality(faces.crops, rebuilt),
        **identity_scores(pairs, index, faces.identities(), extractor(rebuilt), faces.features),
    }
    if FLAGS.independent_verifier:
        verifier = independent_verifier.DlibVerifier()
        landmarks, fallbacks = verifier.landmarks(faces.crops)
        scores = identity_scores(
            pairs, index, faces.identities(), verifier(rebuilt, landmarks), verifier(faces.crops, landmarks)
        )
        result.update({f"dlib_{k}": v for k, v in scores.items()}, dlib_landmark_fallbacks=fallbacks)
    payloads = [bitstream.unpack_base(f).base_payload for f in files]
    result.update(
        model_set=codec.model_set.name,
        base_layer=codec.model_set.base_layer,
        base_bits_per_face=float(8 * np.mean([len(p) + bitstream.BASE_CRC_BYTES for p in payloads])),
        base_file_bits_per_face=float(8 * np.mean([len(f) for f in files])),
        reconstructor=codec.model_set.reconstructor,
        num_images=len(faces.paths),
        num_pairs=len(pairs),
    )
    curves.write_json(FLAGS.output_json, result)
    print({k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()})
    if FLAGS.grid_png:
        chosen = np.linspace(0, len(faces.paths) - 1, FLAGS.grid_faces).astype(int)
        save_grid(faces.crops[chosen], rebuilt[chosen], FLAGS.grid_png)


if __name__ == "__main__":
    app.run(main)
