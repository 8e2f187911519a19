"""Identity folders (LFW / VGGFace2 layout), the LFW pairs protocol, identity lists and cached face crops +
FaceNet features (streamed training data at scale: ``sfc_tf.data.records``)."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import pathlib
from typing import Callable, Iterable, Sequence

import numpy as np

from sfc_tf import settings
from sfc_tf.errors import ImageError, SfcError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
ALIGN_CHUNK = 64


@dataclasses.dataclass(frozen=True)
class Pair:
    first: str  # path relative to the dataset root, e.g. "Abel_Pacheco/Abel_Pacheco_0001.jpg"
    second: str
    same: bool
    fold: int  # 1-based fold of pairs.txt


def read_identity_list(path: str | os.PathLike) -> list[str]:
    """One identity (folder name) per line; blank lines and ``#`` comments ignored."""
    if not pathlib.Path(path).is_file():
        raise SfcError(f"identity list not found: {path}")
    lines = pathlib.Path(path).read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def list_images(root: str | os.PathLike, identities: Iterable[str] | None = None) -> list[tuple[str, int]]:
    """(relative path, identity label) for every image of ``root/<identity>/``, sorted; labels index the
    sorted identity list. ``identities`` restricts to those folders (an unknown name is an error)."""
    root = pathlib.Path(root)
    if not root.is_dir():
        raise SfcError(f"dataset directory not found: {root}")
    folders = sorted(p.name for p in root.iterdir() if p.is_dir())
    if identities is not None:
        wanted = set(identities)
        unknown = wanted.difference(folders)
        if unknown:
            raise SfcError(f"{len(unknown)} identities not in {root}, e.g. {sorted(unknown)[:3]}")
        folders = [f for f in folders if f in wanted]
    items = []
    for label, folder in enumerate(folders):
        for image in sorted((root / folder).iterdir()):
            if image.suffix.lower() in IMAGE_EXTENSIONS:
                items.append((f"{folder}/{image.name}", label))
    return items


def pairs_header(path: str | os.PathLike) -> tuple[int, int]:
    """(number of folds, same pairs per fold) from a pairs file's first line (``10\\t300``, or ``500``)."""
    fields = pathlib.Path(path).read_text().splitlines()[0].split()
    try:
        numbers = [int(f) for f in fields]
    except ValueError as exc:
        raise SfcError(f"{path}: first line must be '<folds> <pairs per fold>' or '<pairs>'") from exc
    if len(numbers) == 1:
        return 1, numbers[0]
    if len(numbers) == 2 and min(numbers) > 0:
        return numbers[0], numbers[1]
    raise SfcError(f"{path}: bad header {fields}")


def parse_pairs(path: str | os.PathLike, folds: Sequence[int] | None = None) -> list[Pair]:
    """LFW ``pairs.txt``: each fold is ``n`` same-person lines (``name i j``) then ``n`` different-person
    lines (``name1 i name2 j``). ``folds`` (1-based) defaults to every fold the header declares."""
    num_folds, per_fold = pairs_header(path)
    folds = list(range(1, num_folds + 1)) if folds is None else list(folds)
    bad = [f for f in folds if not 1 <= f <= num_folds]
    if bad:
        raise SfcError(f"{path} declares {num_folds} folds; cannot use folds {bad}")
    lines = [line.split() for line in pathlib.Path(path).read_text().splitlines()[1:] if line.strip()]
    if len(lines) < num_folds * 2 * per_fold:
        raise SfcError(f"{path}: header promises {num_folds * 2 * per_fold} pairs, file has {len(lines)}")
    pairs = []
    for fold in folds:
        for offset, fields in enumerate(lines[(fold - 1) * 2 * per_fold : fold * 2 * per_fold]):
            if len(fields) == 3:
                name, i, j = fields
                pairs.append(Pair(_image(name, i), _image(name, j), True, fold))
            elif len(fields) == 4:
                first, i, second, j = fields
                pairs.append(Pair(_image(first, i), _image(second, j), False, fold))
            else:
                raise SfcError(f"{path}: fold {fold}, pair {offset + 1}: cannot parse {fields}")
    return pairs


