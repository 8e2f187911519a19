"""The ``sfc`` command line.

  sfc compress IN... OUT [--enhancement none|jpeg|jpeg2000|learned] [--quality Q] [--align mtcnn|center|crop]
  sfc decompress IN OUT.png [--layers base|full] [--features OUT.npy]
  compress / decompress --server HOST:PORT [--server_protocol grpc|rest]: the networks run on a TF Serving
                           model server (docs/serving.md); the files are the same
  sfc info FILE            layers, sizes in bits, model ids
  sfc strip FILE OUT       drop the enhancement layer (a valid base-only file)
  sfc compare A B          same person or not, from the base layers only
  sfc features IMAGE [IMAGE2]   FaceNet feature of a face, or the distance of two
  sfc demo IMAGE OUT_DIR   compress and decompress one face at every layer; sizes and PSNR

IN may be files, directories or globs (then OUT is a directory). Outputs are never overwritten without
--overwrite. Errors exit non-zero with a one-line reason.
"""

from __future__ import annotations

import argparse
import glob
import json
import pathlib
import sys

from sfc_tf.errors import SfcError

# Squared-L2 threshold for "same person": the one eval/verify_lfw.py chose on LFW folds 1-4 (mtcnn crops)
# from eval/results/verify_lfw_mtcnn.json; override with --threshold.
THRESHOLDS_FILE = pathlib.Path(__file__).resolve().parent.parent / "eval" / "results" / "verify_lfw_mtcnn.json"


class UsageError(SfcError):
    """Bad command-line use (existing output, missing input, ...)."""


def _inputs(patterns: list[str], suffixes: tuple[str, ...]) -> list[pathlib.Path]:
    found = []
    for pattern in patterns:
        path = pathlib.Path(pattern)
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.suffix.lower() in suffixes)
        elif path.is_file():
            found.append(path)
        else:
            matches = sorted(pathlib.Path(p) for p in glob.glob(pattern))
            if not matches:
                raise UsageError(f"no input matches {pattern}")
            found += matches
    return found


def _output(path: pathlib.Path, overwrite: bool) -> pathlib.Path:
    if path.exists() and not overwrite:
        raise UsageError(f"{path} exists (use --overwrite)")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _targets(args, inputs: list[pathlib.Path], suffix: str) -> list[pathlib.Path]:
    out = pathlib.Path(args.output)
    if len(inputs) == 1 and not out.is_dir():
        return [_output(out, args.overwrite)]
    out.mkdir(parents=True, exist_ok=True)
    return [_output(out / (p.stem + suffix), args.overwrite) for p in inputs]


def _progress(items, description: str):
    from tqdm import tqdm

    return tqdm(items, desc=description, unit="face", disable=len(items) < 2)


def _codec(args):
    from sfc_tf.codec import ScalableCodec

    kwargs = {"align": getattr(args, "align", "mtcnn")}
    for flag, name in (("base_layer", "base_layer_path"), ("reconstructor", "reconstructor_dir"),
                       ("learned_dir", "learned_dir")):
        if getattr(args, flag):
            kwargs[name] = getattr(args, flag)
    if getattr(args, "server", None):
        from sfc_tf.serving_client import RemoteModels

        kwargs["models"] = RemoteModels(args.server, args.server_protocol)
    return ScalableCodec(**kwargs)


