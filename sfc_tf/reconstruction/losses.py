"""Reconstruction loss: MAE + lambda x VGG-19 perceptual loss (mean squared feature difference), optionally + mu x
an identity term (ours, beside the paper's loss): 1 - cosine of the FaceNet features of target and reconstruction.

VGG-19 weights come from Keras's ImageNet file (downloaded once into ``~/.keras/models``; online users) or from a
local Keras HDF5 weights file (``vgg_weights_file``). A partial file (such as ``vgg19_imagenet_block1-3.h5``,
blocks 1-3 only) may serve any layer whose every convolution it holds; asking for a deeper layer is a
``WeightsError``: the loss never runs on random VGG weights.
"""

from __future__ import annotations

import os

import h5py
import tensorflow as tf

from sfc_tf.errors import WeightsError

DEFAULT_LAYER = "block3_conv2"  # relu3_2 (Keras convolutions include their ReLU), NbNet's default
IMAGENET_URL = (
    "https://storage.googleapis.com/tensorflow/keras-applications/vgg19/"
    "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
)
IMAGENET_MD5 = "253f8cb515780f3b799900260a226db6"  # keras.applications.vgg19's own check


def _conv_layers_up_to(model: tf.keras.Model, layer_name: str) -> list[str]:
    names = []
    for layer in model.layers:
        if isinstance(layer, tf.keras.layers.Conv2D):
            names.append(layer.name)
        if layer.name == layer_name:
            return names
    raise WeightsError(f"VGG-19 has no layer {layer_name!r}")


def _layers_in_weights_file(path: str | os.PathLike) -> set[str]:
    with h5py.File(path, "r") as handle:
        names = handle.attrs.get("layer_names")
        if names is None:
            raise WeightsError(f"{path} is not a Keras HDF5 weights file")
        return {
            n.decode() if isinstance(n, bytes) else str(n)
            for n in names
            if len(handle[n.decode() if isinstance(n, bytes) else n].attrs.get("weight_names", []))
        }


def vgg_weights_file(weights_path: str | os.PathLike | None = None) -> str:
    """A local VGG-19 weights file: ``weights_path`` if given, else Keras's ImageNet file (downloaded once)."""
    if weights_path is not None:
        if not os.path.isfile(weights_path):
            raise WeightsError(f"VGG-19 weights file not found: {weights_path}")
        return str(weights_path)
    try:
        return tf.keras.utils.get_file(
            os.path.basename(IMAGENET_URL), IMAGENET_URL, cache_subdir="models", file_hash=IMAGENET_MD5
        )
    except Exception as exc:  # get_file raises bare Exception on network errors
        raise WeightsError(
            f"cannot download the ImageNet VGG-19 weights ({exc.__class__.__name__}); offline, pass a "
            f"local file, e.g. --vgg_weights ../shared/weights/vgg19_imagenet_block1-3.h5"
        ) from exc


def vgg_feature_model(layer: str = DEFAULT_LAYER, weights_path: str | os.PathLike | None = None) -> tf.keras.Model:
    """Frozen VGG-19 from its input to ``layer``; weights from ``vgg_weights_file(weights_path)``."""
    weights_path = vgg_weights_file(weights_path)
    base = tf.keras.applications.VGG19(include_top=False, weights=None)
    needed = _conv_layers_up_to(base, layer)
    model = tf.keras.Model(base.input, base.get_layer(layer).output, name=f"vgg19_{layer}")
    missing = [name for name in needed if name not in _layers_in_weights_file(weights_path)]
    if missing:
        raise WeightsError(
            f"{weights_path} has no weights for {', '.join(missing)}, needed for perceptual layer {layer!r}; "
            f"choose a shallower layer or a complete VGG-19 weights file"
        )
    model.load_weights(weights_path, by_name=True)
    model.trainable = False
    return model


