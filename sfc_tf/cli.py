"""The ``sfc`` command line.

  sfc features IMAGE [IMAGE2]   face crop -> FaceNet feature; with two images, their distance
"""

from __future__ import annotations

import argparse
import sys

from sfc_tf.errors import SfcError


def _features(args) -> None:
    import numpy as np

    from sfc_tf import align, facenet, metrics

    aligner = align.make_aligner(args.align)
    crops = np.stack([aligner(path) for path in args.images])
    extractor = facenet.FeatureExtractor(args.facenet_key, args.facenet_weights)
    features = extractor(crops)
    for path, crop, feature in zip(args.images, crops, features):
        print(f"{path}: {args.align} crop {crop.shape[1]}x{crop.shape[0]}, FaceNet {extractor.key} feature "
              f"{feature.shape[0]}-d float32 = {feature.nbytes * 8} bits, |f| = {np.linalg.norm(feature):.4f}")
    if len(features) == 2:
        distance = float(metrics.squared_distances(features[:1], features[1:])[0])
        print(f"squared L2 distance {distance:.4f}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sfc", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    features = commands.add_parser("features", help="FaceNet feature of one face, or the distance of two")
    features.add_argument("images", nargs="+", metavar="IMAGE")
    features.add_argument("--align", choices=["mtcnn", "center"], default="mtcnn")
    features.add_argument("--facenet_key", default="20180408-102900")
    features.add_argument("--facenet_weights", default=None, help="local Keras weights file")
    features.set_defaults(run=_features)
    return parser


def run(argv: list[str] | None = None) -> int:
    """Entry point of the ``sfc`` console script: exit 0, or 1 with a one-line reason."""
    args = build_parser().parse_args(argv)
    if args.command == "features" and len(args.images) > 2:
        print("sfc: features takes one or two images", file=sys.stderr)
        return 2
    try:
        args.run(args)
    except SfcError as exc:
        print(f"sfc: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run())