def _compress(args) -> None:
    from sfc_tf import bitstream

    inputs = _inputs(args.inputs, (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"))
    targets = _targets(args, inputs, ".sfc")
    codec = _codec(args)
    for source, target in _progress(list(zip(inputs, targets)), "compress"):
        try:
            data = codec.encode(source, args.enhancement, args.quality)
        except SfcError as exc:
            raise SfcError(f"{source}: {exc}") from exc
        target.write_bytes(data)
        sizes = bitstream.info(data)
        print(f"{source} -> {target}: {sizes['file_bits']} bits (base part {sizes['base_part_bits']}, "
              f"enhancement part {sizes.get('enhancement_part_bits', 0)})")


def _decompress(args) -> None:
    import numpy as np
    from PIL import Image

    source = pathlib.Path(args.input)
    if not source.is_file():
        raise UsageError(f"no such file {source}")
    target = _output(pathlib.Path(args.output), args.overwrite)
    layers = "full" if args.layers == "full" else "reconstruction"
    decoded = _codec(args).decode(source.read_bytes(), layers)
    Image.fromarray(decoded.image).save(target)
    if args.features:
        np.save(_output(pathlib.Path(args.features), args.overwrite), decoded.feature)
    print(f"{source} -> {target} ({args.layers} layers)")


def _info(args) -> None:
    from sfc_tf import bitstream

    print(json.dumps(bitstream.info(pathlib.Path(args.input).read_bytes()), indent=2))


def _strip(args) -> None:
    from sfc_tf import bitstream

    data = pathlib.Path(args.input).read_bytes()
    stripped = bitstream.strip_enhancement(data)
    _output(pathlib.Path(args.output), args.overwrite).write_bytes(stripped)
    print(f"{args.input}: {8 * len(data)} -> {8 * len(stripped)} bits (base layer only)")


def lfw_threshold() -> tuple[float, bool]:
    """The mean of the thresholds verify_lfw.py chose, and whether they apply to mean-centred features."""
    if not THRESHOLDS_FILE.is_file():
        raise UsageError(f"{THRESHOLDS_FILE} missing: run eval/verify_lfw.py or pass --threshold")
    result = json.loads(THRESHOLDS_FILE.read_text())
    return float(sum(result["thresholds"]) / len(result["thresholds"])), bool(result.get("subtract_mean"))


def _compare(args) -> None:
    from sfc_tf import metrics

    codec = _codec(args)
    a, b = (codec.decode(pathlib.Path(p).read_bytes(), "base").feature for p in (args.first, args.second))
    threshold, centred = (args.threshold, True) if args.threshold is not None else lfw_threshold()
    if centred:     # the base-layer model's mean is the training-identity feature mean verify_lfw.py subtracts
        a, b = (metrics.centered(f, codec.base_layer.mean) for f in (a, b))
    distance = float(metrics.squared_distances(a[None], b[None])[0])
    verdict = "same person" if distance < threshold else "different people"
    print(f"{verdict}: squared L2 distance {distance:.4f}, threshold {threshold:.2f}")


def _features(args) -> None:
    import numpy as np

    from sfc_tf import align, facenet, metrics

    if len(args.images) > 2:
        raise UsageError("features takes one or two images")
    aligner = align.make_aligner(args.align)
    crops = np.stack([aligner(path) for path in args.images])
    extractor = facenet.FeatureExtractor(args.facenet_key, args.facenet_weights)
    features = extractor(crops)
    for path, crop, feature in zip(args.images, crops, features):
        print(f"{path}: {args.align} crop {crop.shape[1]}x{crop.shape[0]}, FaceNet {extractor.key} feature "
              f"{feature.shape[0]}-d float32 = {feature.nbytes * 8} bits, |f| = {np.linalg.norm(feature):.4f}")
    if len(features) == 2:
        print(f"squared L2 distance {float(metrics.squared_distances(features[:1], features[1:])[0]):.4f}")


def _demo(args) -> None:
    from PIL import Image

    from sfc_tf import bitstream, metrics

    codec = _codec(args)
    out = pathlib.Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    crop = codec.crop(args.image)
    Image.fromarray(crop).save(_output(out / "crop.png", args.overwrite))
    data = codec.encode(args.image, args.enhancement, args.quality)
    _output(out / "face.sfc", args.overwrite).write_bytes(data)
    sizes = bitstream.info(data)
    print(f"{args.image}: {args.align} crop {crop.shape[1]}x{crop.shape[0]} -> {out / 'face.sfc'} "
          f"({sizes['file_bits']} bits: base part {sizes['base_part_bits']}, "
          f"enhancement part {sizes.get('enhancement_part_bits', 0)} with {args.enhancement})")
    for layers in ("reconstruction", "full"):
        decoded = codec.decode(data if layers == "full" else bitstream.strip_enhancement(data), layers)
        Image.fromarray(decoded.image).save(_output(out / f"{layers}.png", args.overwrite))
        print(f"  {layers:>14}: PSNR {float(metrics.psnr(crop, decoded.image)):.2f} dB -> {out / (layers + '.png')}")
    feature = codec.decode(data, "base").feature
    print(f"  base layer alone: {feature.shape[0]}-d feature, cosine to the uncoded feature "
          f"{float(feature @ codec.extractor(crop)[0]):.4f}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sfc", description="Scalable facial image compression.")
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name, run, help_text):
        sub = commands.add_parser(name, help=help_text)
        sub.set_defaults(run=run)
        sub.add_argument("--base_layer", default=None, help="base-layer model (.npz); default: shipped")
        sub.add_argument("--reconstructor", default=None, help="reconstructor checkpoint dir; default: shipped")
        sub.add_argument("--learned_dir", default=None, help="dir of learned enhancement models; default: shipped")
        return sub

    def server_flags(sub):
        sub.add_argument("--server", default=None, metavar="HOST:PORT",
                         help="run FaceNet, the reconstructor and the learned codec on this TF Serving model server")
        sub.add_argument("--server_protocol", choices=["grpc", "rest"], default="grpc",
                         help="grpc (port 8500) or rest (port 8501)")

    compress = command("compress", _compress, "image(s) -> .sfc")
    compress.add_argument("inputs", nargs="+", metavar="IN")
    compress.add_argument("output", metavar="OUT")
    compress.add_argument("--enhancement", choices=["none", "jpeg", "jpeg2000", "learned"], default="jpeg")
    compress.add_argument("--quality", default=None,
                          help="jpeg: quality 1-95; jpeg2000: compression ratio; learned: lambda of a shipped model")
    compress.add_argument("--align", choices=["mtcnn", "center", "crop"], default="mtcnn")
    compress.add_argument("--overwrite", action="store_true")
    server_flags(compress)

    decompress = command("decompress", _decompress, ".sfc -> image")
    decompress.add_argument("input", metavar="IN")
    decompress.add_argument("output", metavar="OUT.png")
    decompress.add_argument("--layers", choices=["base", "full"], default="full",
                            help="base: the face reconstructed from the feature alone")
    decompress.add_argument("--features", default=None, metavar="OUT.npy", help="also save the decoded feature")
    decompress.add_argument("--overwrite", action="store_true")
    server_flags(decompress)

    info = command("info", _info, "layers, sizes and models of a file")
    info.add_argument("input", metavar="FILE")

    strip = command("strip", _strip, "drop the enhancement layer")
    strip.add_argument("input", metavar="FILE")
    strip.add_argument("output", metavar="OUT")
    strip.add_argument("--overwrite", action="store_true")

    compare = command("compare", _compare, "same person or not, from the base layers")
    compare.add_argument("first", metavar="A")
    compare.add_argument("second", metavar="B")
    compare.add_argument("--threshold", type=float, default=None,
                         help="squared L2 distance threshold on mean-centred features")

    features = command("features", _features, "FaceNet feature of a face, or the distance of two")
    features.add_argument("images", nargs="+", metavar="IMAGE")
    features.add_argument("--align", choices=["mtcnn", "center"], default="mtcnn")
    features.add_argument("--facenet_key", default="20180408-102900")
    features.add_argument("--facenet_weights", default=None, help="local Keras weights file")
    demo = command("demo", _demo, "compress and decompress one face, print sizes and PSNR")
    demo.add_argument("image", metavar="IMAGE")
    demo.add_argument("out_dir", metavar="OUT_DIR")
    demo.add_argument("--enhancement", choices=["none", "jpeg", "jpeg2000", "learned"], default="jpeg")
    demo.add_argument("--quality", default=None)
    demo.add_argument("--align", choices=["mtcnn", "center", "crop"], default="mtcnn")
    demo.add_argument("--overwrite", action="store_true")
    return parser


def run(argv: list[str] | None = None) -> int:
    """Entry point of the ``sfc`` console script: exit 0, or 1 with a one-line reason."""
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except (SfcError, ValueError, OSError) as exc:
        print(f"sfc {args.command}: {exc}".splitlines()[0], file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run())
