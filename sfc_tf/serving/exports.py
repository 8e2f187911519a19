"""SavedModel export of the codec's networks in TF Serving's layout ``<export_dir>/<model_name>/<version>/``.

Served models and their signatures (batch dimension N free; see docs/serving.md):

  facenet        ``serving_default``   crops uint8 (N, 160, 160, 3), RGB 0..255, aligned
                                       -> features float32 (N, 512), L2-normalised
  reconstructor  ``serving_default``   features float32 (N, D), decoded base-layer features
                                       -> faces uint8 (N, 160, 160, 3)
  predictor      ``serving_default``   the coding predictor (prediction mode ``mmse``), same signature
  enhancement    ``encode``            images uint8 (N, H, W, 3), H, W multiples of 16 [, predictions uint8
                                       (N, H, W, 3): conditional codecs only] -> strings_bytes string (N,),
                                       latent_shape int32 (2,)
                 ``decode``            strings string (N,), latent_shape int32 (2,) [, predictions]
                                       -> images uint8 (N, 16 h, 16 w, 3)
  decoder        ``serving_default``   features float32 (N, D), strings string (N,), latent_shape int32 (2,),
                                       low float32 (N,), high float32 (N,) (the transmitted float16 range)
                                       -> faces uint8 (N, 160, 160, 3): the paper's residual mode decoded in full

``enhancement`` is one rate of one learned codec (the paper's Balle-2016 residual codec, or a rate of a
variable-rate FaceCodec, end to end or conditional); ``decoder`` exists for residual codecs only.
Each network plugs in as one ``tf.Module`` subclass with ``tf.function`` signatures; ``export`` writes it.
The graphs compute exactly what the in-process code computes (the same functions: ``learned.RateCoder``).
"""

from __future__ import annotations

import os
import pathlib

import tensorflow as tf

from sfc_tf.base import facenet, inference

FACENET, RECONSTRUCTOR, PREDICTOR = "facenet", "reconstructor", "predictor"
ENHANCEMENT, DECODER = "enhancement", "decoder"
MODEL_NAMES = (FACENET, RECONSTRUCTOR, PREDICTOR, ENHANCEMENT, DECODER)
DEFAULT_SIGNATURE = tf.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY
ENCODE, DECODE = "encode", "decode"
# (model, signature) -> output names, in the order the client returns them.
OUTPUTS = {
    (FACENET, DEFAULT_SIGNATURE): ("features",),
    (RECONSTRUCTOR, DEFAULT_SIGNATURE): ("faces",),
    (PREDICTOR, DEFAULT_SIGNATURE): ("faces",),
    (ENHANCEMENT, ENCODE): ("strings_bytes", "latent_shape"),
    (ENHANCEMENT, DECODE): ("images",),
    (DECODER, DEFAULT_SIGNATURE): ("faces",),
}
LATENT_DOWNSCALE = 16


def faces_to_uint8(images: tf.Tensor) -> tf.Tensor:
    """[-1, 1] reconstructor output -> uint8 pixels, as ``reconstructor.to_uint8`` (round half to even, clip)."""
    return tf.saturate_cast(tf.round((tf.cast(images, tf.float32) + 1.0) * 127.5), tf.uint8)


def add_residual(faces: tf.Tensor, residual_images: tf.Tensor, low: tf.Tensor, high: tf.Tensor) -> tf.Tensor:
    """``minmax.denormalise`` + ``minmax.add_residual`` for a batch: low/high (N,) float32 ranges."""
    span = tf.cast(tf.cast(high, tf.float64) - tf.cast(low, tf.float64), tf.float32)[:, None, None, None]
    residual = low[:, None, None, None] + tf.cast(residual_images, tf.float32) / 255.0 * span
    return tf.saturate_cast(tf.round(tf.cast(faces, tf.float32) + residual), tf.uint8)


class KerasGraph(tf.Module):
    """A Keras model saved as plain graph + variables: the module tracks only the variables, so saving skips
    Keras' per-layer SavedModel serialisation (minutes for FaceNet; fails for models whose ``call`` is a loss).
    Called, it runs the model as the in-process code does (``inference.batch_invariant``)."""

    def __init__(self, model: tf.keras.Model, name: str):
        super().__init__(name=name)
        self.model_variables = list(model.variables)
        self._call = lambda x: model(x, training=False)  # a plain function: not tracked

    def __call__(self, x):
        return inference.batch_invariant(self._call, x)


