"""The scalable codec: image -> .sfc bytes -> feature (base layer) | reconstruction | full-fidelity face.

  codec = ScalableCodec.from_pretrained()               # the default registered model set (sfc_tf.zoo)
  data = codec.encode(image, enhancement="jpeg", quality=50)          # per-face mode decision ("auto")
  data = codec.encode(image, "jpeg", 50, mode="reconstruction")       # the paper's residual x - x_hat
  decoded = codec.decode(data, layers="full")           # Decoded(feature, image)
  decoded.feature = codec.decode(data, layers="base").feature         # analysis only: no image, no network

Models load on first use, so base-only decoding never loads FaceNet or a network. A file names its model set;
files of any registered set decode (their models load when first needed). With
``ScalableCodec(models=client.RemoteModels("host:8500"))`` (``sfc_tf.serving.client``) FaceNet, the reconstructor and
the coding predictor run on a TF Serving model server instead; learned enhancement codecs stay in process (the encoder
tries several checkpoints per face; ``client.served_learned_codec`` serves one rate of one; docs/serving.md).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import pathlib
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from sfc_tf import bitstream, zoo
from sfc_tf.bitstream import MEAN_FACE, MMSE, NO_PREDICTION
from sfc_tf.enhancement import decision, layer, registry
from sfc_tf.enhancement.prediction import Predictions, mode_id
from sfc_tf.enhancement.registry import NO_ENHANCEMENT
from sfc_tf.errors import ModelMismatchError, SfcError, located

if TYPE_CHECKING:
    from sfc_tf.base.align import ImageSource
    from sfc_tf.base.base_layer import BaseLayerModel
    from sfc_tf.enhancement import ImageCodec
    from sfc_tf.enhancement.prediction import CodingPredictor
    from sfc_tf.reconstruction.reconstructor import Reconstructor
    from sfc_tf.serving.client import Models

# An enhancement codec's quality, which means something different per codec (sfc_tf.enhancement.registry: a JPEG
# quality 1..100, a JPEG2000 compression ratio, a learned family's quality index 1..N, ...). Numeric strings are
# accepted too (e.g. eval/benchmark.py passes its --quality flag as is); the registry checks and converts them.
Quality = int | float | str
# A learned checkpoint as ``make_codec`` takes it: (checkpoint directory, rate index or None for a single-rate one).
LearnedParameter = tuple[pathlib.Path, int | None]

LAYERS = ("base", "reconstruction", "full")
AUTO = "auto"  # the encoder's per-face mode decision (sfc_tf.enhancement.decision)
MODE_CHOICES = (AUTO, *bitstream.MODES.values())  # what the encoder's ``mode`` takes


@dataclasses.dataclass
class Decoded:
    feature: np.ndarray  # (D,) unit-norm FaceNet feature
    image: np.ndarray | None  # (H, W, 3) uint8, or None for layers="base"


@dataclasses.dataclass
class Analysis:
    """What the encoder knows of a batch of crops before it codes the enhancement layer."""

    crops: np.ndarray
    base_payloads: list[bytes]
    predictions: Predictions  # decoded features and every prediction, computed on demand

    @property
    def features(self) -> np.ndarray:
        return self.predictions.features

    def slice(self, start: int, stop: int) -> "Analysis":
        """Faces ``start:stop``; their predictions are computed once for the whole analysis."""
        return Analysis(self.crops[start:stop], self.base_payloads[start:stop], self.predictions.slice(start, stop))


@dataclasses.dataclass
class Encoded:
    files: list[bytes]
    modes: np.ndarray  # (N,) prediction mode chosen for each face
    codecs: list[str]  # (N,) enhancement codec of each face


class ModelSetModels:
    """The models of one model set, each loaded on first use and checked against the registry. A model server
    (``remote``) serves the models of one set, ``served`` (default: this one); another set's reconstructor or
    predictor is refused there rather than silently replaced by the served one."""

    def __init__(
        self,
        model_set: zoo.ModelSet,
        remote: Models | None = None,
        facenet_weights: str | os.PathLike | None = None,
        served: zoo.ModelSet | None = None,
    ) -> None:
        self.model_set, self.remote, self.facenet_weights = model_set, remote, facenet_weights
        self.served = served or model_set

    def _served(self, kind: str) -> Models:
        if self.served.ids.get(kind) != self.model_set.ids.get(kind):
            raise ModelMismatchError(
                f"this file needs the {kind} of model set {self.model_set.id} ({self.model_set.name}); the model "
                f"server runs model set {self.served.id}'s ({self.served.name}): decode it without the server"
            )
        return self.remote

    def _checked(self, kind: str) -> BaseLayerModel | Reconstructor | CodingPredictor:
        model = _load_shared(kind, self.model_set.path(kind))
        self.model_set.check(kind, model.model_id)
        return model

    @functools.cached_property
    def base_layer(self) -> BaseLayerModel:
        return self._checked("base_layer")

    @functools.cached_property
    def extractor(self) -> Callable[[np.ndarray], np.ndarray]:
        if self.remote is not None:
            return self.remote.features
        from sfc_tf.base import facenet

        return facenet.FeatureExtractor(self.model_set.facenet, weights_path=self.facenet_weights)

    @functools.cached_property
    def reconstructor(self) -> Reconstructor:
        return self._checked("reconstructor")

    @functools.cached_property
    def predictor(self) -> CodingPredictor:
        return self._checked("predictor")

    def reconstruct(self, features: np.ndarray) -> np.ndarray:
        if self.remote is not None:
            return self._served("reconstructor").reconstruct(features)
        from sfc_tf.reconstruction import decoder

        return decoder.reconstruct(self.reconstructor, features)

    def predict(self, features: np.ndarray) -> np.ndarray:
        if self.remote is not None:
            return self._served("predictor").predict_faces(features)
        from sfc_tf.reconstruction import decoder

        return decoder.reconstruct(self.predictor.network, features)

    def predictions(self, features: np.ndarray, thumbnails: np.ndarray | None = None) -> Predictions:
        """The predictions of decoded features; with a base layer that codes a colour thumbnail, each takes its
        coarse image from the decoded ``thumbnails``."""
        correct = functools.partial(self.base_layer.correct, thumbnails=thumbnails)  # unchanged when None
        return Predictions(features, self.reconstruct, self.predict, lambda: self.predictor.mean_face, correct)


@functools.lru_cache(maxsize=16)
def _load_shared(kind: str, path: pathlib.Path) -> BaseLayerModel | Reconstructor | CodingPredictor:
    """One instance per model file and process: model sets share their reconstructor and predictor (one copy of a
    reconstructor is ~140 MB), and so do codecs."""
    if kind == "base_layer":
        from sfc_tf.base import base_layer

        return base_layer.load(path)
    if kind == "reconstructor":
        from sfc_tf.reconstruction import reconstructor

        return reconstructor.load(path)
    from sfc_tf.enhancement.prediction import CodingPredictor

    return CodingPredictor(path)


class ScalableCodec:
    """Encoder and decoder over one model set (and, for decoding, every registered one)."""

    def __init__(
        self,
        model_set: zoo.ModelSet | int | str | None = None,
        align: str = "mtcnn",
        facenet_weights: str | os.PathLike | None = None,
        models: Models | None = None,
        learned_dirs: Sequence[str | os.PathLike] = (),
        key: bytes | None = None,
    ) -> None:
        """``models``: a ``sfc_tf.serving.client.Models`` running FaceNet and the reconstructor on a model server.
        ``learned_dirs``: learned checkpoints outside the registry that files may name. ``key``: the secret of
        authenticated files (docs/bitstream.md): the encoder tags every file it writes, the decoder refuses every
        file whose tag does not verify, plain files included, before decoding anything; without a key, authenticated
        files are refused."""
        self.model_set = model_set if isinstance(model_set, zoo.ModelSet) else zoo.model_set(model_set)
        self.key = None if key is None else bitstream.check_key(key)
        self.align, self.facenet_weights, self.remote = align, facenet_weights, models
        self.learned_dirs = tuple(pathlib.Path(d) for d in learned_dirs)
        self.models = ModelSetModels(self.model_set, models, facenet_weights)
        self._sets = {self.model_set.id: self.models}

    @classmethod
    def from_pretrained(cls, name: int | str | None = None, **kwargs: Any) -> "ScalableCodec":
        """A registered model set by name or id (``None``: the default); see ``sfc_tf.zoo``."""
        return cls(zoo.model_set(name), **kwargs)

    @classmethod
    def from_paths(
        cls,
        base_layer: str | os.PathLike,
        reconstructor: str | os.PathLike,
        predictor: str | os.PathLike | None = None,
        facenet: str = "20180408-102900",
        **kwargs: Any,
    ) -> "ScalableCodec":
        """A model set of your own files (ids 128..255 in the files it writes)."""
        from sfc_tf import checkpoint
        from sfc_tf.base import base_layer as base_module

        ids = [
            facenet,
            base_module.load(base_layer).model_id,
            checkpoint.read_meta(reconstructor, ("weights.h5",), "reconstructor")["sha256"],
        ]
        if predictor is not None:
            ids.append(checkpoint.read_meta(predictor, ("weights.h5",), "coding predictor")["sha256"])
        paths = [
            str(pathlib.Path(p).resolve()) if p is not None else None for p in (base_layer, reconstructor, predictor)
        ]
        return cls(zoo.ModelSet(zoo.custom_id(ids), "custom", *paths, facenet=facenet), **kwargs)

    # -- models -------------------------------------------------------------------------------------------
    def models_for(self, set_id: int) -> ModelSetModels:
        """The models of the model set a file names (loaded on first use; only registered or this codec's)."""
        if set_id not in self._sets:
            if set_id >= zoo.FIRST_CUSTOM_ID:
                raise ModelMismatchError(
                    f"this file was made with an unregistered model set ({set_id}); this "
                    f"codec has model set {self.model_set.id} ({self.model_set.name})"
                )
            self._sets[set_id] = ModelSetModels(
                zoo.model_set(set_id), self.remote, self.facenet_weights, served=self.model_set
            )
        return self._sets[set_id]

    @property
    def base_layer(self) -> BaseLayerModel:
        return self.models.base_layer

    @property
    def extractor(self) -> Callable[[np.ndarray], np.ndarray]:
        return self.models.extractor

    @functools.lru_cache(maxsize=64)  # noqa: B019 (codecs live as long as the process; the cache is bounded)
    def enhancement_codec(
        self, name: str, quality: Quality, family: str | None = None, direct: bool = False
    ) -> ImageCodec:
        """The codec of ``name`` at ``quality`` (``sfc_tf.enhancement.registry``; for a learned codec a quality
        index 1..N of ``family``, a registered family of its kind, by default the model set's). ``direct``: the
        learned family's partner that codes the face itself (prediction mode none)."""
        if not registry.codec(name).learned:
            return registry.make_codec(name, quality)
        index = registry.check_quality(name, quality, family, self.model_set)
        chosen = registry.learned_family(name, family, self.model_set)
        if direct and chosen.direct:
            chosen, index = zoo.learned_family(chosen.direct), chosen.direct_quality(index)
        path, rate = chosen.checkpoint(index)
        return registry.make_codec(name if not direct else bitstream.CODECS[bitstream.LEARNED], (path, rate))

    @functools.cached_property
    def _learned_by_id(self) -> dict[tuple[int, int], LearnedParameter]:
        """(codec id, two-byte model id) -> parameter of every registered learned checkpoint and rate. The id holds
        12 bits of a checkpoint's hash, so a residual and a conditional model may share it: the codec id tells them
        apart (``tests/test_conformance.py`` checks that no two registered models of one codec share an id)."""
        found = {}
        for codec_id, model_id, family, quality in registered_learned_models():
            found.setdefault((codec_id, model_id), family.checkpoint(quality))
        for path in self.learned_dirs:
            meta = json.loads((path / "meta.json").read_text())
            for rate in range(len(meta.get("lmbdas", [0]))):
                found[learned_codec_id(meta.get("conditional")), learned_model_id(meta["sha256"], rate)] = (path, rate)
        return found

    def _codec_for(self, enhancement: bitstream.Enhancement) -> ImageCodec:
        if enhancement.codec not in bitstream.LEARNED_CODECS:
            return registry.decoder(enhancement.codec)
        key = (enhancement.codec, enhancement.model_id)
        retired = zoo.retired_models().get((enhancement.codec_name, enhancement.model_id))
        if key not in self._learned_by_id and retired is not None:
            raise ModelMismatchError(retired.message(enhancement.codec_name, enhancement.model_id))
        if key not in self._learned_by_id:
            raise ModelMismatchError(
                f"this file needs {enhancement.codec_name} enhancement model {enhancement.model_id:04x}, "
                f"which is not registered (pass its checkpoint in learned_dirs)"
            )
        return registry.make_codec(enhancement.codec_name, self._learned_by_id[key])

    # -- encoding -----------------------------------------------------------------------------------------
    @functools.cached_property
    def aligner(self) -> Callable[[ImageSource], np.ndarray]:
        """Image source -> crop, built once per codec (MTCNN loads its networks when built). Safe to call from
        several threads at once (``sfc_tf.apps.batch_encode`` does)."""
        from sfc_tf.base import align

        return align.make_aligner(self.align)

    def crop(self, image: ImageSource) -> np.ndarray:
        """Any image source -> the 160x160 crop the codec codes (``align='crop'``: the image must be it)."""
        return self.aligner(image)

    def analyse(self, crops: np.ndarray, features: np.ndarray | None = None) -> Analysis:
        """FaceNet features, base-layer payloads and (on demand) predictions of aligned crops (``features``: their
        FaceNet features if already computed, e.g. cached by an evaluation)."""
        crops = np.asarray(crops, np.uint8)
        payloads = self.base_layer.encode_payloads(self.extractor(crops) if features is None else features, crops)
        return Analysis(crops, payloads, self.models.predictions(*self.base_layer.decode_layers(payloads)))

    def encode(
        self, image: ImageSource, enhancement: str = NO_ENHANCEMENT, quality: Quality | None = None, mode: str = AUTO
    ) -> bytes:
        """One face as an .sfc file.

        Unlike ``sfc compress`` (``--enhancement jpeg``), the default here is ``"none"``: a base-layer-only file
        (the identity feature, a few dozen bytes), which decodes to a reconstruction, never to the face itself.
        The API keeps the smallest file as its default so that batch feature coding, search indexes and the
        conformance vectors stay base-only; name an enhancement codec for a picture of the face.

        Args:
            image: a file path, or an RGB uint8 array (aligned with ``align`` first).
            enhancement: a name of ``registry.ENHANCEMENTS``: ``"none"`` or a codec (``"jpeg"``: what ``sfc compress``
                uses).
            quality: the codec's quality; ``None``: its default (``sfc compress --help`` lists them).
            mode: the prediction the enhancement layer codes against; ``"auto"``: the best per face.

        Returns:
            The file's bytes.
        """
        return self.encode_crops(self.crop(image)[None], enhancement, quality, mode)[0]

    def encode_crops(
        self,
        crops: np.ndarray,
        enhancement: str = NO_ENHANCEMENT,
        quality: Quality | None = None,
        mode: str = AUTO,
        family: str | None = None,
    ) -> list[bytes]:
        """Batch encoding of aligned crops (one network call per stage); defaults as ``encode``'s.

        Args:
            crops: uint8 (N, 160, 160, 3) aligned crops; one crop is ``crop[None]``.
            enhancement, quality, mode: as ``encode``'s.
            family: the learned family for ``enhancement="learned"`` (default: the model set's).

        Returns:
            One file's bytes per crop.
        """
        if np.ndim(crops) != 4:
            raise ValueError(f"crops must be a batch (N, H, W, 3), not shape {np.shape(crops)}: pass crop[None]")
        return self.encode_analysis(self.analyse(crops), enhancement, quality, mode, family).files

    def candidates(
        self, enhancement: str, quality: Quality | None, mode: str, family: str | None = None
    ) -> list[tuple[ImageCodec, int]]:
        """(codec, mode) pairs the encoder tries: one for a fixed mode, several for ``auto``. A learned family codes
        its own mode (the one it was trained for) itself, and every other mode through its direct partner."""
        entry = registry.codec(enhancement)
        quality = registry.check_quality(enhancement, quality, family, self.model_set)
        modes = [mode_id(mode)] if mode != AUTO else [NO_PREDICTION, MEAN_FACE, MMSE]
        if not entry.learned:
            return [(self.enhancement_codec(enhancement, quality, family), m) for m in modes]
        trained_on = mode_id(registry.learned_family(enhancement, family, self.model_set).mode or "reconstruction")
        if mode == AUTO and trained_on not in modes:
            modes.append(trained_on)
        return [(self.enhancement_codec(enhancement, quality, family, m != trained_on), m) for m in modes]

    def encode_analysis(
        self,
        analysis: Analysis,
        enhancement: str = NO_ENHANCEMENT,
        quality: Quality | None = None,
        mode: str = AUTO,
        family: str | None = None,
    ) -> Encoded:
        """Code the enhancement layer of analysed crops: every candidate mode, then the best per face."""
        n = len(analysis.crops)
        bases = [bitstream.SfcFile(self.align, self.model_set.id, p) for p in analysis.base_payloads]
        if enhancement == NO_ENHANCEMENT:
            return Encoded([bitstream.pack(b, self.key) for b in bases], np.full(n, -1), [enhancement] * n)
        slope = registry.codec(enhancement).rd_slope_db
        tried = []
        candidates = list(self.candidates(enhancement, quality, mode, family))
        for codec, m in candidates:
            prediction = analysis.predictions(m)
            if len(candidates) > 1:  # the decision measures each candidate's decoded faces
                coded, decoded = layer.encode_decoded(codec, m, analysis.crops, prediction)
            else:
                coded, decoded = layer.encode(codec, m, analysis.crops, prediction), None
            files = [
                bitstream.pack(dataclasses.replace(b, enhancement=enhancement_layer(codec, m, c)), self.key)
                for b, c in zip(bases, coded)
            ]
            tried.append((codec, decision.Candidate(m, coded, decoded, 8.0 * np.array([len(f) for f in files])), files))
        best = decision.choose(analysis.crops, [c for _, c, _ in tried], slope) if len(tried) > 1 else np.zeros(n, int)
        return Encoded(
            [tried[k][2][i] for i, k in enumerate(best)],
            np.array([tried[k][1].mode for k in best]),
            [tried[k][0].name for k in best],
        )

    # -- decoding -----------------------------------------------------------------------------------------
    def decode(self, data: bytes, layers: str = "full") -> Decoded:
        """One .sfc file, up to ``layers`` (as ``sfc decompress``, whose default is also ``full``).

        ``full`` gives the best picture the file holds: the face itself when it has an enhancement layer, the
        reconstruction from the feature alone when it has none (a base-only file, ``encode``'s default):
        ``bitstream.unpack(data)`` (or ``sfc info``) says which layers a file has.

        Args:
            data: the file's bytes.
            layers: ``"base"`` (the feature only, no network), ``"reconstruction"`` or ``"full"``.

        Returns:
            The ``Decoded`` feature and image (``None`` for ``"base"``).
        """
        return self.decode_many([data], layers)[0]

    def decode_many(
        self, files: list[bytes], layers: str = "full", names: Sequence[str] | None = None
    ) -> list[Decoded]:
        """``base``: features only (range decoding, no network). ``reconstruction``: + the face reconstructed
        from the base layer alone (both read and verify only the base part, so a damaged enhancement layer does
        not stop them). ``full``: + the enhancement layer when the file has one. Files of several
        model sets may be mixed; each group is decoded with its own models, one network call per group. Every file
        is parsed (and, with a key, authenticated) before anything is decoded. A file that cannot be decoded raises
        its error prefixed with its name (``names``; by default ``files[i]`` when there are several)."""
        if layers not in LAYERS:
            raise ValueError(f"layers must be one of {LAYERS}, not {layers!r}")
        if names is not None and len(names) != len(files):
            raise ValueError(f"{len(names)} names for {len(files)} files")
        names = names if names is not None else [f"files[{i}]" for i in range(len(files))] if len(files) > 1 else None
        parse = functools.partial(bitstream.unpack if layers == "full" else bitstream.unpack_base, key=self.key)
        parsed = []
        for i, data in enumerate(files):
            try:
                parsed.append(parse(data))
            except SfcError as exc:
                if names is None:
                    raise
                raise located(exc, names[i]) from exc
        try:
            return self._decode_parsed(parsed, layers)
        except SfcError as exc:
            if names is None:
                raise
            if len(parsed) == 1:
                raise located(exc, names[0]) from exc
            for i, sfc in enumerate(parsed):  # a batch decodes together: the file that fails alone is named
                try:
                    self._decode_parsed([sfc], layers)
                except SfcError as alone:
                    raise located(alone, names[i]) from exc
            raise

    def _decode_parsed(self, parsed: list[bitstream.SfcFile], layers: str) -> list[Decoded]:
        out: list[Decoded | None] = [None] * len(parsed)
        for set_id in dict.fromkeys(s.model_set for s in parsed):
            rows = [i for i, s in enumerate(parsed) if s.model_set == set_id]
            for i, decoded in zip(rows, self._decode_set(set_id, [parsed[i] for i in rows], layers)):
                out[i] = decoded
        return out

    def _decode_set(self, set_id: int, parsed: list[bitstream.SfcFile], layers: str) -> list[Decoded]:
        models = self.models_for(set_id)
        features, thumbnails = models.base_layer.decode_layers([s.base_payload for s in parsed])
        if layers == "base":
            return [Decoded(f, None) for f in features]
        predictions = models.predictions(features, thumbnails)
        if layers == "reconstruction":
            return [Decoded(f, face) for f, face in zip(features, predictions.reconstruction)]
        faces = [None] * len(parsed)
        groups: dict[tuple, list[int]] = {}
        for i, sfc in enumerate(parsed):
            e = sfc.enhancement
            groups.setdefault(None if e is None else (e.codec, e.model_id, e.mode), []).append(i)
        for key, rows in groups.items():
            rows_a = np.array(rows)
            if key is None:
                images = predictions.reconstruction[rows_a]
            else:
                enhancements = [parsed[i].enhancement for i in rows]
                codec = self._codec_for(enhancements[0])
                coded = [layer.Coded(e.payload, e.span) for e in enhancements]
                images = layer.decode(codec, key[2], coded, predictions(key[2], rows_a))
            for i, image in zip(rows, images):
                faces[i] = image
        return [Decoded(f, face) for f, face in zip(features, faces)]


def registered_learned_models() -> Iterator[tuple[int, int, zoo.LearnedFamily, int]]:
    """(codec id in files, two-byte model id, family, quality) of every registered learned checkpoint and rate, in
    registry order."""
    for family in zoo.learned_families().values():
        codec_id = learned_codec_id(family.kind == "conditional")
        for quality in family.qualities:
            path, rate = family.checkpoint(quality)
            yield codec_id, learned_model_id(_sha256(path), rate or 0), family, quality


def learned_codec_id(conditional: bool) -> int:
    """The codec id a learned model's files carry: conditional, or learned (residual and end-to-end models)."""
    return bitstream.CONDITIONAL if conditional else bitstream.LEARNED


def learned_model_id(sha256: str, rate: int) -> int:
    """The two bytes a file stores for a learned codec: 12 bits of its checkpoint's sha256 and its rate index."""
    return int(sha256[:3], 16) << 4 | rate


def _sha256(path: str | os.PathLike) -> str:
    """A learned checkpoint's sha256 as its meta.json states it (loading the weights verifies it)."""
    return json.loads((pathlib.Path(path) / "meta.json").read_text())["sha256"]


def enhancement_layer(codec: ImageCodec, mode: int, coded: layer.Coded) -> bitstream.Enhancement:
    """The enhancement layer of a file: ``coded`` (one face's ``layer.encode`` output) by ``codec`` in ``mode``."""
    model_id = learned_model_id(codec.model_id, codec.rate) if codec.codec_id in bitstream.LEARNED_CODECS else 0
    return bitstream.Enhancement(codec.codec_id, mode, coded.payload, coded.span, model_id)