def split_mask(y_true, y_pred):
    """Targets may carry a validity mask as a 4th channel (extra faces padded to LFW's framing): outside the mask
    the target is composited over the prediction, so those pixels neither cost nor teach anything."""
    y_true, y_pred = tf.cast(y_true, tf.float32), tf.cast(y_pred, tf.float32)
    if y_true.shape[-1] == 4:
        mask = y_true[..., 3:]
        y_true = y_true[..., :3]
        y_pred = mask * y_pred + (1.0 - mask) * tf.stop_gradient(y_true)
    return y_true, y_pred


def masked_mae(y_true, y_pred):
    """Mean absolute error per image, masks as ``split_mask``."""
    y_true, y_pred = split_mask(y_true, y_pred)
    return tf.reduce_mean(tf.abs(y_true - y_pred), axis=[1, 2, 3])


class ReconstructionLoss(tf.keras.losses.Loss):
    """MAE (or MSE, ``pixel="mse"``) on [-1, 1] images + ``weight`` x mean((VGG(x) - VGG(x_hat))^2), VGG on
    caffe-preprocessed pixels, + ``identity_weight`` x (1 - cos(FaceNet(x), FaceNet(x_hat))). ``perceptual_downsample``
    > 1 average-pools both images by that factor before VGG (a cheaper perceptual loss on CPU: 2 costs a quarter of
    the VGG work). Targets may carry a mask (``split_mask``)."""

    def __init__(
        self,
        vgg: tf.keras.Model | None,
        weight: float,
        perceptual_downsample: int = 1,
        pixel: str = "mae",
        facenet: tf.keras.Model | None = None,
        identity_weight: float = 0.0,
        name: str = "mae_vgg",
    ):
        super().__init__(name=name)
        if weight > 0 and vgg is None:
            raise ValueError("a perceptual weight > 0 needs a VGG feature model")
        if identity_weight > 0 and facenet is None:
            raise ValueError("an identity weight > 0 needs a FaceNet model")
        if pixel not in ("mae", "mse"):
            raise ValueError("pixel loss must be 'mae' or 'mse'")
        self.vgg, self.weight, self.downsample, self.pixel = vgg, float(weight), int(perceptual_downsample), pixel
        self.facenet, self.identity_weight = facenet, float(identity_weight)

    def perceptual(self, y_true, y_pred):
        both = tf.concat([y_true, y_pred], axis=0)
        if self.downsample > 1:
            both = tf.nn.avg_pool2d(both, self.downsample, self.downsample, "VALID")
        pixels = (tf.cast(both, tf.float32) + 1.0) * 127.5
        features = self.vgg(tf.keras.applications.vgg19.preprocess_input(pixels), training=False)
        real, fake = tf.split(features, 2, axis=0)
        return tf.reduce_mean(tf.square(tf.cast(tf.stop_gradient(real) - fake, tf.float32)), axis=[1, 2, 3])

    def identity(self, y_true, y_pred):
        """1 - cosine similarity of the FaceNet features of target and reconstruction (the target's held fixed)."""
        both = tf.concat([y_true, y_pred], axis=0) * (127.5 / 128.0)  # [-1, 1] -> FaceNet's fixed standardisation
        real, fake = tf.split(tf.cast(self.facenet(both, training=False), tf.float32), 2, axis=0)
        real = tf.math.l2_normalize(tf.stop_gradient(real), axis=-1)
        return 1.0 - tf.reduce_sum(real * tf.math.l2_normalize(fake, axis=-1), axis=-1)

    def call(self, y_true, y_pred):
        y_true, y_pred = split_mask(y_true, y_pred)
        error = y_true - y_pred
        loss = tf.reduce_mean(tf.abs(error) if self.pixel == "mae" else tf.square(error), axis=[1, 2, 3])
        if self.weight > 0:
            loss += self.weight * self.perceptual(y_true, y_pred)
        if self.identity_weight > 0:
            loss += self.identity_weight * self.identity(y_true, y_pred)
        return loss
