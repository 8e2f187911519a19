"""The ``sfc`` command line.

  sfc compress IN... OUT [--enhancement none|jpeg|avif|...] [--quality Q] [--mode auto|...]
                         [--align mtcnn|center|crop] [--model_set NAME] [--skip_existing] [--keep_going]
                         [--batch_size N]   (alignment runs on threads ahead of the batches the networks code)
  sfc decompress IN... OUT [--layers reconstruction|full] [--features OUT.npy]   (OUT: a .png, or a directory)
  compress / decompress --server HOST:PORT [--server_protocol grpc|rest] [--server_timeout S]: FaceNet and the
                           reconstructor run on a TF Serving model server (docs/serving.md); the files are the same
  sfc info FILE            layers, sizes in bits, model set, prediction mode
  sfc strip FILE OUT       drop the enhancement layer (a valid base-only file)
  sfc compare A B          same person or not, from the base layers only
  sfc index GALLERY... OUT.npz   search index of .sfc files (base layers decoded only; label: parent folder)
  sfc search INDEX QUERY... [-k K]   nearest gallery identities of query faces or .sfc files
  sfc features IMAGE [IMAGE2]   FaceNet feature of a face, or the distance of two
  sfc models               the registered model sets and learned families
  sfc install-models CHECKPOINTS   copy a checkout's models to where an installed package finds them
  sfc demo IMAGE OUT_DIR   compress and decompress one face at every layer; sizes and PSNR

IN may be files, directories or globs (then OUT is a directory). Outputs are never overwritten without
--overwrite and are written whole or not at all (a temporary file renamed into place), with the permissions the
umask gives new files. Errors exit 1 with a one-line reason; Ctrl-C exits 130 with one line. Arguments are checked
before any model loads. --key_file KEY: authenticated files (compress writes them; the readers check them).
TensorFlow's start-up lines and warnings are silenced unless asked for (--verbose or SFC_TF_VERBOSE=1; a
TF_CPP_MIN_LOG_LEVEL of your own is kept).
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import logging
import math
import os
import pathlib
import sys

from sfc_tf.errors import SfcError, located
from sfc_tf.files import write_atomically

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
MAX_KEY_FILE_BYTES = 1 << 16
VERBOSE_ENVIRONMENT = "SFC_TF_VERBOSE"
DECODE_BATCH = 32  # files per decoding call of sfc decompress


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
    if not found:
        raise UsageError(f"no input files ({', '.join(suffixes)}) in {' '.join(patterns)}")
    return found


def _check_output(path: pathlib.Path, overwrite: bool) -> pathlib.Path:
    if path.exists() and not overwrite:
        raise UsageError(f"{path} exists (use --overwrite, or --skip_existing for batches)")
    return path


def _targets(args, inputs: list[pathlib.Path], suffix: str) -> list[pathlib.Path]:
    out = pathlib.Path(args.output)
    if len(inputs) == 1 and not out.is_dir():
        return [out]
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} is a file; several inputs need an output directory")
    names = [p.stem + suffix for p in inputs]
    if len(set(names)) < len(names):
        raise UsageError("two inputs have the same name; their outputs would collide in " + str(out))
    return [out / name for name in names]


def _progress(items, description: str, unit: str = "face"):
    from tqdm import tqdm

    return tqdm(items, desc=description, unit=unit, disable=len(items) < 2, file=sys.stderr)


def _codec(args):
    from sfc_tf.codec import ScalableCodec

    kwargs = {"align": getattr(args, "align", "mtcnn"), "key": getattr(args, "key", None)}
    if getattr(args, "server", None):
        from sfc_tf.serving.client import RemoteModels

        kwargs["models"] = RemoteModels(args.server, args.server_protocol, timeout=args.server_timeout)
    return ScalableCodec.from_pretrained(args.model_set, **kwargs)


def _check_arguments(args) -> None:
    """The arguments every command shares, checked (and the key read) before a command starts."""
    if getattr(args, "server", None):  # the deadline of a model server's requests (the client imports TensorFlow)
        from sfc_tf.serving.client import check_timeout

        try:
            check_timeout(args.server_timeout)
        except ValueError as exc:
            raise UsageError(f"--server_timeout: {exc}") from None
    threshold = getattr(args, "threshold", None)
    if threshold is not None and not math.isfinite(threshold):
        raise UsageError(f"--threshold must be a finite distance, not {threshold}")
    args.key = _read_key(args.key_file) if getattr(args, "key_file", None) else None


def _read_key(path: str) -> bytes:
    """The bytes of a key file, as they are (docs/bitstream.md: at least 16; 32 random bytes are a good key)."""
    from sfc_tf import bitstream

    try:
        with open(path, "rb") as handle:
            key = handle.read(MAX_KEY_FILE_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"cannot read the key file {path}: {exc.strerror or exc}") from exc
    if not bitstream.MIN_KEY_BYTES <= len(key) <= MAX_KEY_FILE_BYTES:
        raise UsageError(
            f"the key file {path} holds {len(key)} bytes; a key is {bitstream.MIN_KEY_BYTES} to "
            f"{MAX_KEY_FILE_BYTES} bytes (e.g. head -c 32 /dev/urandom > {path})"
        )
    return key


def _quality(args):
    """--quality checked for --enhancement before any model loads (a learned codec's range: the registry file)."""
    from sfc_tf.enhancement import registry

    try:
        return registry.check_quality(args.enhancement, args.quality, model_set=args.model_set)
    except ValueError as exc:
        raise UsageError(f"--quality: {exc}") from None


def _compress(args) -> None:
    from sfc_tf import bitstream
    from sfc_tf.apps import batch_encode

    quality = _quality(args)
    if not 1 <= args.batch_size <= batch_encode.MAX_BATCH:
        raise UsageError(f"--batch_size must be 1..{batch_encode.MAX_BATCH}, not {args.batch_size}")
    inputs = _inputs(args.inputs, IMAGE_SUFFIXES)
    targets = _targets(args, inputs, ".sfc")
    jobs = []
    for source, target in zip(inputs, targets):
        if target.exists() and args.skip_existing:
            continue
        jobs.append((source, _check_output(target, args.overwrite)))
    if not jobs:
        print(f"nothing to do: all {len(inputs)} outputs exist (--skip_existing)")
        return
    codec = _codec(args)
    failed = []
    outcomes = batch_encode.encode_files(
        codec, [source for source, _ in jobs], args.enhancement, quality, args.mode, args.batch_size
    )
    with contextlib.closing(outcomes):
        for (source, target), outcome in zip(_progress(jobs, "compress"), outcomes):
            if outcome.error is not None:
                if not args.keep_going:
                    raise SfcError(f"{source}: {outcome.error}") from outcome.error
                failed.append(f"{source}: {outcome.error}")
                continue
            write_atomically(target, outcome.data)
            sizes = bitstream.info(outcome.data)
            mode = f", mode {sizes['prediction_mode']}" if "prediction_mode" in sizes else ""
            print(
                f"{source} -> {target}: {sizes['file_bits']} bits (base part {sizes['base_part_bits']}, "
                f"enhancement part {sizes.get('enhancement_part_bits', 0)}{mode})"
            )
    if failed:
        for line in failed:
            print(f"sfc compress: {line}".splitlines()[0], file=sys.stderr)
        raise SfcError(f"{len(failed)} of {len(jobs)} inputs failed (listed above)")


def _decompress(args) -> None:
    import io

    import numpy as np
    from PIL import Image

    inputs = _inputs(args.inputs, (".sfc",))
    jobs = [
        (source, _check_output(target, args.overwrite))
        for source, target in zip(inputs, _targets(args, inputs, ".png"))
    ]
    if args.features and len(jobs) > 1:
        raise UsageError("--features names one .npy file: give one input")
    features = _check_output(pathlib.Path(args.features), args.overwrite) if args.features else None
    if features is not None and features.resolve() == jobs[0][1].resolve():
        raise UsageError("--features must differ from the image output")
    codec = _codec(args)

    def write(source: pathlib.Path, target: pathlib.Path, decoded) -> None:
        png = io.BytesIO()
        Image.fromarray(decoded.image).save(png, "PNG")
        if features is not None:
            array = io.BytesIO()
            np.save(array, decoded.feature)
            write_atomically(features, array.getvalue())
        write_atomically(target, png.getvalue())
        print(f"{source} -> {target} ({args.layers})")

    chunks = [jobs[start : start + DECODE_BATCH] for start in range(0, len(jobs), DECODE_BATCH)]
    for chunk in _progress(chunks, "decompress", "batch"):
        files, names = [source.read_bytes() for source, _ in chunk], [str(source) for source, _ in chunk]
        try:
            decoded = codec.decode_many(files, args.layers, names)
        except SfcError:  # decoded one by one: the files before the bad one are written, then it stops with its name
            decoded = None
        for i, (source, target) in enumerate(chunk):
            write(source, target, decoded[i] if decoded else codec.decode_many([files[i]], args.layers, [names[i]])[0])


def _info(args) -> None:
    from sfc_tf import bitstream

    try:
        info = bitstream.info(pathlib.Path(args.input).read_bytes(), args.key)
    except SfcError as exc:
        raise located(exc, args.input) from exc
    print(json.dumps({**info, **_registered_names(info)}, indent=2))


def _registered_names(info: dict) -> dict:
    """The registry's names of a file's model set and learned model (none without a registry)."""
    from sfc_tf import bitstream, zoo
    from sfc_tf.codec import registered_learned_models
    from sfc_tf.errors import WeightsError

    try:
        sets = zoo.model_sets()
    except WeightsError:
        return {}
    names = {"model_set_name": sets[info["model_set"]].name} if info["model_set"] in sets else {}
    if "enhancement_model_id" in info:
        for codec_id, model_id, family, quality in registered_learned_models():
            if (bitstream.CODECS[codec_id], f"{model_id:04x}") == (
                info["enhancement_codec"],
                info["enhancement_model_id"],
            ):
                return {**names, "enhancement_model": f"{family.name} quality {quality}"}
    return names


def _strip(args) -> None:
    from sfc_tf import bitstream

    data = pathlib.Path(args.input).read_bytes()
    target = _check_output(pathlib.Path(args.output), args.overwrite)
    try:
        stripped = bitstream.strip_enhancement(data, args.key)
    except SfcError as exc:
        raise located(exc, args.input) from exc
    write_atomically(target, stripped)
    print(f"{args.input}: {8 * len(data)} -> {8 * len(stripped)} bits (base layer only)")


def _compare(args) -> None:
    from sfc_tf import metrics, zoo

    codec = _codec(args)
    paths = (args.first, args.second)
    a, b = (d.feature for d in codec.decode_many([pathlib.Path(p).read_bytes() for p in paths], "base", paths))
    threshold = zoo.verification_threshold() if args.threshold is None else args.threshold
    # centred on the training-identity feature mean, as the threshold was chosen (the base layer's PCA mean)
    a, b = (metrics.centered(f, codec.base_layer.mean) for f in (a, b))
    distance = float(metrics.squared_distances(a[None], b[None])[0])
    verdict = "same person" if distance < threshold else "different people"
    print(f"{verdict}: squared L2 distance {distance:.4f}, threshold {threshold:.2f}")


def _index(args) -> None:
    from sfc_tf.apps import search

    target = _check_output(pathlib.Path(args.output), args.overwrite)
    if target.suffix != ".npz":
        raise UsageError(f"the index is an .npz file, not {target.name}")
    inputs = [
        f
        for p in args.gallery
        for f in (sorted(pathlib.Path(p).rglob("*.sfc")) if pathlib.Path(p).is_dir() else _inputs([p], (".sfc",)))
    ]
    if not inputs:
        raise UsageError(f"no .sfc files in {' '.join(args.gallery)}")
    labels = [p.parent.name if args.label == "parent" else p.stem for p in inputs]
    codec = _codec(args)
    index = search.SearchIndex.from_files(
        codec,
        [p.read_bytes() for p in inputs],
        labels,
        [str(p) for p in inputs],
        progress=lambda chunks: _progress(chunks, "decoding base layers", "batch"),
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    index.save(target)
    print(
        f"{target}: {len(index)} faces of {len(set(labels))} identities, {index.dim}-d base-layer features, "
        f"model set {index.model_set}"
    )


def _search(args) -> None:
    import numpy as np

    from sfc_tf import zoo
    from sfc_tf.apps import search
    from sfc_tf.codec import ScalableCodec

    if args.k < 1:
        raise UsageError(f"-k must be at least 1, not {args.k}")
    queries = _inputs(args.queries, (".sfc",) + IMAGE_SUFFIXES)
    index = search.SearchIndex.load(args.index)
    codec = ScalableCodec.from_pretrained(index.model_set, align=args.align, key=args.key)
    threshold = zoo.verification_threshold() if args.threshold is None else args.threshold
    files = [p.read_bytes() if p.suffix == ".sfc" else codec.encode(p) for p in queries]  # base-only
    features = np.stack([d.feature for d in codec.decode_many(files, "base", [str(q) for q in queries])])
    matches = index.search(index.centre(features), args.k, args.method)
    for query, labels, sources, distances in zip(queries, matches.labels, matches.sources, matches.distances):
        print(f"{query}:")
        for rank, (label, source, distance) in enumerate(zip(labels, sources, distances), 1):
            verdict = "same person" if distance < threshold else "different"
            print(f"  {rank}. {label}  {distance:.4f} ({verdict})  {source}")


def _features(args) -> None:
    import numpy as np

    from sfc_tf import metrics
    from sfc_tf.base import align, facenet

    if len(args.images) > 2:
        raise UsageError("features takes one or two images")
    facenet.feature_dim(args.facenet_key)  # an unknown key is refused before MTCNN loads
    aligner = align.make_aligner(args.align)
    crops = np.stack([aligner(path) for path in args.images])
    extractor = facenet.FeatureExtractor(args.facenet_key, args.facenet_weights)
    features = extractor(crops)
    for path, crop, feature in zip(args.images, crops, features):
        print(
            f"{path}: {args.align} crop {crop.shape[1]}x{crop.shape[0]}, FaceNet {extractor.key} feature "
            f"{feature.shape[0]}-d float32 = {feature.nbytes * 8} bits, |f| = {np.linalg.norm(feature):.4f}"
        )
    if len(features) == 2:
        print(f"squared L2 distance {float(metrics.squared_distances(features[:1], features[1:])[0]):.4f}")


def _models(args) -> None:
    from sfc_tf import zoo
    from sfc_tf.enhancement import registry

    kinds = [entry.family_kind for entry in registry.CODECS.values() if entry.learned]
    default = zoo.model_set()
    for entry in zoo.model_sets().values():
        mark = " (default)" if entry.id == default.id else ""
        families = {kind: zoo.default_family_name(kind, entry) for kind in kinds}
        print(
            f"model set {entry.id:3d} {entry.name}{mark}: base layer {entry.base_layer}, reconstructor "
            f"{entry.reconstructor}, predictor {entry.predictor}, learned families "
            + ", ".join(f"{kind} {name}" for kind, name in families.items() if name)
        )
    for family in zoo.learned_families().values():
        print(f"learned {family.name} ({family.kind}, qualities 1..{len(family.rates)}): {family.description}")


def _install_models(args) -> None:
    from sfc_tf import zoo

    target, size = zoo.install(args.source, args.target)
    print(f"installed the models of {args.source} into {target} ({size / 1e6:.1f} MB)")


def _demo(args) -> None:
    import io

    from PIL import Image

    from sfc_tf import bitstream, metrics

    quality = _quality(args)
    out = pathlib.Path(args.out_dir)
    outputs = [
        _check_output(out / name, args.overwrite) for name in ("crop.png", "face.sfc", "reconstruction.png", "full.png")
    ]
    codec = _codec(args)
    crop = codec.crop(args.image)
    data = codec.encode(args.image, args.enhancement, quality, args.mode)
    sizes = bitstream.info(data)

    def png(image) -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, "PNG")
        return buffer.getvalue()

    write_atomically(outputs[0], png(crop))
    write_atomically(outputs[1], data)
    print(
        f"{args.image}: {args.align} crop {crop.shape[1]}x{crop.shape[0]} -> {outputs[1]} "
        f"({sizes['file_bits']} bits: base part {sizes['base_part_bits']}, "
        f"enhancement part {sizes.get('enhancement_part_bits', 0)} with {args.enhancement}"
        + (f", prediction mode {sizes['prediction_mode']})" if "prediction_mode" in sizes else ")")
    )
    for layers, target in (("reconstruction", outputs[2]), ("full", outputs[3])):
        decoded = codec.decode(data, layers)
        write_atomically(target, png(decoded.image))
        print(f"  {layers:>14}: PSNR {float(metrics.psnr(crop, decoded.image)):.2f} dB -> {target}")
    feature = codec.decode(data, "base").feature
    print(
        f"  base layer alone: {feature.shape[0]}-d feature, cosine to the uncoded feature "
        f"{float(feature @ codec.extractor(crop)[0]):.4f}"
    )


def build_parser() -> argparse.ArgumentParser:
    from sfc_tf.apps import batch_encode
    from sfc_tf.apps.search import METHODS
    from sfc_tf.bitstream import ALIGNMENTS
    from sfc_tf.codec import AUTO, LAYERS, MODE_CHOICES
    from sfc_tf.enhancement import registry

    parser = argparse.ArgumentParser(prog="sfc", description="Scalable facial image compression.")
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name, run, help_text):
        sub = commands.add_parser(name, help=help_text)
        sub.set_defaults(run=run)
        sub.add_argument(
            "--model_set",
            default=None,
            help="registered model set to encode with (name or id; `sfc models`); default: the default",
        )
        sub.add_argument(
            "--verbose",
            action="store_true",
            help=f"show TensorFlow's start-up and log lines (also: {VERBOSE_ENVIRONMENT}=1)",
        )
        return sub

    def key_flag(sub, what):
        sub.add_argument(
            "--key_file",
            default=None,
            metavar="KEY",
            help=f"a file of 16+ secret bytes: {what} (docs/bitstream.md, authenticated files)",
        )

    def server_flags(sub):
        sub.add_argument(
            "--server",
            default=None,
            metavar="HOST:PORT",
            help="run FaceNet, the reconstructor and the coding predictor on this TF Serving " "model server",
        )
        sub.add_argument(
            "--server_protocol", choices=["grpc", "rest"], default="grpc", help="grpc (port 8500) or rest (port 8501)"
        )
        sub.add_argument(
            "--server_timeout",
            type=float,
            default=60.0,
            metavar="S",
            help="deadline of each request to the model server, in seconds",
        )

    def threshold_flag(sub):
        sub.add_argument(
            "--threshold",
            type=float,
            default=None,
            help="squared L2 distance on mean-centred features below which two faces are the same person "
            "(default: the registry's)",
        )

    def coding_flags(sub):
        sub.add_argument(
            "--enhancement",
            choices=registry.ENHANCEMENTS,
            default="jpeg",
            help="; ".join(f"{name}: {entry.summary}" for name, entry in registry.CODECS.items()),
        )
        sub.add_argument(
            "--quality",
            default=None,
            help="; ".join(f"{name}: {entry.quality.describe()}" for name, entry in registry.CODECS.items())
            + " (default: "
            + ", ".join(
                f"{name} {entry.quality.default or 'the middle quality'}" for name, entry in registry.CODECS.items()
            )
            + ")",
        )
        sub.add_argument(
            "--mode",
            choices=MODE_CHOICES,
            default=AUTO,
            help="prediction the enhancement layer codes against; auto: the best per face; "
            "reconstruction: the paper's residual",
        )
        sub.add_argument("--align", choices=ALIGNMENTS, default="mtcnn")

    compress = command("compress", _compress, "image(s) -> .sfc")
    compress.add_argument("inputs", nargs="+", metavar="IN")
    compress.add_argument("output", metavar="OUT")
    coding_flags(compress)
    compress.add_argument("--overwrite", action="store_true")
    compress.add_argument("--skip_existing", action="store_true", help="leave existing outputs alone (resume a batch)")
    compress.add_argument(
        "--keep_going", action="store_true", help="code every good input, list the bad ones at the end and exit 1"
    )
    compress.add_argument(
        "--batch_size",
        type=int,
        default=batch_encode.DEFAULT_BATCH,
        metavar="N",
        help=f"faces per network call, 1..{batch_encode.MAX_BATCH} (the files are the same bytes at any size)",
    )
    server_flags(compress)
    key_flag(compress, "write authenticated files tagged with this key")

    decompress = command("decompress", _decompress, ".sfc -> image")
    decompress.add_argument("inputs", nargs="+", metavar="IN")
    decompress.add_argument("output", metavar="OUT")
    decompress.add_argument(
        "--layers",
        choices=LAYERS[1:],  # an image: the base layer alone decodes to a feature
        default="full",
        help="reconstruction: the face rebuilt from the base layer alone (needs only it)",
    )
    decompress.add_argument("--features", default=None, metavar="OUT.npy", help="also save the decoded feature")
    decompress.add_argument("--overwrite", action="store_true")
    server_flags(decompress)
    key_flag(decompress, "refuse the file unless its tag verifies with this key")

    info = command("info", _info, "layers, sizes and models of a file")
    info.add_argument("input", metavar="FILE")
    key_flag(info, "check an authenticated file's tag (without it, its fields are shown unverified)")

    strip = command("strip", _strip, "drop the enhancement layer")
    strip.add_argument("input", metavar="FILE")
    strip.add_argument("output", metavar="OUT")
    strip.add_argument("--overwrite", action="store_true")
    key_flag(strip, "an authenticated file's key: checked, and the stripped file tagged with it")

    compare = command("compare", _compare, "same person or not, from the base layers")
    compare.add_argument("first", metavar="A")
    compare.add_argument("second", metavar="B")
    threshold_flag(compare)
    key_flag(compare, "refuse files whose tag does not verify with this key")

    index = command("index", _index, "search index of a gallery of .sfc files (base layers only)")
    index.add_argument(
        "gallery", nargs="+", metavar="GALLERY", help=".sfc files, globs, or directories (searched recursively)"
    )
    index.add_argument("output", metavar="OUT.npz")
    index.add_argument(
        "--label", choices=["parent", "stem"], default="parent", help="identity: folder name or file stem"
    )
    index.add_argument("--overwrite", action="store_true")
    key_flag(index, "refuse gallery files whose tag does not verify with this key")

    search = command("search", _search, "nearest gallery identities of query faces or .sfc files")
    search.add_argument("index", metavar="INDEX.npz")
    search.add_argument("queries", nargs="+", metavar="QUERY", help="images or .sfc files")
    search.add_argument("-k", type=int, default=5, help="results per query")
    search.add_argument(
        "--method",
        choices=METHODS,
        default="auto",
        help="exact search, FAISS HNSW (approximate), or auto: exact up to 50,000 entries",
    )
    threshold_flag(search)
    key_flag(search, "refuse .sfc queries whose tag does not verify with this key")
    search.add_argument("--align", choices=ALIGNMENTS, default="mtcnn", help="crop of query images")

    features = command("features", _features, "FaceNet feature of a face, or the distance of two")
    features.add_argument("images", nargs="+", metavar="IMAGE")
    features.add_argument("--align", choices=ALIGNMENTS, default="mtcnn")
    features.add_argument("--facenet_key", default="20180408-102900")
    features.add_argument("--facenet_weights", default=None, help="local Keras weights file")

    command("models", _models, "registered model sets and learned families")

    install = command(
        "install-models",
        _install_models,
        "copy a checkout's shipped models to where an installed package finds them",
    )
    install.add_argument("source", metavar="CHECKPOINTS", help="a checkpoints directory, e.g. of a repository checkout")
    install.add_argument(
        "--target", default=None, help="default: <cache>/checkpoints ($SFC_TF_CACHE or ~/.cache/sfc_tf)"
    )

    demo = command("demo", _demo, "compress and decompress one face, print sizes and PSNR")
    demo.add_argument("image", metavar="IMAGE")
    demo.add_argument("out_dir", metavar="OUT_DIR")
    coding_flags(demo)
    demo.add_argument("--overwrite", action="store_true")
    return parser


def quiet_start() -> None:
    """Silences TensorFlow's C++ start-up and log lines and absl's and TensorFlow's Python warnings; effective when
    called before TensorFlow loads (a TF_CPP_MIN_LOG_LEVEL the user set is kept)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.ERROR)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)


def run(argv: list[str] | None = None) -> int:
    """Entry point of the ``sfc`` console script: exit 0, 1 with a one-line reason, or 130 on Ctrl-C."""
    args = build_parser().parse_args(argv)
    if not (args.verbose or os.environ.get(VERBOSE_ENVIRONMENT, "") not in ("", "0")):
        quiet_start()
    try:
        _check_arguments(args)
        args.run(args)
    except KeyboardInterrupt:
        print(
            f"sfc {args.command}: interrupted (finished outputs are complete; rerun with --skip_existing)",
            file=sys.stderr,
        )
        return 130
    except (SfcError, ValueError, OSError) as exc:
        print(f"sfc {args.command}: {exc}".splitlines()[0], file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run())