def _image(name: str, index: str) -> str:
    return f"{name}/{name}_{int(index):04d}.jpg"


def pair_images(pairs: Sequence[Pair]) -> list[str]:
    """The distinct images ``pairs`` use, sorted."""
    return sorted({p.first for p in pairs} | {p.second for p in pairs})


@dataclasses.dataclass
class FaceSet:
    """Aligned 160x160 crops of a list of images and, once computed, their FaceNet features."""

    paths: list[str]
    crops: np.ndarray  # (N, 160, 160, 3) uint8
    features: np.ndarray | None = None  # (N, D) float32, L2-normalised
    fallbacks: list[str] = dataclasses.field(default_factory=list)  # MTCNN found no face: center crop used

    def index(self) -> dict[str, int]:
        return {p: i for i, p in enumerate(self.paths)}

    def identities(self) -> list[str]:
        """The identity (folder name) of each image."""
        return [p.split("/")[0] for p in self.paths]

    def subset(self, paths: Sequence[str]) -> "FaceSet":
        where = self.index()
        rows = [where[p] for p in paths]
        return FaceSet(list(paths), self.crops[rows], None if self.features is None else self.features[rows])


def content_key(root: str | os.PathLike, paths: Sequence[str]) -> str:
    """The sha1 of the images themselves (each path with its bytes): the same data set under another folder, a
    copy or a link, has the same key; a changed image has another."""
    return _content_key(str(pathlib.Path(root).resolve()), tuple(paths), _stamp(pathlib.Path(root), paths))


def _stamp(root: pathlib.Path, paths: Sequence[str]) -> tuple:
    """What says the files may have changed since their key was computed in this process."""

    def one(path):
        try:
            stat = os.stat(root / path)
        except OSError:  # loading names the file that cannot be read
            return None
        return stat.st_size, stat.st_mtime_ns

    return tuple(one(p) for p in paths)


