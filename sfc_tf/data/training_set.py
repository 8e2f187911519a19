"""The training set every network of the codec learns from: training-identity crops of an identity-folder dataset
(LFW here, VGGFace2 in the paper) with their FaceNet features, optionally mirrored (each mirror image with its
own feature) and joined by extra faces framed like LFW (``extra_faces``), minus held-out identities. In memory
(``assemble``), or streamed from TFRecord shards (``stream``, ``sfc_tf.data.records``) when it does not fit."""

from __future__ import annotations

import dataclasses
import os
import pathlib

import numpy as np

from sfc_tf.base import facenet
from sfc_tf.data import extra_faces, folders, jitter
from sfc_tf.errors import SfcError


def held_out_identities(names, fraction: float, seed: int = 0) -> set[str]:
    """The identities held out for validation: the first ``fraction`` of the sorted names permuted with ``seed``."""
    names = sorted(names)
    return set(np.random.default_rng(seed).permutation(names)[: int(len(names) * fraction)])


@dataclasses.dataclass
class TrainingSet:
    crops: np.ndarray  # (N, 160, 160, 3) uint8
    features: np.ndarray  # (N, D) float32, FaceNet features of the crops (not yet base-layer decoded)
    masks: np.ndarray | None  # (N, 160, 160) uint8, 1 on pixels of the image (None: every pixel)
    held_out_crops: np.ndarray  # crops of the held-out identities (never trained on)
    held_out_features: np.ndarray
    description: dict  # what went in, for meta.json


def assemble(
    data_dir: str | os.PathLike,
    identities_file: str | None = None,
    align: str = "mtcnn",
    flip: bool = False,
    extra_dir: str | os.PathLike | None = None,
    validation_fraction: float = 0.05,
    seed: int = 0,
    extractor=None,
    jitter_copies: int = 0,
) -> TrainingSet:
    """Training-identity faces of ``data_dir`` (+ mirrors, + ``jitter_copies`` shifted and scaled copies of each,
    + extra faces); ``validation_fraction`` of the identities, drawn with ``seed``, held out."""
    identities = folders.read_identity_list(identities_file) if identities_file else None
    items = folders.list_images(data_dir, identities)
    held = held_out_identities({path.split("/")[0] for path, _ in items}, validation_fraction, seed)
    train_paths = [path for path, _ in items if path.split("/")[0] not in held]
    held_paths = [path for path, _ in items if path.split("/")[0] in held]
    extractor = extractor or facenet.FeatureExtractor()
    tag = f"{facenet.DEFAULT_KEY}-fixed"
    everything = folders.load_faces(data_dir, [p for p, _ in items], align, extractor, tag)
    faces, held_faces = everything.subset(train_paths), everything.subset(held_paths)
    crops, features, masks = [faces.crops], [faces.features], [np.ones(faces.crops.shape[:3], np.uint8)]
    description = {
        "data_dir": str(data_dir),
        "identities": identities_file,
        "align": align,
        "images": len(train_paths),
        "held_out_identities": sorted(held),
        "held_out_images": len(held_paths),
        "facenet": facenet.DEFAULT_KEY,
        "flip": flip,
    }
    if flip:
        mirrored = folders.flipped_features(data_dir, everything, align, extractor, tag)
        index = everything.index()
        crops.append(faces.crops[:, :, ::-1])
        features.append(mirrored[[index[p] for p in train_paths]])
        masks.append(masks[0])
    if jitter_copies:
        jittered_crops, jittered_masks = jitter.jittered(faces.crops, jitter_copies, seed)
        crops.append(jittered_crops)
        features.append(
            folders.cached_features(
                data_dir,
                faces.paths,
                f"{align}-{tag}-{jitter.cache_tag(jitter_copies, seed)}",
                lambda: jittered_crops,
                extractor,
            )
        )
        masks.append(jittered_masks)
        description["jitter"] = {
            "copies": jitter_copies,
            "max_shift_px": jitter.MAX_SHIFT,
            "max_scale": jitter.MAX_SCALE,
            "seed": seed,
        }
    if extra_dir:
        extra = extra_faces.load(pathlib.Path(extra_dir).expanduser(), extractor)
        crops.append(extra.crops)
        features.append(extra.features)
        masks.append(extra.masks)
        if flip:
            crops.append(extra.crops[:, :, ::-1])
            features.append(extra.flipped_features)
            masks.append(extra.masks[:, :, ::-1])
        description.update(
            extra_faces=str(extra_dir),
            extra_images=len(extra.paths),
            extra_framing={"margin_fraction": extra_faces.MARGIN_FRACTION, "pad_fraction": extra_faces.PAD_FRACTION},
        )
    description["examples"] = int(sum(len(c) for c in crops))
    return TrainingSet(
        np.ascontiguousarray(np.concatenate(crops)),
        np.concatenate(features),
        np.ascontiguousarray(np.concatenate(masks)) if extra_dir or jitter_copies else None,
        held_faces.crops,
        held_faces.features,
        description,
    )


