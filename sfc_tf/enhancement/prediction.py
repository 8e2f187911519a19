"""Prediction modes: the picture the enhancement layer is coded against, computed by the decoder from the base
layer alone.

  reconstruction  x_hat, the perceptual reconstruction of the decoded feature (the paper's residual x - x_hat)
  none            no prediction: the enhancement layer codes the face itself
  mean_face       the mean training crop (a constant image)
  smoothed        x_hat through a Gaussian low-pass filter (sigma 2 px): keeps its layout, drops invented texture
  mmse            the coding predictor: an estimate of the face trained for MSE on decoded features (the
                  shipped one is linear, ``sfc_tf.reconstruction.linear_predictor``; a de-convolutional one also loads)

Every prediction is an 8-bit image; the residual codecs code min-max(x - p), the conditional codec codes x given p.
``Predictions`` computes each one at most once per batch, and only the ones asked for.
"""

from __future__ import annotations

import functools
import json
import os
import pathlib
from typing import Callable

import numpy as np

from sfc_tf.bitstream import MEAN_FACE, MMSE, MODES, NO_PREDICTION, RECONSTRUCTION, SMOOTHED
from sfc_tf.enhancement import CROP_SHAPE
from sfc_tf.errors import WeightsError

SMOOTHING_SIGMA = 2.0
PREDICTION_CHUNK = 2048  # faces predicted at a time for a training set (a multiple of the network's batch of 64)
MEAN_FACE_FILE = "mean_face.png"
MODE_IDS = {name: mode for mode, name in MODES.items()}


def mode_id(name: str) -> int:
    if name not in MODE_IDS:
        raise ValueError(f"unknown prediction mode {name!r}; choose from {', '.join(MODE_IDS)}")
    return MODE_IDS[name]


def smooth(images: np.ndarray, sigma: float = SMOOTHING_SIGMA) -> np.ndarray:
    """Gaussian low-pass of uint8 images (N, H, W, 3), each channel alone, rounded back to uint8."""
    from scipy import ndimage

    filtered = ndimage.gaussian_filter(np.asarray(images, np.float32), (0, sigma, sigma, 0), mode="reflect")
    return np.clip(np.rint(filtered), 0, 255).astype(np.uint8)


class CodingPredictor:
    """The coding predictor's assets: the MSE-trained network (``mmse``) and the mean training face."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = pathlib.Path(directory)
        if not (self.directory / MEAN_FACE_FILE).is_file():
            raise WeightsError(f"no coding predictor in {self.directory} ({MEAN_FACE_FILE} missing)")

    @functools.cached_property
    def mean_face(self) -> np.ndarray:
        from PIL import Image

        return np.asarray(Image.open(self.directory / MEAN_FACE_FILE).convert("RGB"))

    @functools.cached_property
    def network(self):
        return load_network(self.directory)

    @property
    def model_id(self) -> str:
        return network_id(self.directory)


def network_id(directory: str | os.PathLike) -> str:
    """A prediction network's id: the sha256 its meta.json records (``load_network`` checks the files against it)."""
    return json.loads((pathlib.Path(directory) / "meta.json").read_text())["sha256"]


def load_network(directory: str | os.PathLike):
    """A prediction network (the coding predictor's, linear or de-convolutional as its meta.json says, or a
    reconstructor), checksum-verified."""
    from sfc_tf import checkpoint
    from sfc_tf.reconstruction import linear_predictor, reconstructor

    meta = checkpoint.read_meta(directory, (reconstructor.WEIGHTS_FILE,), "coding predictor")
    if meta.get("architecture") == linear_predictor.ARCHITECTURE:
        return linear_predictor.load(directory, meta)
    return reconstructor.load(directory)


