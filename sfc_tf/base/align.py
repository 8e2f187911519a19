"""Face crops: image loading, MTCNN detection and alignment (FaceNet's margin convention), center crop, or the
image itself when it already is the crop: the alignments the container names (``bitstream.ALIGNMENTS``).

Every later stage codes the 160x160 RGB uint8 crop these functions produce.

Input conversions (documented, never silent failures):
  * grayscale / palette / CMYK / 16-bit images are converted to 8-bit RGB;
  * alpha is composited onto white;
  * EXIF orientation is applied;
  * images smaller than ``MIN_SIDE`` pixels on a side raise ``ImageError``;
  * images larger than ``MAX_PIXELS`` raise ``ImageError`` (decompression-bomb guard); images larger than
    ``DETECT_MAX_SIDE`` are downscaled for detection only, the crop is taken from the full image.
"""

from __future__ import annotations

import functools
import io
import os
import pathlib
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from sfc_tf.bitstream import ALIGNMENTS
from sfc_tf.errors import ImageError, NoFaceError

CROP_SIZE = 160
MIN_SIDE = 32
MAX_PIXELS = 64_000_000
DETECT_MAX_SIDE = 1024
# LFW deep-funneled faces are centred in 250x250 images; FaceNet sees the central 140/250 of the side.
CENTER_FRACTION = 140 / 250
# facenet's align_dataset_mtcnn.py: --margin 32 (pixels of the 160 crop, split over both sides).
MTCNN_MARGIN = 32
# mtcnn's own stage thresholds (0.6, 0.7, 0.7, as facenet's align_dataset_mtcnn.py) already filter faces.
MTCNN_MIN_CONFIDENCE = 0.0
DETECT_BATCH = 16
# Input of each MTCNN network (mtcnn 1.0.0's build defaults): the proposal network sees whole pyramid levels.
MTCNN_INPUTS = {"PNet": (None, None, None, 3), "RNet": (None, 24, 24, 3), "ONet": (None, 48, 48, 3)}

ImageSource = Union[str, os.PathLike, bytes, np.ndarray, Image.Image]


def load_image(source: ImageSource) -> np.ndarray:
    """Any image (path, encoded bytes, PIL image or array) -> HxWx3 uint8 RGB, with the module's conversions."""
    if isinstance(source, np.ndarray):
        return _array_to_rgb(source)
    try:
        if isinstance(source, Image.Image):
            image = source
        elif isinstance(source, (bytes, bytearray)):
            image = Image.open(io.BytesIO(source))
        else:
            image = Image.open(pathlib.Path(source))
        if image.width * image.height > MAX_PIXELS:
            raise ImageError(f"image is {image.width}x{image.height}, more than {MAX_PIXELS} pixels")
        image = ImageOps.exif_transpose(image)
        image.load()
    except ImageError:
        raise
    except FileNotFoundError as exc:
        raise ImageError(f"no such image file: {source}") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageError(f"cannot read image {_describe(source)}: {exc}") from exc
    return _pil_to_rgb(image)


def _describe(source) -> str:
    return f"({len(source)} bytes)" if isinstance(source, (bytes, bytearray)) else str(source)


def _pil_to_rgb(image: Image.Image) -> np.ndarray:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        image = Image.fromarray(np.clip(array / max(array.max(), 1) * 255, 0, 255).astype(np.uint8))
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image)
    return _check_size(np.asarray(image.convert("RGB")))


def _array_to_rgb(array: np.ndarray) -> np.ndarray:
    if array.dtype != np.uint8:
        raise ImageError(f"image arrays must be uint8, got {array.dtype}")
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise ImageError(f"image arrays must be HxW, HxWx1, HxWx3 or HxWx4, got {array.shape}")
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    if array.shape[2] == 4:
        return _pil_to_rgb(Image.fromarray(array, "RGBA"))
    return _check_size(np.ascontiguousarray(array))