@dataclasses.dataclass
class TrainingStream:
    """The streamed counterpart of ``TrainingSet``: examples read from TFRecord shards as training goes."""

    examples: object  # tf.data.Dataset of (crop uint8, FaceNet feature), shuffled, held-out removed
    num_examples: int  # examples per pass
    feature_dim: int
    held_out_crops: np.ndarray  # up to ``validation_limit`` held-out faces, in memory
    held_out_features: np.ndarray
    description: dict


def records_dir(
    records_path: str | None, tfds_name: str | None, tfds_data_dir: str | None, identities_file: str | None, align: str
) -> pathlib.Path:
    """The record folder of ``--records``, or the one ``--tfds`` builds (once, in the cache) from
    tensorflow-datasets."""
    from sfc_tf.data import records

    if records_path:
        return pathlib.Path(records_path).expanduser()
    directory = records.tfds_cache_dir(tfds_name, align, identities_file)
    if not (directory / records.MANIFEST).is_file():
        identities = folders.read_identity_list(identities_file) if identities_file else None
        records.build(directory, tfds=tfds_name, tfds_data_dir=tfds_data_dir, identities=identities, align=align)
    return directory


def stream(
    directory: str | os.PathLike,
    identities_file: str | None = None,
    flip: bool = False,
    validation_fraction: float = 0.05,
    seed: int = 0,
    validation_limit: int = 512,
) -> TrainingStream:
    """Training examples of a record folder (``sfc_tf.data.records``): the ``identities_file`` identities (default:
    all), ``validation_fraction`` of them held out by the rule of ``assemble``, each example mirrored half of the
    time with its mirror's feature if ``flip``."""
    from sfc_tf.data import records

    built = records.open_records(directory)
    names = list(built.identities)
    if identities_file:
        wanted = set(folders.read_identity_list(identities_file))
        names = [name for name in names if name in wanted]
        if not names:
            raise SfcError(f"none of the identities of {identities_file} is in {directory}")
    held = held_out_identities(names, validation_fraction, seed)
    excluded = held | (set(built.identities) - set(names))
    training = [name for name in names if name not in held]
    held_crops, held_features = records.load_arrays(built, held, validation_limit)
    description = {
        "records": str(directory),
        "source": built.manifest["source"],
        "facenet": built.manifest["facenet"],
        "identities": identities_file,
        "images": built.count(training),
        "flip": flip,
        "held_out_identities": sorted(held),
        "held_out_images": built.count(held),
        "streamed": True,
    }
    return TrainingStream(
        records.dataset(built, excluded, seed=seed, flip=flip),
        built.count(training),
        built.manifest["feature_dim"],
        held_crops,
        held_features,
        description,
    )


def check_sources(
    data_dir: str | None,
    records_path: str | None,
    tfds_name: str | None,
    extra_dir: str | None = None,
    jitter_copies: int = 0,
) -> None:
    """The checks ``load`` makes of its sources before reading anything (binaries call it before other work)."""
    if sum(map(bool, (data_dir, records_path, tfds_name))) != 1:
        raise SfcError("give exactly one of --data_dir, --records and --tfds")
    if extra_dir and not data_dir:
        raise SfcError("--extra_faces goes with --data_dir (extra faces are held in memory with their masks)")
    if jitter_copies and not data_dir:
        raise SfcError("--jitter goes with --data_dir (jittered copies are held in memory with their masks)")
    if extra_dir and not pathlib.Path(extra_dir).expanduser().is_dir():
        raise SfcError(f"--extra_faces {extra_dir} does not exist: {extra_faces.BUILD_HINT}")


def load(
    data_dir: str | None = None,
    records_path: str | None = None,
    tfds_name: str | None = None,
    tfds_data_dir: str | None = None,
    identities_file: str | None = None,
    align: str = "mtcnn",
    flip: bool = False,
    extra_dir: str | None = None,
    validation_fraction: float = 0.05,
    seed: int = 0,
    jitter_copies: int = 0,
) -> TrainingSet | TrainingStream:
    """The training faces of the training binaries: in memory from ``data_dir`` (``assemble``), or streamed from a
    record folder or a tensorflow-datasets dataset (``stream``); exactly one source."""
    check_sources(data_dir, records_path, tfds_name, extra_dir, jitter_copies)
    if data_dir:
        return assemble(
            data_dir, identities_file, align, flip, extra_dir, validation_fraction, seed, jitter_copies=jitter_copies
        )
    directory = records_dir(records_path, tfds_name, tfds_data_dir, identities_file, align)
    return stream(directory, identities_file, flip, validation_fraction, seed)