@functools.lru_cache(maxsize=8)
def _content_key(root: str, paths: tuple, stamp: tuple) -> str:
    digest = hashlib.sha1()
    for path in paths:
        try:
            data = (pathlib.Path(root) / path).read_bytes()
        except OSError:
            data = b""
        digest.update(f"{path}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()


def _cache_file(root: pathlib.Path, paths: Sequence[str], tag: str) -> pathlib.Path:
    """The cache file of ``tag`` (alignment, FaceNet, variant) for these images, keyed by their content. A file
    written under the older key (the folder's resolved path) is taken over (linked to the new name)."""
    digest = hashlib.sha1("\n".join([content_key(root, paths), tag]).encode()).hexdigest()[:16]
    path = settings.cache_dir() / "faces" / f"{root.name}-{tag}-{len(paths)}-c{digest}.npz"
    legacy_digest = hashlib.sha1("\n".join([str(root.resolve()), tag, *paths]).encode()).hexdigest()[:16]
    return adopt_legacy_cache(path, path.with_name(f"{root.name}-{tag}-{len(paths)}-{legacy_digest}.npz"))


def adopt_legacy_cache(path: pathlib.Path, legacy: pathlib.Path) -> pathlib.Path:
    """``path``, with a cache file written under its older key (``legacy``) linked to it first if only that one
    exists; ``legacy`` itself where the link cannot be made."""
    if not path.is_file() and legacy.is_file():
        try:
            os.link(legacy, path)
        except OSError:
            return legacy
    return path


def load_faces(
    root: str | os.PathLike,
    paths: Sequence[str],
    align: str = "mtcnn",
    extractor: Callable[[np.ndarray], np.ndarray] | None = None,
    feature_tag: str = "",
    progress: bool = True,
    use_cache: bool = True,
) -> FaceSet:
    """Crops (and features if ``extractor`` is given) of ``root/<path>`` for each path, cached on disk (keyed by
    the images' content, alignment and ``feature_tag``: ``content_key``) so that repeated evaluations and training
    runs do not realign or re-run FaceNet, wherever the data set lies. With ``align='mtcnn'``, images where MTCNN
    finds no face get the center crop (datasets here are pre-aligned) and are listed in ``FaceSet.fallbacks``; an
    unreadable image is an error naming it."""
    from sfc_tf.base import align as align_module

    root = pathlib.Path(root)
    paths = list(paths)
    crop_file = _cache_file(root, paths, align)
    if use_cache and crop_file.is_file():
        cached = np.load(crop_file)
        crops, fallbacks = cached["crops"], [str(p) for p in cached["fallbacks"]]
    else:
        aligner = align_module.make_aligner(align)
        crops = np.empty((len(paths), align_module.CROP_SIZE, align_module.CROP_SIZE, 3), np.uint8)
        fallbacks = []
        for start in _progress(range(0, len(paths), ALIGN_CHUNK), progress, f"align ({align})", ALIGN_CHUNK):
            chunk = paths[start : start + ALIGN_CHUNK]
            try:
                crops[start : start + len(chunk)], missed = aligner.align_many([root / p for p in chunk], True)
            except ImageError as exc:
                raise ImageError(f"in {chunk[0]} .. {chunk[-1]}: {exc}") from exc
            fallbacks += [chunk[i] for i in missed]
        if use_cache:
            _save(crop_file, crops=crops, fallbacks=np.array(fallbacks, dtype=str))
    faces = FaceSet(paths, crops, fallbacks=fallbacks)
    if extractor is not None:
        feature_file = _cache_file(root, paths, f"{align}-{feature_tag}")
        if use_cache and feature_tag and feature_file.is_file():
            faces.features = np.load(feature_file)["features"]
        else:
            faces.features = extractor(crops, progress=progress)
            if use_cache and feature_tag:
                _save(feature_file, features=faces.features)
    return faces


def flipped_features(
    root: str | os.PathLike, faces: FaceSet, align: str, extractor, feature_tag: str, progress: bool = True
) -> np.ndarray:
    """FaceNet features of the mirror images of ``faces.crops`` (horizontal-flip augmentation: a mirrored face
    has its own feature), cached like ``load_faces``'s."""
    return cached_features(
        root,
        faces.paths,
        f"{align}-{feature_tag}-flipped",
        lambda: np.ascontiguousarray(faces.crops[:, :, ::-1]),
        extractor,
        progress,
    )


def cached_features(
    root: str | os.PathLike,
    paths: Sequence[str],
    tag: str,
    images: Callable[[], np.ndarray],
    extractor,
    progress: bool = True,
) -> np.ndarray:
    """FaceNet features of ``images()`` (derived from the crops of ``paths``, e.g. mirrored), computed once and
    cached under ``tag`` like ``load_faces``'s."""
    cache = _cache_file(pathlib.Path(root), paths, tag)
    if cache.is_file():
        return np.load(cache)["features"]
    features = extractor(images(), progress=progress)
    _save(cache, features=features)
    return features


def _save(path: pathlib.Path, **arrays) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def _progress(items, enabled: bool, desc: str, unit_scale: int = 1):
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit="img", unit_scale=unit_scale)


def load_pair_faces(
    root: str | os.PathLike,
    pairs_file: str | os.PathLike,
    folds: Sequence[int] | None,
    align: str,
    extractor=None,
    feature_tag: str = "",
    progress: bool = True,
) -> tuple[list[Pair], FaceSet]:
    """The pairs of ``folds`` and the (cached) crops and features of every image they use."""
    pairs = parse_pairs(pairs_file, folds)
    faces = load_faces(root, pair_images(pairs), align, extractor, feature_tag, progress)
    return pairs, faces
