"""Fit the headerless JPEG codec's Huffman tables, one set per quality 1..100 (``sfc_tf.enhancement.jpeg_tables``):
the optimal tables of the symbols libjpeg codes for training faces and for their min-max normalised residuals
against the mean training face, the two kinds of image the enhancement layer codes.

  python train/fit_jpeg_tables.py --data_dir ../shared/data/lfw \\
      --identities ../shared/data/lfw/train_identities.txt

The tables are part of the bitstream format: rewriting them changes what every headerless JPEG payload means. So
they go to runs/fit_jpeg_tables/<time>/jpeg_tables.json by default; ``--output sfc_tf/enhancement/jpeg_tables.json
--overwrite`` replaces the shipped ones.
"""

import json

import numpy as np
from absl import app, flags

from sfc_tf import runs
from sfc_tf.data import folders
from sfc_tf.enhancement import jpeg, jpeg_scan, jpeg_tables, minmax
from sfc_tf.errors import SfcError

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", None, "Root of identity folders (LFW).", required=True)
flags.DEFINE_string("identities", None, "Identity list to fit on (training identities only).", required=True)
flags.DEFINE_integer("faces", 500, "Training faces (evenly spaced over the list); as many residuals again.")
flags.DEFINE_string(
    "output", None, f"Tables file; default: runs/fit_jpeg_tables/<time>/{jpeg_tables.TABLES_FILE.name}."
)
runs.define_flags(trainer=False)


def main(_):
    try:
        output = runs.result_file(FLAGS.output, "fit_jpeg_tables", jpeg_tables.TABLES_FILE.name, FLAGS.overwrite)
    except SfcError as exc:
        raise SystemExit(f"fit_jpeg_tables: {exc}") from exc
    paths = [path for path, _ in folders.list_images(FLAGS.data_dir, folders.read_identity_list(FLAGS.identities))]
    crops = folders.load_faces(FLAGS.data_dir, paths, "mtcnn").crops
    mean_face = crops.mean(axis=0)
    chosen = crops[np.linspace(0, len(crops) - 1, FLAGS.faces).astype(int)]
    images = np.concatenate([chosen, np.stack([minmax.normalise(c - mean_face)[0] for c in chosen])])
    qualities = {}
    for quality in range(1, 101):
        counts = sum(jpeg_scan.counts(jpeg.libjpeg_coefficients(image, quality)) for image in images)
        qualities[str(quality)] = jpeg_tables.encode_lengths(jpeg_tables.fitted_lengths(counts))
        print(f"quality {quality}: {int(counts.sum()) // len(images)} symbols per image", flush=True)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(
        json.dumps(
            {
                "fitted_on": f"{len(chosen)} crops (mtcnn) of {FLAGS.identities} and their residuals against the "
                f"mean of all {len(crops)}",
                "qualities": qualities,
            },
            indent=0,
        )
        + "\n"
    )


if __name__ == "__main__":
    app.run(main)
