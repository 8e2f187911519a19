"""Fit the linear coding predictor (prediction mode ``mmse``, ``sfc_tf.reconstruction.linear_predictor``) in closed
form: ridge regression from base-layer-decoded FaceNet features to coarse faces, the grid size and ridge weight
chosen by PSNR on held-out identities. Writes the predictor, the mean training face and meta.json (every candidate's
held-out PSNR, and the mean face's, for comparison).

  python train/fit_predictor.py --data_dir ../shared/data/lfw \\
      --identities ../shared/data/lfw/train_identities.txt --flip --extra_faces ~/.cache/sfc_data/utkface \\
      --checkpoint_dir runs/predictor

Without ``--checkpoint_dir`` the predictor goes to runs/fit_predictor/run-<hash of the flags> (sfc_tf.runs); a
folder that holds a fitted predictor is left alone ("already finished") unless ``--overwrite``.
"""

import pathlib
import time

import numpy as np
from absl import app, flags

from sfc_tf import metrics, runs, settings
from sfc_tf.base import base_layer
from sfc_tf.bitstream import ALIGNMENTS
from sfc_tf.data import extra_faces, training_set
from sfc_tf.enhancement import prediction
from sfc_tf.errors import SfcError
from sfc_tf.reconstruction import linear_predictor, reconstructor

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", None, "Root of identity folders (LFW, VGGFace2).", required=True)
flags.DEFINE_string("identities", None, "Identity list to train on (e.g. train_identities.txt).")
flags.DEFINE_enum("align", "mtcnn", ALIGNMENTS, "Face crop.")
flags.DEFINE_bool("flip", True, "Add every training face mirrored, with its own FaceNet feature (cached).")
flags.DEFINE_string("extra_faces", None, "Folder built by ../shared/tools/utkface.sh: extra faces, framed like LFW.")
flags.DEFINE_list(
    "base_layer",
    None,
    "Fit on features decoded at these rates (held-out PSNR at the middle one); default: the shipped "
    f"{', '.join(settings.DEFAULT_TRAINING_BASE_LAYERS)} of the checkpoints directory.",
)
flags.DEFINE_list("grids", ["10", "20", "40"], "Coarse grid sizes to try.")
flags.DEFINE_list("ridges", ["1e-4", "1e-3", "1e-2"], "Ridge weights to try (per example, on unit-norm features).")
flags.DEFINE_string("checkpoint_dir", None, "Output folder; default: runs/fit_predictor/run-HASH.")
flags.DEFINE_integer("seed", 0, "Seed of the held-out identity draw (as the other training binaries).")
runs.define_flags()


def held_out_psnr(predictions: np.ndarray, crops: np.ndarray) -> float:
    return float(np.mean(np.minimum(metrics.psnr(crops, predictions), metrics.PSNR_CEILING_DB)))


def main(_):
    out = runs.trainer_dir(FLAGS, "fit_predictor")
    if runs.start(out, FLAGS.resume, FLAGS.overwrite).finished:
        return
    base_layers = settings.training_base_layers() if FLAGS.base_layer is None else FLAGS.base_layer
    if FLAGS.extra_faces and not pathlib.Path(FLAGS.extra_faces).expanduser().is_dir():
        raise app.UsageError(f"--extra_faces {FLAGS.extra_faces} does not exist: {extra_faces.BUILD_HINT}")
    start = time.time()
    try:
        faces = training_set.assemble(
            FLAGS.data_dir, FLAGS.identities, FLAGS.align, FLAGS.flip, FLAGS.extra_faces, seed=FLAGS.seed
        )
    except SfcError as exc:
        raise app.UsageError(str(exc)) from exc
    bases = [base_layer.load(path) for path in base_layers]
    decoded = [base.decode_payloads(base.encode_payloads(faces.features)) for base in bases]
    middle = bases[len(bases) // 2]
    held_features = middle.decode_payloads(middle.encode_payloads(faces.held_out_features))
    lfw_crops = faces.crops[: faces.description["images"]]  # the mean of the unmirrored LFW crops
    mean_face = np.rint(lfw_crops.astype(np.float64).mean(axis=0)).astype(np.uint8)
    candidates, best = [], None
    for grid in map(int, FLAGS.grids):
        targets = linear_predictor.coarse_targets(faces.crops, grid)
        fit = linear_predictor.RidgeFit(faces.features.shape[1], targets.shape[1])
        for features in decoded:
            fit.add(features, targets)
        for ridge in map(float, FLAGS.ridges):
            model = linear_predictor.LinearPredictor(faces.features.shape[1], grid).build_for_inference()
            model.linear.set_weights(list(fit.solve(ridge)))
            psnr = held_out_psnr(reconstructor.to_uint8(model(held_features)), faces.held_out_crops)
            candidates.append({"grid": grid, "ridge": ridge, "held_out_psnr": round(psnr, 3)})
            print(f"grid {grid:3d}, ridge {ridge:g}: held-out PSNR {psnr:.3f} dB")
            if best is None or psnr > best[0]:
                best = (psnr, model, grid, ridge)
    psnr, model, grid, ridge = best
    out.mkdir(parents=True, exist_ok=True)
    from PIL import Image

    Image.fromarray(mean_face).save(out / prediction.MEAN_FACE_FILE)
    mean_psnr = held_out_psnr(np.broadcast_to(mean_face, faces.held_out_crops.shape), faces.held_out_crops)
    meta = linear_predictor.save(
        model,
        out,
        (prediction.MEAN_FACE_FILE,),
        objective="mmse (closed-form ridge)",
        data=faces.description,
        decoded_features={"base_layer": base_layers},
        chosen={"grid": grid, "ridge": ridge},
        candidates=candidates,
        held_out={
            "images": len(faces.held_out_crops),
            "psnr": round(psnr, 3),
            "mean_face_psnr": round(mean_psnr, 3),
            "base_layer": base_layers[len(bases) // 2],
        },
        wall_time_s=round(time.time() - start, 1),
    )
    print(
        f"saved {out}: grid {grid}, ridge {ridge:g}, held-out PSNR {psnr:.3f} dB (mean face {mean_psnr:.3f} dB), "
        f"sha256 {meta['sha256'][:12]}"
    )


if __name__ == "__main__":
    app.run(main)