class FeatureExport(tf.Module):
    """FaceNet with fixed standardisation in the graph: crops -> L2-normalised features."""

    def __init__(self, model: tf.keras.Model):
        super().__init__(name=FACENET)
        self.model = KerasGraph(model, "facenet_graph")

    @tf.function(
        input_signature=[tf.TensorSpec((None, facenet.IMAGE_SIZE, facenet.IMAGE_SIZE, 3), tf.uint8, name="crops")]
    )
    def features(self, crops):
        """uint8 (N, 160, 160, 3) RGB crops -> {"features": float32 (N, D), unit L2 norm}."""
        return {"features": self.model((tf.cast(crops, tf.float32) - 127.5) / 128.0)}

    def signatures(self) -> dict:
        return {DEFAULT_SIGNATURE: self.features}


class ReconstructorExport(tf.Module):
    """A de-convolutional network (the reconstructor, or the coding predictor: ``name``): features -> uint8 faces."""

    def __init__(self, model: tf.keras.Model, feature_dim: int, name: str = RECONSTRUCTOR):
        super().__init__(name=name)
        self.model = KerasGraph(model, f"{name}_graph")
        self.reconstruct = tf.function(
            self._reconstruct, input_signature=[tf.TensorSpec((None, feature_dim), tf.float32, name="features")]
        )

    def _reconstruct(self, features):
        """float32 (N, D) -> {"faces": uint8 (N, H, W, 3)}."""
        return {"faces": faces_to_uint8(self.model(features))}

    def signatures(self) -> dict:
        return {DEFAULT_SIGNATURE: self.reconstruct}


class LearnedCoding(tf.Module):
    """``learned.RateCoder`` over one rate of a trained model, tracking only its variables and range-coding tables
    (the Keras models themselves do not serialise: their ``call`` returns the training loss)."""

    def __init__(self, coder):
        super().__init__(name="learned_coding")
        self.model_variables = list(coder.model.variables)
        self.entropy_model = coder.entropy_model
        self._coder = coder  # calls only; its variables are tracked above
        self.conditional = coder.conditional

    def compress(self, images, predictions=None):
        return self._coder.compress(images, predictions)

    def decompress(self, strings, latent_shape, predictions=None):
        return self._coder.decompress(strings, latent_shape, predictions)


def _images_spec(name: str) -> tf.TensorSpec:
    return tf.TensorSpec((None, None, None, 3), tf.uint8, name=name)