class Predictions:
    """The predictions of one batch of decoded features, computed on demand. ``reconstruct`` maps features to
    the uint8 perceptual reconstruction; ``predict`` maps features to the uint8 MMSE prediction. ``correct``
    (a base layer with a colour thumbnail): uint8 predictions of the batch -> the same with the decoded coarse
    image, applied to every prediction."""

    def __init__(
        self,
        features: np.ndarray,
        reconstruct: Callable[[np.ndarray], np.ndarray],
        predict: Callable[[np.ndarray], np.ndarray],
        mean_face: Callable[[], np.ndarray],
        correct: Callable[[np.ndarray], np.ndarray] | None = None,
    ):
        self.features = features
        self._reconstruct, self._predict, self._mean_face = reconstruct, predict, mean_face
        self._correct = correct or (lambda images: images)
        self._cache: dict[int, np.ndarray | None] = {}

    @functools.cached_property
    def reconstruction(self) -> np.ndarray:
        return self._correct(self._reconstruct(self.features))

    def __call__(self, mode: int, rows: np.ndarray | None = None) -> np.ndarray | None:
        """The prediction of ``mode`` (uint8 (N, H, W, 3), or None for ``none``), for ``rows`` of the batch."""
        if mode not in self._cache:
            self._cache[mode] = self._compute(mode)
        out = self._cache[mode]
        return out if out is None or rows is None else out[rows]

    def slice(self, start: int, stop: int) -> "Predictions":
        """The predictions of faces ``start:stop``, computed once for the whole batch and shared."""
        return _Slice(self, start, stop)

    def _compute(self, mode: int) -> np.ndarray | None:
        if mode == RECONSTRUCTION:
            return self.reconstruction
        if mode == NO_PREDICTION:
            return None
        if mode == MEAN_FACE:
            return self._correct(np.broadcast_to(self._mean_face(), (len(self.features), *self._mean_face().shape)))
        if mode == SMOOTHED:
            return smooth(self.reconstruction)
        if mode == MMSE:
            return self._correct(self._predict(self.features))
        raise ValueError(f"unknown prediction mode {mode}")


class _Slice(Predictions):
    def __init__(self, parent: Predictions, start: int, stop: int):
        super().__init__(parent.features[start:stop], None, None, None)
        self.parent, self.start, self.stop = parent, start, stop

    @functools.cached_property
    def reconstruction(self) -> np.ndarray:
        return self.parent.reconstruction[self.start : self.stop]

    def _compute(self, mode: int) -> np.ndarray | None:
        out = self.parent(mode)
        return None if out is None else out[self.start : self.stop]


def training_predictor(network_dir: str | os.PathLike, base_layer_path: str | os.PathLike):
    """(features, crops) -> predictions (uint8) of the faces by the network in ``network_dir`` (the coding
    predictor for ``mmse``, a reconstructor for ``reconstruction``), through the real base layer (encode, decode)
    as the decoder will see them: with a base layer that codes a colour thumbnail, corrected by the crops' decoded
    thumbnails (the crops are needed then, and only then)."""
    from sfc_tf.base import base_layer
    from sfc_tf.reconstruction import decoder

    network = load_network(network_dir)
    base = base_layer.load(base_layer_path)

    def predict(features: np.ndarray, crops: np.ndarray | None = None, progress: bool = False) -> np.ndarray:
        from tqdm import tqdm

        out = np.empty((len(features), *CROP_SHAPE), np.uint8)  # filled in chunks: a training set is gigabytes
        starts = range(0, len(features), PREDICTION_CHUNK)
        for i in tqdm(starts, desc="predictions", disable=not progress or len(starts) < 2, leave=False):
            rows = slice(i, i + PREDICTION_CHUNK)
            decoded, thumbnails = base.decode_layers(base.encode_payloads(features[rows], _rows(crops, rows)))
            out[rows] = base.correct(decoder.reconstruct(network, decoded), thumbnails)
        return out

    predict.key = f"{network_id(network_dir)}{base.model_id}"
    predict.needs_crops = base.thumbnail is not None
    return predict


def _rows(array: np.ndarray | None, rows: slice) -> np.ndarray | None:
    return None if array is None else array[rows]


def training_predictions(
    network_dir: str | os.PathLike,
    base_layer_path: str | os.PathLike,
    features: np.ndarray,
    crops: np.ndarray | None = None,
    progress: bool = True,
) -> np.ndarray:
    """``training_predictor``'s predictions of all ``features`` (and ``crops``) at once, cached by network, base
    layer, features and (when the base layer uses them) crops."""
    import hashlib

    from sfc_tf import settings

    predict = training_predictor(network_dir, base_layer_path)
    key = hashlib.sha1(predict.key.encode() + np.ascontiguousarray(features).tobytes())
    if predict.needs_crops:
        key.update(np.ascontiguousarray(crops).tobytes())
    cache = settings.cache_dir() / "predictions" / f"{key.hexdigest()[:20]}.npy"
    if cache.is_file():
        return np.load(cache)
    out = predict(features, crops, progress)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache.with_suffix(".tmp.npy"), out)
    os.replace(cache.with_suffix(".tmp.npy"), cache)
    return out
