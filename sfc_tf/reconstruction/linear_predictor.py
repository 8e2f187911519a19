"""The linear coding predictor: decoded FaceNet feature -> coarse face, the ridge-regression estimate of the face
(prediction mode ``mmse``).

  image = bilinear_upsample(W f + b)          W: (D, g*g*3), a g x g x 3 coarse image in [-1, 1] units

A FaceNet feature describes identity, not pose or lighting, so the minimum-mean-squared-error estimate of the face
given the feature is smooth: a coarse linear map captures what it knows (README: a de-convolutional network
trained for MSE did not beat the mean face on this data). The weights have a closed form, fitted in minutes on
the CPU: the crops are projected, per channel, onto the span of bilinearly upsampled g x g images (separable
least squares), and a ridge regression maps features to those coarse images.
"""

from __future__ import annotations

import os
import pathlib

import numpy as np
import tensorflow as tf

from sfc_tf import checkpoint
from sfc_tf.base import coarse, inference

WEIGHTS_FILE = "weights.h5"
ARCHITECTURE = "linear"


class LinearPredictor(inference.GraphInference, tf.keras.Model):
    """(N, D) decoded features -> (N, S, S, 3) coarse faces in [-1, 1] units (not clipped)."""

    def __init__(self, feature_dim: int = 512, grid: int = 20, image_size: int = 160, **kwargs):
        super().__init__(**kwargs)
        self.feature_dim, self.grid, self.image_size = int(feature_dim), int(grid), int(image_size)
        self.linear = tf.keras.layers.Dense(self.grid * self.grid * 3, name="linear")

    def call(self, features, training=False):
        small = tf.reshape(self.linear(features), (-1, self.grid, self.grid, 3))
        return tf.image.resize(small, (self.image_size, self.image_size), method="bilinear")

    def get_config(self):
        return {
            "architecture": ARCHITECTURE,
            "feature_dim": self.feature_dim,
            "grid": self.grid,
            "image_size": self.image_size,
        }

    def build_for_inference(self):
        self(tf.zeros((1, self.feature_dim)))
        return self


def coarse_targets(crops: np.ndarray, grid: int) -> np.ndarray:
    """Least-squares coarse images (N, grid*grid*3) whose bilinear upsampling is closest to ``crops`` ([-1, 1])."""
    return (coarse.coarse_images(crops, grid) / 127.5 - 1.0).astype(np.float32).reshape(len(crops), -1)


class RidgeFit:
    """Accumulates X'X and X'Z over batches of (features, coarse targets); ``solve`` gives the Dense weights."""

    def __init__(self, feature_dim: int, outputs: int):
        self.xtx = np.zeros((feature_dim + 1, feature_dim + 1))
        self.xtz = np.zeros((feature_dim + 1, outputs))
        self.count = 0

    def add(self, features: np.ndarray, targets: np.ndarray) -> None:
        x = np.hstack([features.astype(np.float64), np.ones((len(features), 1))])
        self.xtx += x.T @ x
        self.xtz += x.T @ targets.astype(np.float64)
        self.count += len(features)

    def solve(self, ridge: float) -> tuple[np.ndarray, np.ndarray]:
        """(kernel (D, K), bias (K,)) minimising the squared error + ``ridge`` x count x |kernel|^2 (bias free)."""
        penalty = np.eye(len(self.xtx)) * ridge * self.count
        penalty[-1, -1] = 0.0
        solution = np.linalg.solve(self.xtx + penalty, self.xtz)
        return solution[:-1].astype(np.float32), solution[-1].astype(np.float32)


def save(model: LinearPredictor, directory: str | os.PathLike, extra_files: tuple = (), **meta) -> dict:
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_weights(str(directory / WEIGHTS_FILE))
    return checkpoint.write_meta(directory, (WEIGHTS_FILE, *extra_files), {**meta, **model.get_config()})


def load(directory: str | os.PathLike, meta: dict) -> LinearPredictor:
    model = LinearPredictor(meta["feature_dim"], meta["grid"], meta["image_size"]).build_for_inference()
    model.load_weights(str(pathlib.Path(directory) / WEIGHTS_FILE))
    model.model_id = meta["sha256"]
    return model