class EnhancementExport(tf.Module):
    """One rate of a learned enhancement codec with range coding in the graph (needs tfc's ops); conditional
    codecs take the decoder's predictions as a second input."""

    def __init__(self, coder):
        super().__init__(name=ENHANCEMENT)
        self.model = LearnedCoding(coder)
        strings = tf.TensorSpec((None,), tf.string, name="strings")
        shape = tf.TensorSpec((2,), tf.int32, name="latent_shape")
        if coder.conditional:
            self.encode = tf.function(
                self._encode, input_signature=[_images_spec("images"), _images_spec("predictions")]
            )
            self.decode = tf.function(self._decode, input_signature=[strings, shape, _images_spec("predictions")])
        else:
            self.encode = tf.function(lambda images: self._encode(images), input_signature=[_images_spec("images")])
            self.decode = tf.function(
                lambda strings, latent_shape: self._decode(strings, latent_shape), input_signature=[strings, shape]
            )

    def _encode(self, images, predictions=None):
        """uint8 (N, H, W, 3), H and W multiples of 16 -> {"strings_bytes": (N,), "latent_shape": int32 (2,)}.
        The ``_bytes`` suffix makes TF Serving's REST API return the strings base64-encoded."""
        size = tf.shape(images)[1:3]
        tf.debugging.assert_equal(size % LATENT_DOWNSCALE, 0, message="image sides must be multiples of 16")
        return {"strings_bytes": self.model.compress(images, predictions), "latent_shape": size // LATENT_DOWNSCALE}

    def _decode(self, strings, latent_shape, predictions=None):
        """N strings + latent (h, w) -> {"images": uint8 (N, 16 h, 16 w, 3)}."""
        return {"images": self.model.decompress(strings, latent_shape, predictions)}

    def signatures(self) -> dict:
        return {ENCODE: self.encode, DECODE: self.decode}


class DecoderExport(tf.Module):
    """Full decode: decoded feature + learned enhancement strings + residual range -> full-fidelity face."""

    def __init__(self, reconstructor_model: tf.keras.Model, feature_dim: int, coder):
        super().__init__(name=DECODER)
        if coder.conditional:
            raise ValueError(
                "the decoder export serves residual codecs; a conditional codec decodes through "
                "enhancement/decode with the predictions"
            )
        self.reconstructor = KerasGraph(reconstructor_model, "reconstructor_graph")
        self.enhancement = LearnedCoding(coder)
        self.decode = tf.function(
            self._decode,
            input_signature=[
                tf.TensorSpec((None, feature_dim), tf.float32, name="features"),
                tf.TensorSpec((None,), tf.string, name="strings"),
                tf.TensorSpec((2,), tf.int32, name="latent_shape"),
                tf.TensorSpec((None,), tf.float32, name="low"),
                tf.TensorSpec((None,), tf.float32, name="high"),
            ],
        )

    def _decode(self, features, strings, latent_shape, low, high):
        """-> {"faces": uint8 (N, H, W, 3)}: reconstruction + denormalised decoded residual, rounded, clipped."""
        faces = faces_to_uint8(self.reconstructor(features))
        residual_images = self.enhancement.decompress(strings, latent_shape)
        return {"faces": add_residual(faces, residual_images, low, high)}

    def signatures(self) -> dict:
        return {DEFAULT_SIGNATURE: self.decode}


def version_dir(export_dir: str | os.PathLike, model_name: str, version: int) -> pathlib.Path:
    return pathlib.Path(export_dir) / model_name / str(int(version))


PROVENANCE_FILE = "provenance.json"  # in the SavedModel's assets/: where the exported weights came from


def export(
    module: tf.Module,
    export_dir: str | os.PathLike,
    version: int = 1,
    provenance: dict | None = None,
    overwrite: bool = False,
) -> pathlib.Path:
    """Writes ``module`` to ``<export_dir>/<module.name>/<version>/`` and ``provenance`` (``provenance()``) to its
    ``assets/provenance.json``; returns that path. A version folder that exists is refused (``FileExistsError``)
    unless ``overwrite``, which prints the one it replaces."""
    import json
    import shutil

    target = version_dir(export_dir, module.name, version)
    if target.exists():
        if not overwrite:
            raise FileExistsError(f"{target} exists: choose another --version, or pass --overwrite")
        print(f"replacing {target}", flush=True)
        shutil.rmtree(target)
    tf.saved_model.save(module, str(target), signatures=module.signatures())
    if provenance is not None:
        (target / "assets").mkdir(exist_ok=True)
        (target / "assets" / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2) + "\n")
    return target


def provenance(sources: dict, model_set: str | None = None) -> dict:
    """What an export came from: per source (name -> checkpoint folder or file, or ``None``) its path and sha256
    (the one its meta.json records for a folder), the model set, and the code's version (package and git commit)."""
    from sfc_tf import __version__, checkpoint, settings

    def sha256(path) -> str | None:
        path = pathlib.Path(path)
        if (path / checkpoint.META_FILE).is_file():
            import json

            return json.loads((path / checkpoint.META_FILE).read_text()).get("sha256")
        return checkpoint.sha256_file(path) if path.is_file() else None

    head = settings.REPO_ROOT / ".git"
    commit = None
    try:
        import subprocess

        if head.exists():
            commit = (
                subprocess.run(
                    ["git", "-C", str(settings.REPO_ROOT), "rev-parse", "HEAD"],
                    capture_output=True,
                    text=True,
                    timeout=10,
                ).stdout.strip()
                or None
            )
    except OSError:
        commit = None
    return {
        "sources": {
            name: None if path is None else {"path": str(path), "sha256": sha256(path)}
            for name, path in sources.items()
        },
        "model_set": model_set,
        "code": {"sfc_tf": __version__, "git_commit": commit},
    }


def load_facenet(key: str = facenet.DEFAULT_KEY, weights_path=None) -> FeatureExport:
    return FeatureExport(facenet.load_model(key, weights_path, allow_download=False))