def _check_size(rgb: np.ndarray) -> np.ndarray:
    if min(rgb.shape[:2]) < MIN_SIDE:
        raise ImageError(f"image is {rgb.shape[1]}x{rgb.shape[0]}; faces need at least {MIN_SIDE} px a side")
    if rgb.shape[0] * rgb.shape[1] > MAX_PIXELS:
        raise ImageError(f"image has more than {MAX_PIXELS} pixels")
    return rgb


def _resize(rgb: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    return np.asarray(Image.fromarray(rgb).resize((size, size), Image.BILINEAR))


def center_crop(rgb: np.ndarray, fraction: float = CENTER_FRACTION, size: int = CROP_SIZE) -> np.ndarray:
    """Deterministic crop for pre-aligned faces (LFW deep-funneled): the central square covering
    ``fraction`` of the shorter side, resized to ``size`` x ``size``."""
    rgb = _array_to_rgb(rgb)
    height, width = rgb.shape[:2]
    side = max(1, int(round(min(height, width) * fraction)))
    top, left = (height - side) // 2, (width - side) // 2
    return _resize(rgb[top : top + side, left : left + side], size)


class MtcnnAligner:
    """MTCNN detection (the ``mtcnn`` package ships its weights) and facenet's crop convention: the box
    of the face nearest the centre (largest-area, centre-biased, as facenet's align_dataset_mtcnn.py)
    is widened by ``margin`` pixels (half on each side, in the coordinates of the original image), clipped,
    and resized to 160x160."""

    def __init__(self, margin: int = MTCNN_MARGIN, size: int = CROP_SIZE, min_confidence: float = MTCNN_MIN_CONFIDENCE):
        from mtcnn import MTCNN

        self.margin, self.size, self.min_confidence = margin, size, min_confidence
        self._detector = MTCNN()
        _trace_networks(self._detector)

    def boxes(self, rgbs: list[np.ndarray]) -> list[np.ndarray]:
        """Per image, a (K, 5) array of x1, y1, x2, y2, confidence in that image's coordinates. Images are
        detected in batches (mtcnn stacks them), large ones downscaled to ``DETECT_MAX_SIDE`` first."""
        scales = [min(1.0, DETECT_MAX_SIDE / max(rgb.shape[:2])) for rgb in rgbs]
        small = [
            rgb
            if scale == 1.0
            else np.asarray(
                Image.fromarray(rgb).resize((round(rgb.shape[1] * scale), round(rgb.shape[0] * scale)), Image.BILINEAR)
            )
            for rgb, scale in zip(rgbs, scales)
        ]
        found = []
        for start in range(0, len(small), DETECT_BATCH):
            batch = small[start : start + DETECT_BATCH]
            results = self._detector.detect_faces(batch) if len(batch) > 1 else [self._detector.detect_faces(batch[0])]
            for faces, scale in zip(results, scales[start : start + DETECT_BATCH]):
                rows = [
                    [f["box"][0], f["box"][1], f["box"][0] + f["box"][2], f["box"][1] + f["box"][3], f["confidence"]]
                    for f in faces
                    if f["confidence"] >= self.min_confidence
                ]
                box = np.asarray(rows, dtype=np.float64).reshape(-1, 5)
                box[:, :4] /= scale
                found.append(box)
        return found

    def crop_box(self, rgb: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """facenet's choice among several faces and its margin; returns integer x1, y1, x2, y2."""
        height, width = rgb.shape[:2]
        if len(boxes) > 1:
            area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
            centre = np.array([width / 2, height / 2])
            offsets = (boxes[:, [0, 1]] + boxes[:, [2, 3]]) / 2 - centre
            boxes = boxes[[np.argmax(area - 2.0 * np.sum(offsets**2, axis=1))]]
        x1, y1, x2, y2 = boxes[0, :4]
        half = self.margin / 2
        return np.array(
            [max(x1 - half, 0), max(y1 - half, 0), min(x2 + half, width), min(y2 + half, height)], dtype=np.int64
        )

    def _crop(self, rgb: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        x1, y1, x2, y2 = self.crop_box(rgb, boxes)
        return _resize(rgb[y1:y2, x1:x2], self.size)

    def __call__(self, source: ImageSource) -> np.ndarray:
        rgb = load_image(source)
        boxes = self.boxes([rgb])[0]
        if len(boxes) == 0:
            raise NoFaceError(f"no face found (MTCNN confidence >= {self.min_confidence}) in {_name(source)}")
        return self._crop(rgb, boxes)

    def align_many(self, sources: list[ImageSource], center_fallback: bool = False) -> tuple[np.ndarray, list[int]]:
        """Crops of many images with batched detection. With ``center_fallback`` (pre-aligned datasets such
        as LFW, where MTCNN misses a few faces) an image without a detected face gets the center crop and its
        index is returned in the second value; otherwise it raises ``NoFaceError``."""
        rgbs = [load_image(source) for source in sources]
        crops, fallbacks = [], []
        for i, (rgb, boxes) in enumerate(zip(rgbs, self.boxes(rgbs))):
            if len(boxes):
                crops.append(self._crop(rgb, boxes))
            elif center_fallback:
                crops.append(center_crop(rgb, size=self.size))
                fallbacks.append(i)
            else:
                raise NoFaceError(f"no face found (MTCNN) in {_name(sources[i])}")
        return np.stack(crops), fallbacks


def _trace_networks(detector) -> None:
    """Each of ``detector``'s networks as one traced graph instead of ~100 eager op calls per image: about 2-3x
    less time per image on CPU, the same boxes bit for bit (tests/test_align.py). mtcnn keeps its networks in its
    stages' ``_model``."""
    import tensorflow as tf

    for stage in detector.stages:
        model = stage.model
        spec = tf.TensorSpec(MTCNN_INPUTS[type(model).__name__], tf.float32)
        # a partial, not a lambda: tf.function counts traces per code object, and three lambdas share one
        stage._model = tf.function(functools.partial(model, training=False), autograph=False, input_signature=[spec])


class _EveryImage:
    """An aligner that finds a crop in every image, with the same interface as ``MtcnnAligner``."""

    def __call__(self, source: ImageSource) -> np.ndarray:
        raise NotImplementedError

    def align_many(self, sources: list[ImageSource], center_fallback: bool = False) -> tuple[np.ndarray, list[int]]:
        return np.stack([self(source) for source in sources]), []


class CenterAligner(_EveryImage):
    """Deterministic center crop for pre-aligned faces."""

    def __call__(self, source: ImageSource) -> np.ndarray:
        return center_crop(load_image(source))


class WholeCrop(_EveryImage):
    """An image that already is the 160x160 crop, taken as it is (``ValueError`` for any other size)."""

    def __call__(self, source: ImageSource) -> np.ndarray:
        crop = load_image(source)
        if crop.shape != (CROP_SIZE, CROP_SIZE, 3):
            raise ValueError(f"align='crop' needs a {CROP_SIZE}x{CROP_SIZE} image, got {crop.shape}")
        return crop


def _name(source) -> str:
    return str(source) if isinstance(source, (str, os.PathLike)) else "the image"


def make_aligner(mode: str):
    """An alignment of ``ALIGNMENTS`` (``'mtcnn'``, ``'center'`` or ``'crop'``) -> an aligner: ``aligner(source)``
    gives one 160x160x3 uint8 crop, ``aligner.align_many(sources, center_fallback)`` many."""
    aligners = dict(zip(ALIGNMENTS, (MtcnnAligner, CenterAligner, WholeCrop), strict=True))
    if mode not in aligners:
        raise ValueError(f"unknown alignment {mode!r}; use one of {', '.join(ALIGNMENTS)}")
    return aligners[mode]()
