"""Extra training faces from tightly cropped datasets (UTKFace "aligned & cropped", built by
``../shared/tools/utkface.sh``), framed like the LFW MTCNN crops the codec is trained and evaluated on.

LFW crops are facenet's: the MTCNN box widened by 32 pixels in a 250x250 image, where the box is about 96
pixels wide, so the margin is about a third of the box width. A UTKFace image is the face alone (the box
fills the 200x200 image), so the same framing reaches past its borders. Each image is padded by reflection,
detected, cropped with a margin of ``MARGIN_FRACTION`` of its box width and resized to 160x160; a mask marks
the pixels that come from the image itself (1) rather than the padding (0). Training losses composite the
target over the prediction outside the mask, so padded pixels neither teach nor cost anything.

The result is cached (crops, masks, FaceNet features of the crops and of their mirror images).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib

import numpy as np

from sfc_tf import settings
from sfc_tf.errors import SfcError

MARGIN_FRACTION = 32 / 96  # facenet's 32-pixel margin on LFW's median 96-pixel MTCNN box
PAD_FRACTION = 0.3  # reflection padding on each side, as a fraction of the image side
BUILD_HINT = (
    "build it with ../shared/tools/utkface.sh MIRROR (MIRROR: a git copy of github.com/mattans/"
    "AgeProgression); it writes ~/.cache/sfc_data/utkface"
)


@dataclasses.dataclass
class ExtraFaces:
    """Crops framed like LFW's, their validity masks and FaceNet features (of the crops and their mirrors)."""

    paths: list[str]
    crops: np.ndarray  # (N, 160, 160, 3) uint8
    masks: np.ndarray  # (N, 160, 160) uint8, 1 where the pixel comes from the image
    features: np.ndarray  # (N, D) float32
    flipped_features: np.ndarray  # (N, D) float32, of crops[:, :, ::-1]


def list_dataset(root: str | os.PathLike) -> list[str]:
    """Relative paths of the faces of a folder built by utkface.sh (one image per identity folder)."""
    root = pathlib.Path(root)
    if not (root / "identities.txt").is_file():
        raise SfcError(f"no extra-face folder at {root} (identities.txt missing): {BUILD_HINT}")
    from sfc_tf.data import folders

    return [path for path, _ in folders.list_images(root)]  # every folder (a few names end in a space)


def frame(aligner, rgbs: list[np.ndarray], size: int = 160) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Tight face images -> LFW-framed crops, masks, and the indices where MTCNN found no face (those get the
    whole padded image)."""
    from PIL import Image

    crops, masks, missed = [], [], []
    padded, valid = [], []
    for rgb in rgbs:
        pad = int(round(PAD_FRACTION * max(rgb.shape[:2])))
        padded.append(np.pad(rgb, ((pad, pad), (pad, pad), (0, 0)), mode="reflect"))
        valid.append(np.pad(np.ones(rgb.shape[:2], np.uint8), pad))
    for i, (image, mask, boxes) in enumerate(zip(padded, valid, aligner.boxes(padded))):
        height, width = image.shape[:2]
        if len(boxes):
            box = boxes[np.argmax((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))]
            half = MARGIN_FRACTION * (box[2] - box[0]) / 2
            x1, y1 = int(max(box[0] - half, 0)), int(max(box[1] - half, 0))
            x2, y2 = int(min(box[2] + half, width)), int(min(box[3] + half, height))
        else:
            missed.append(i)
            x1, y1, x2, y2 = 0, 0, width, height
        crops.append(np.asarray(Image.fromarray(image[y1:y2, x1:x2]).resize((size, size), Image.BILINEAR)))
        masks.append(np.asarray(Image.fromarray(mask[y1:y2, x1:x2] * 255).resize((size, size), Image.BILINEAR)) > 127)
    return np.stack(crops), np.stack(masks).astype(np.uint8), missed


def _cache_file(root: pathlib.Path, paths: list[str], key: str) -> pathlib.Path:
    """Keyed by the images' content (``folders.content_key``); a file under the older key (the folder's path) is
    taken over."""
    from sfc_tf.data import folders

    framing = [key, str(MARGIN_FRACTION), str(PAD_FRACTION)]
    digest = hashlib.sha1("\n".join([folders.content_key(root, paths), *framing]).encode()).hexdigest()[:16]
    path = settings.cache_dir() / "faces" / f"extra-{root.name}-{len(paths)}-c{digest}.npz"
    legacy_digest = hashlib.sha1("\n".join([str(root.resolve()), *framing, *paths]).encode()).hexdigest()[:16]
    return folders.adopt_legacy_cache(path, path.with_name(f"extra-{root.name}-{len(paths)}-{legacy_digest}.npz"))


def load(root: str | os.PathLike, extractor=None, limit: int | None = None, progress: bool = True) -> ExtraFaces:
    """The framed extra faces of ``root`` (first ``limit`` of them), computed once and cached."""
    from sfc_tf.base import align, facenet

    root = pathlib.Path(root).expanduser()
    paths = list_dataset(root)[:limit]
    extractor = extractor or facenet.FeatureExtractor()
    cache = _cache_file(root, paths, extractor.key)
    if cache.is_file():
        with np.load(cache) as archive:
            return ExtraFaces(
                paths, archive["crops"], archive["masks"], archive["features"], archive["flipped_features"]
            )
    aligner = align.MtcnnAligner()
    chunks = range(0, len(paths), 64)
    if progress:
        from tqdm import tqdm

        chunks = tqdm(chunks, desc="frame extra faces", unit="chunk")
    crops, masks = [], []
    for start in chunks:
        rgbs = [align.load_image(root / p) for p in paths[start : start + 64]]
        c, m, _ = frame(aligner, rgbs)
        crops.append(c)
        masks.append(m)
    crops, masks = np.concatenate(crops), np.concatenate(masks)
    faces = ExtraFaces(
        paths,
        crops,
        masks,
        extractor(crops, progress=progress),
        extractor(np.ascontiguousarray(crops[:, :, ::-1]), progress=progress),
    )
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(cache.name + ".tmp.npz")
    np.savez(
        tmp, crops=faces.crops, masks=faces.masks, features=faces.features, flipped_features=faces.flipped_features
    )
    os.replace(tmp, cache)
    return faces
