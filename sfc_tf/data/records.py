"""Training data at scale: sharded TFRecords of aligned crops with their FaceNet features, written once and streamed.

A record folder holds ``shard-NNNNN.tfrecord`` files and ``records.json`` (the manifest: source, alignment, FaceNet
model, identities, and per shard its example count and sha256). Each example is one face: ``crop`` (160x160 PNG),
``feature`` (its FaceNet feature), ``flipped_feature`` (the feature of its mirror image, for flip augmentation)
and ``identity`` (a name). FaceNet is the expensive part of every training input, so it runs once, here.

Sources: an identity-folder tree (VGGFace2 / LFW layout) or any image dataset of tensorflow-datasets by name
(``lfw``, ``celeb_a``, ...). Building is resumable: a shard is written to a temporary name and renamed when
complete, its sidecar JSON last, so an interrupted build redoes at most one shard; the manifest is written at the
end, and a folder without one is refused by the readers.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import io
import json
import os
import pathlib
from typing import Callable, Iterable

import numpy as np

from sfc_tf import settings
from sfc_tf.errors import SfcError

MANIFEST = "records.json"
FORMAT = 1
MAX_SHARDS = 100_000
BUILD_HINT = "build it with train/build_records.py"


@dataclasses.dataclass
class Chunk:
    """The faces of one shard: their identities, and their aligned crops on demand (a resumed build skips the
    alignment of shards it already has)."""

    identities: list[str]
    crops: Callable[[], np.ndarray]  # -> (N, 160, 160, 3) uint8


@dataclasses.dataclass
class Records:
    """A built record folder: where it is and what its manifest says."""

    directory: pathlib.Path
    manifest: dict

    @property
    def examples(self) -> int:
        return self.manifest["examples"]

    @property
    def identities(self) -> list[str]:
        return self.manifest["identities"]

    def count(self, names) -> int:
        """Examples of the identities ``names``."""
        counts = dict(zip(self.manifest["identities"], self.manifest["identity_counts"]))
        return sum(counts.get(name, 0) for name in names)

    def files(self) -> list[str]:
        return [str(self.directory / shard["file"]) for shard in self.manifest["shards"]]


def _encode_png(crop: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(crop).save(buffer, "PNG")
    return buffer.getvalue()


def _example(crop: np.ndarray, feature: np.ndarray, flipped: np.ndarray, identity: str) -> bytes:
    import tensorflow as tf

    def floats(values):
        return tf.train.Feature(float_list=tf.train.FloatList(value=np.asarray(values, np.float32).tolist()))

    def raw(value: bytes):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

    return tf.train.Example(
        features=tf.train.Features(
            feature={
                "crop": raw(_encode_png(crop)),
                "feature": floats(feature),
                "flipped_feature": floats(flipped),
                "identity": raw(identity.encode()),
            }
        )
    ).SerializeToString()


def write(
    chunks: Iterable[Chunk],
    total: int,
    output_dir: str | os.PathLike,
    source: dict,
    extractor,
    shard_size: int = 1000,
    progress: bool = True,
) -> Records:
    """Write the faces (chunks of ``shard_size``, the last one shorter) as shards of ``output_dir``; shards
    already complete from an interrupted build are kept (neither aligned nor run through FaceNet again)."""
    import tensorflow as tf

    from sfc_tf.checkpoint import sha256_file

    out = pathlib.Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    shards, counts = [], collections.Counter()
    if progress:
        from tqdm import tqdm

        chunks = tqdm(chunks, total=-(-total // shard_size), desc="shards", unit="shard")
    for index, chunk in enumerate(chunks):
        if index >= MAX_SHARDS:
            raise SfcError(f"more than {MAX_SHARDS} shards: use a larger --shard_size")
        name = f"shard-{index:05d}.tfrecord"
        sidecar = out / f"{name}.json"
        counts.update(chunk.identities)
        if sidecar.is_file():
            shards.append(json.loads(sidecar.read_text()))
            continue
        crops = chunk.crops()
        features = extractor(crops)
        flipped = extractor(np.ascontiguousarray(crops[:, :, ::-1]))
        tmp = out / f"{name}.tmp"
        with tf.io.TFRecordWriter(str(tmp)) as writer:
            for crop, feature, mirror, identity in zip(crops, features, flipped, chunk.identities):
                writer.write(_example(crop, feature, mirror, identity))
        os.replace(tmp, out / name)
        entry = {"file": name, "examples": len(chunk.identities), "sha256": sha256_file(out / name)}
        sidecar.write_text(json.dumps(entry))
        shards.append(entry)
    if not shards:
        raise SfcError("no faces to write")
    names = sorted(counts)
    manifest = {
        "format": FORMAT,
        "source": source,
        "facenet": extractor.key,
        "feature_dim": int(extractor.dim),
        "image_size": 160,
        "examples": sum(s["examples"] for s in shards),
        "identities": names,
        "identity_counts": [counts[name] for name in names],
        "shards": shards,
    }
    tmp = out / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, out / MANIFEST)
    return Records(out, manifest)


def build(
    output_dir: str | os.PathLike,
    *,
    data_dir: str | os.PathLike | None = None,
    tfds: str | None = None,
    tfds_data_dir: str | None = None,
    identities: list[str] | None = None,
    align: str = "mtcnn",
    shard_size: int = 1000,
    extractor=None,
    progress: bool = True,
) -> Records:
    """Records of the faces of an image folder (``data_dir/<identity>/``) or of a tensorflow-datasets dataset
    (``tfds``: NAME[:SPLIT], its ``image`` and, as identity, its ``label``), of ``identities`` if given, aligned
    with ``align`` (MTCNN misses get the center crop, as in ``folders.load_faces``)."""
    from sfc_tf.base import align as align_module
    from sfc_tf.base import facenet

    if (data_dir is None) == (tfds is None):
        raise ValueError("give exactly one of data_dir and tfds")
    aligner = align_module.make_aligner(align)
    if data_dir is not None:
        chunks, count, source = _folder_chunks(data_dir, identities, aligner, shard_size)
    else:
        chunks, count, source = _tfds_chunks(tfds, tfds_data_dir, identities, aligner, shard_size)
    source.update(identities=len(identities) if identities else None, align=align)
    return write(chunks, count, output_dir, source, extractor or facenet.FeatureExtractor(), shard_size, progress)


def _folder_chunks(data_dir, identities, aligner, shard_size) -> tuple[Iterable[Chunk], int, dict]:
    from sfc_tf.data import folders

    items = folders.list_images(data_dir, identities)
    if not items:
        raise SfcError(f"no images under {data_dir}")
    root = pathlib.Path(data_dir)

    def chunks():
        for start in range(0, len(items), shard_size):
            paths = [root / path for path, _ in items[start : start + shard_size]]
            yield Chunk([path.parent.name for path in paths], lambda paths=paths: aligner.align_many(paths, True)[0])

    return chunks(), len(items), {"data_dir": str(data_dir)}


def tfds_examples(name: str, data_dir: str | None = None) -> tuple[Iterable[dict], int, object]:
    """(numpy examples, count, label int -> name or None) of a tensorflow-datasets dataset ``name[:split]`` (split
    default: train), from ``data_dir`` or tfds's default folder; downloads and prepares it when it is not there
    yet (online users)."""
    import tensorflow_datasets as tfds

    dataset, split = (name.split(":", 1) + ["train"])[:2]
    try:
        builder = tfds.builder(dataset, data_dir=data_dir)
        builder.download_and_prepare()
    except Exception as exc:  # tfds raises many kinds (unknown name, no network, checksum): one line for all
        reason = str(exc).splitlines()[0] if str(exc) else ""
        raise SfcError(
            f"tensorflow-datasets {dataset!r} is not available ({type(exc).__name__}: {reason}); "
            f"prepare it online or pass --tfds_data_dir"
        ) from exc
    if split not in builder.info.splits:
        raise SfcError(f"tensorflow-datasets {dataset!r} has no split {split!r} (it has {list(builder.info.splits)})")
    label = builder.info.features.get("label") if hasattr(builder.info.features, "get") else None
    names = label.int2str if isinstance(label, tfds.features.ClassLabel) else None
    return (
        tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False)),
        builder.info.splits[split].num_examples,
        names,
    )


def _identity(example: dict, label_names) -> str:
    for key in ("label", "identity", "name"):
        if key in example:
            value = example[key]
            if isinstance(value, bytes):
                return value.decode()
            return label_names(int(value)) if label_names else str(int(value))
    return "unknown"


def _tfds_chunks(name, data_dir, identities, aligner, shard_size) -> tuple[Iterable[Chunk], int, dict]:
    examples, count, label_names = tfds_examples(name, data_dir)
    wanted = set(identities) if identities else None

    def chunk(images, names):
        return Chunk(names, lambda: aligner.align_many(images, True)[0])

    def chunks():
        images, names = [], []
        for example in examples:
            identity = _identity(example, label_names)
            if wanted is not None and identity not in wanted:
                continue
            images.append(example["image"])
            names.append(identity)
            if len(names) == shard_size:
                yield chunk(images, names)
                images, names = [], []
        if names:
            yield chunk(images, names)

    return chunks(), count, {"tfds": name, "tfds_data_dir": data_dir}


def tfds_cache_dir(name: str, align: str, identities_file: str | None) -> pathlib.Path:
    """Where the training binaries keep the records they build from ``--tfds NAME``."""
    key = hashlib.sha1(
        f"{name}|{align}|{identities_file and pathlib.Path(identities_file).read_text()}".encode()
    ).hexdigest()[:12]
    return settings.cache_dir() / "records" / f"tfds-{name.replace(':', '-')}-{align}-{key}"


def open_records(directory: str | os.PathLike, verify: bool = False) -> Records:
    """A built record folder, its manifest checked (``verify``: every shard's sha256 too)."""
    from sfc_tf.checkpoint import sha256_file

    directory = pathlib.Path(directory).expanduser()
    path = directory / MANIFEST
    if not path.is_file():
        raise SfcError(
            f"no TFRecord faces at {directory} ({MANIFEST} missing: unfinished or never built); {BUILD_HINT}"
        )
    manifest = json.loads(path.read_text())
    if manifest.get("format") != FORMAT or not 0 < len(manifest.get("shards", [])) <= MAX_SHARDS:
        raise SfcError(f"{path}: not a record manifest of format {FORMAT}")
    for shard in manifest["shards"]:
        file = directory / shard["file"]
        if pathlib.Path(shard["file"]).name != shard["file"] or not file.is_file():
            raise SfcError(f"{directory}: shard {shard['file']} is missing")
        if verify and sha256_file(file) != shard["sha256"]:
            raise SfcError(f"{file}: damaged (sha256 differs from {MANIFEST})")
    return Records(directory, manifest)


def dataset(
    records: Records,
    held_out: set[str] = frozenset(),
    keep_held_out: bool = False,
    shuffle: bool = True,
    seed: int = 0,
    flip: bool = False,
):
    """A tf.data stream of ``(crop uint8 (160,160,3), feature float32 (D,))`` examples from the shards, without
    (or, ``keep_held_out``, only) the ``held_out`` identities; shuffled shards interleaved with a shuffle buffer;
    ``flip``: each example mirrored half of the time, with its mirror image's feature."""
    import tensorflow as tf

    dim = records.manifest["feature_dim"]
    spec = {
        "crop": tf.io.FixedLenFeature([], tf.string),
        "feature": tf.io.FixedLenFeature([dim], tf.float32),
        "flipped_feature": tf.io.FixedLenFeature([dim], tf.float32),
        "identity": tf.io.FixedLenFeature([], tf.string),
    }
    held = tf.constant(sorted(held_out) or [""])

    def parse(serialized):
        example = tf.io.parse_single_example(serialized, spec)
        crop = tf.io.decode_png(example["crop"], channels=3)
        crop.set_shape((160, 160, 3))
        return crop, example["feature"], example["flipped_feature"], example["identity"]

    def selected(crop, feature, flipped, identity):
        is_held = tf.reduce_any(tf.equal(identity, held)) if held_out else tf.constant(False)
        return is_held if keep_held_out else tf.logical_not(is_held)

    def mirror(position, example):
        crop, feature, flipped, _ = example
        if not flip:
            return crop, feature
        coin = tf.random.stateless_uniform((), (seed, position)) < 0.5
        return tf.cond(coin, lambda: (crop[:, ::-1], flipped), lambda: (crop, feature))

    files = tf.data.Dataset.from_tensor_slices(records.files())
    if shuffle:
        files = files.shuffle(len(records.files()), seed=seed, reshuffle_each_iteration=True)
    stream = files.interleave(
        tf.data.TFRecordDataset,
        cycle_length=min(8, len(records.files())) if shuffle else 1,
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    stream = stream.map(parse, num_parallel_calls=tf.data.AUTOTUNE).filter(selected)
    if shuffle:
        stream = stream.shuffle(4096, seed=seed, reshuffle_each_iteration=True)
    return stream.enumerate().map(mirror, num_parallel_calls=tf.data.AUTOTUNE)


def load_arrays(records: Records, held_out: set[str], limit: int) -> tuple[np.ndarray, np.ndarray]:
    """(crops, features) of at most ``limit`` held-out examples, in order (a small validation set in memory)."""
    crops, features = [], []
    for crop, feature in dataset(records, held_out, keep_held_out=True, shuffle=False).take(limit).as_numpy_iterator():
        crops.append(crop)
        features.append(feature)
    if not crops:
        return np.zeros((0, 160, 160, 3), np.uint8), np.zeros((0, records.manifest["feature_dim"]), np.float32)
    return np.stack(crops), np.stack(features)
