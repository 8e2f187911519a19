"""The scalable codec: image -> .sfc bytes -> feature (base layer) | reconstruction | full-fidelity face.

  codec = ScalableCodec()                         # shipped checkpoints
  data = codec.encode(image, enhancement="jpeg", quality=50)
  feature, face = codec.decode(data, layers="full")
  feature, _ = codec.decode(data, layers="base")  # analysis only: no image work, no network

Models load on first use, so base-only decoding never loads FaceNet or the reconstructor. With
``ScalableCodec(models=serving_client.RemoteModels("host:8500"))`` FaceNet, the reconstructor and the learned
enhancement codec run on a TF Serving model server instead (docs/serving.md); served exports of the same
checkpoints give the same bytes.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import pathlib

import numpy as np

from sfc_tf import bitstream, settings
from sfc_tf.enhancement import LEARNED, NONE, minmax

DEFAULT_BASE_LAYER = settings.CHECKPOINTS_DIR / "base_layer" / "step_0.08.npz"
DEFAULT_RECONSTRUCTOR = settings.CHECKPOINTS_DIR / "reconstructor"
DEFAULT_LEARNED_DIR = settings.CHECKPOINTS_DIR / "enhancement"
LAYERS = ("base", "reconstruction", "full")
DEFAULT_QUALITY = {"jpeg": 50, "jpeg2000": 40.0, "learned": "0.01"}


@dataclasses.dataclass
class Decoded:
    feature: np.ndarray            # (D,) unit-norm FaceNet feature
    image: np.ndarray | None       # (H, W, 3) uint8, or None for layers="base"


class ScalableCodec:
    """Encoder and decoder over one set of models (FaceNet, base layer, reconstructor, enhancement codecs)."""

    def __init__(self, base_layer_path=DEFAULT_BASE_LAYER, reconstructor_dir=DEFAULT_RECONSTRUCTOR,
                 learned_dir=DEFAULT_LEARNED_DIR, align: str = "mtcnn", facenet_weights=None, models=None):
        """``models``: a ``serving_client.Models`` running FaceNet, the reconstructor and the learned codec (the
        base layer, JPEG/JPEG2000 and alignment stay local); the reconstructor and learned checkpoint folders then
        need only their meta.json, for the model ids."""
        self.base_layer_path, self.reconstructor_dir = pathlib.Path(base_layer_path), pathlib.Path(reconstructor_dir)
        self.learned_dir, self.align, self.facenet_weights = pathlib.Path(learned_dir), align, facenet_weights
        self.models = models

    # -- models, loaded on first use ----------------------------------------------------------------------
    @functools.cached_property
    def base_layer(self):
        from sfc_tf import base_layer

        return base_layer.load(self.base_layer_path)

    @functools.cached_property
    def extractor(self):
        if self.models is not None:
            return self.models.features
        from sfc_tf import facenet

        return facenet.FeatureExtractor(weights_path=self.facenet_weights)

    @functools.cached_property
    def reconstructor(self):
        from sfc_tf import reconstructor

        return reconstructor.load(self.reconstructor_dir)

    def reconstruct(self, features: np.ndarray) -> np.ndarray:
        """Decoded features (N, D) -> uint8 faces (N, H, W, 3)."""
        if self.models is not None:
            return self.models.reconstruct(features)
        from sfc_tf import residuals

        return residuals.reconstruct(self.reconstructor, features)

    @functools.cached_property
    def aligner(self):
        from sfc_tf import align

        return align.make_aligner(self.align)

    @functools.lru_cache(maxsize=16)
    def enhancement_codec(self, name: str, quality):
        from sfc_tf.enhancement import make_codec

        if name == "learned":
            directory = self.learned_dir / f"residual_l{quality}"
            if self.models is not None:
                from sfc_tf import serving_client

                return serving_client.served_learned_codec(self.models, directory)
            return make_codec(name, directory)
        return make_codec(name, quality)

    def _learned_by_id(self, short: int):
        for meta_path in sorted(self.learned_dir.glob("residual_l*/meta.json")):
            if bitstream.short_id(json.loads(meta_path.read_text())["sha256"]) == short:
                return self.enhancement_codec("learned", meta_path.parent.name.removeprefix("residual_l"))
        from sfc_tf.errors import ModelMismatchError

        raise ModelMismatchError(f"this file needs learned enhancement model {short:04x}; none in {self.learned_dir}")

    def model_ids(self, names=("facenet", "base_layer", "reconstructor")) -> dict[str, int]:
        from sfc_tf import facenet

        ids = {"facenet": lambda: bitstream.short_id(facenet.DEFAULT_KEY),
               "base_layer": lambda: bitstream.short_id(self.base_layer.model_id),
               "reconstructor": lambda: bitstream.short_id(self._reconstructor_id())}
        return {name: ids[name]() for name in names}

    def _reconstructor_id(self) -> str:
        if self.models is not None:
            from sfc_tf import serving_client

            return serving_client.checkpoint_id(self.reconstructor_dir)
        return self.reconstructor.model_id

    # -- encoding -----------------------------------------------------------------------------------------
    def crop(self, image) -> np.ndarray:
        """Any image source -> the 160x160 crop the codec codes (``align='crop'``: the image must be it)."""
        from sfc_tf import align

        if self.align == "crop":
            crop = align.load_image(image)
            if crop.shape != (align.CROP_SIZE, align.CROP_SIZE, 3):
                raise ValueError(f"align='crop' needs a {align.CROP_SIZE}x{align.CROP_SIZE} image, got {crop.shape}")
            return crop
        return self.aligner(image)

    def encode(self, image, enhancement: str = "none", quality=None) -> bytes:
        return self.encode_crops(self.crop(image)[None], enhancement, quality)[0]

    def encode_crops(self, crops: np.ndarray, enhancement: str = "none", quality=None) -> list[bytes]:
        """Batch encoding of aligned crops: one FaceNet call, one base-layer call, one reconstructor call."""
        from sfc_tf import residuals

        crops = np.asarray(crops, np.uint8)
        records = self.base_layer.encode(self.extractor(crops))
        ids = self.model_ids()
        files = [bitstream.SfcFile(self.align, crops.shape[1], crops.shape[2], ids["facenet"], ids["base_layer"],
                                   ids["reconstructor"], record) for record in records]
        if enhancement == "none":
            return [bitstream.pack(f) for f in files]
        codec = self.enhancement_codec(enhancement, quality if quality is not None else DEFAULT_QUALITY[enhancement])
        recon = self.reconstruct(self.base_layer.decode(records))
        images, spans = residuals.residual_images(crops, recon)
        payloads = codec.encode_many(images)
        model_id = bitstream.short_id(codec.model_id) if codec.codec_id == LEARNED else 0
        return [bitstream.pack(dataclasses.replace(f, enhancement=bitstream.Enhancement(codec.codec_id, model_id, s, p)))
                for f, s, p in zip(files, spans, payloads)]

    # -- decoding -----------------------------------------------------------------------------------------
    def decode(self, data: bytes, layers: str = "full") -> Decoded:
        return self.decode_many([data], layers)[0]

    def decode_many(self, files: list[bytes], layers: str = "full") -> list[Decoded]:
        """``base``: features only (range decoding, no network). ``reconstruction``: + faces from the base
        layer alone. ``full``: + the enhancement layer when the file has one."""
        if layers not in LAYERS:
            raise ValueError(f"layers must be one of {LAYERS}")
        parsed = [bitstream.unpack_base(d) if layers == "base" else bitstream.unpack(d) for d in files]
        base_id = self.model_ids(("base_layer",))
        for sfc in parsed:
            bitstream.require_models(sfc, base_id)
        features = self.base_layer.decode([sfc.base_payload for sfc in parsed])
        if layers == "base":
            return [Decoded(f, None) for f in features]
        reconstructor_id = self.model_ids(("reconstructor",))
        for sfc in parsed:
            bitstream.require_models(sfc, reconstructor_id)
        faces = self.reconstruct(features)
        if layers == "full":
            faces = np.stack([self._enhance(face, sfc) for face, sfc in zip(faces, parsed)])
        return [Decoded(f, face) for f, face in zip(features, faces)]

    def _enhance(self, face: np.ndarray, sfc: bitstream.SfcFile) -> np.ndarray:
        e = sfc.enhancement
        if e is None or e.codec_id == NONE:
            return face
        if e.codec_id == LEARNED:
            codec = self._learned_by_id(e.model_id)
        else:
            from sfc_tf.enhancement import NAMES

            codec = self.enhancement_codec(NAMES[e.codec_id], DEFAULT_QUALITY[NAMES[e.codec_id]])
        residual = minmax.denormalise(codec.decode(e.payload), e.span)
        return minmax.add_residual(face, residual)
