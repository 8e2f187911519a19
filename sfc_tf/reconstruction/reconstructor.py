"""Deep feature reconstruction: a de-convolutional network of DconvOp blocks, FaceNet feature -> 160x160 face.

The paper's Fig. 1 layer table is not in the text available to us. The default configuration is a
reconstruction from the paper's description and from the D-CNN baseline it adopts (Mai et al., TPAMI 2018,
NbNet): the feature as a 1x1xD map -> ConvT k5 (valid) -> 5x5x512, five ConvT k4 s2 with 256, 128, 64, 32, 16
channels -> 160x160x16, and a last DconvOp to 3 channels with Tanh. Every block is a ``DconvOp``
(Conv2DTranspose + BatchNorm + ReLU, Tanh on the last) with He initialisation. The layer list is a
configuration stored with every checkpoint. Output images are in [-1, 1]; ``to_uint8`` maps them to pixels.
"""

from __future__ import annotations

import os
import pathlib

import numpy as np
import tensorflow as tf

from sfc_tf import checkpoint
from sfc_tf.base import inference

# (kernel, channels, stride, padding) per DconvOp block.
DEFAULT_LAYERS = (
    (5, 512, 1, "valid"),
    (4, 256, 2, "same"),
    (4, 128, 2, "same"),
    (4, 64, 2, "same"),
    (4, 32, 2, "same"),
    (4, 16, 2, "same"),
    (3, 3, 1, "same"),
)
# The coding predictor (sfc_tf.enhancement.prediction, mode mmse): the same blocks at half the channels, a quarter
# of the work.
PREDICTOR_LAYERS = tuple((k, c if c == 3 else c // 2, s, p) for k, c, s, p in DEFAULT_LAYERS)
WEIGHTS_FILE = "weights.h5"
META_FILE = checkpoint.META_FILE


class DconvOp(tf.keras.layers.Layer):
    """Conv2DTranspose + BatchNormalization + activation (ReLU, or Tanh for the last block)."""

    def __init__(
        self, filters: int, kernel: int, stride: int, padding: str = "same", activation: str = "relu", **kwargs
    ):
        super().__init__(**kwargs)
        self.config = dict(filters=filters, kernel=kernel, stride=stride, padding=padding, activation=activation)
        self.deconv = tf.keras.layers.Conv2DTranspose(
            filters, kernel, strides=stride, padding=padding, use_bias=False, kernel_initializer="he_normal"
        )
        self.norm = tf.keras.layers.BatchNormalization()
        self.activation = tf.keras.layers.Activation(activation)

    def call(self, x, training=False):
        return self.activation(self.norm(self.deconv(x), training=training))

    def get_config(self):
        return {**super().get_config(), **self.config}


class Reconstructor(inference.GraphInference, tf.keras.Model):
    """(N, D) decoded FaceNet features -> (N, H, W, 3) faces in [-1, 1]."""

    def __init__(self, feature_dim: int = 512, layers=DEFAULT_LAYERS, **kwargs):
        super().__init__(**kwargs)
        self.feature_dim = int(feature_dim)
        self.layer_config = [tuple(layer) for layer in layers]
        self.blocks = [
            DconvOp(channels, kernel, stride, padding, "tanh" if i == len(layers) - 1 else "relu", name=f"dconv_{i}")
            for i, (kernel, channels, stride, padding) in enumerate(self.layer_config)
        ]

    def call(self, features, training=False):
        x = tf.reshape(features, (-1, 1, 1, self.feature_dim))
        for block in self.blocks:
            x = block(x, training=training)
        return x

    def output_size(self) -> int:
        size = 1
        for kernel, _, stride, padding in self.layer_config:
            size = size * stride + (max(kernel - stride, 0) if padding == "valid" else 0)
        return size

    def get_config(self):
        return {"feature_dim": self.feature_dim, "layers": [list(layer) for layer in self.layer_config]}

    def build_for_inference(self):
        self(tf.zeros((1, self.feature_dim)))
        return self


def to_uint8(images) -> np.ndarray:
    """[-1, 1] network output -> uint8 pixels (round to nearest, clip)."""
    return np.clip(np.rint((np.asarray(images, np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def to_unit_range(crops) -> tf.Tensor:
    """uint8 pixels -> float32 in [-1, 1] (the network's output range)."""
    return tf.cast(crops, tf.float32) / 127.5 - 1.0


def save(model: Reconstructor, directory: str | os.PathLike, **meta) -> dict:
    """Weights + meta.json (layer config, feature dim, sha256 of the weights, and ``meta``)."""
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_weights(str(directory / WEIGHTS_FILE))
    return checkpoint.write_meta(directory, (WEIGHTS_FILE,), {**meta, **model.get_config()})


def load(directory: str | os.PathLike) -> Reconstructor:
    """A saved reconstructor (or coding predictor); checks the weights against the sha256 in meta.json."""
    meta = checkpoint.read_meta(directory, (WEIGHTS_FILE,), "reconstructor")
    model = Reconstructor(meta["feature_dim"], meta["layers"]).build_for_inference()
    model.load_weights(str(pathlib.Path(directory) / WEIGHTS_FILE))
    model.model_id = meta["sha256"]
    return model
