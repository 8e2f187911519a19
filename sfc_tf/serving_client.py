"""Running the codec's networks through the exported signatures, in process or behind TensorFlow Serving.

One interface, two implementations with the same methods:

  models = LocalModels(export_dir)                      # the SavedModels of ``sfc_tf.serving``, in process
  models = RemoteModels("host:8500", "grpc")            # TF Serving's gRPC PredictionService
  models = RemoteModels("host:8501", "rest")            # TF Serving's REST API (/v1/models/<name>:predict)
  features = models.features(crops)                     # uint8 (N, 160, 160, 3) -> float32 (N, 512)
  faces = models.reconstruct(features)                  # float32 (N, D) -> uint8 (N, 160, 160, 3)
  faces = models.predict_faces(features)                # the coding predictor (prediction mode mmse)
  strings, latent_shape = models.encode_images(images[, predictions])      # one rate of a learned codec
  images = models.decode_images(strings, latent_shape[, predictions])
  faces = models.decode_full(features, strings, latent_shape, low, high)  # the paper's residual mode

``ScalableCodec(models=...)`` (``sfc compress/decompress --server HOST:PORT``) runs FaceNet, the reconstructor
and the coding predictor through one of these; ``served_learned_codec`` is a learned enhancement codec whose
transforms and range coding run there (one served rate of one checkpoint).
"""

from __future__ import annotations

import base64
import json
import os
import pathlib
import urllib.error
import urllib.request

import numpy as np

from sfc_tf import serving
from sfc_tf.errors import SfcError

GRPC, REST = "grpc", "rest"
MAX_MESSAGE_BYTES = 64 << 20


class ServingError(SfcError):
    """The model server is unreachable or refused a request."""


class Models:
    """The codec's networks behind one ``predict(model, signature, inputs) -> outputs`` call."""

    def predict(self, model: str, signature: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _call(self, model: str, signature: str, **inputs) -> tuple[np.ndarray, ...]:
        outputs = self.predict(model, signature, inputs)
        return tuple(outputs[name] for name in serving.OUTPUTS[(model, signature)])

    def features(self, crops: np.ndarray) -> np.ndarray:
        """uint8 (N, 160, 160, 3) aligned RGB crops -> float32 (N, D) L2-normalised FaceNet features."""
        features = self._call(serving.FACENET, serving.DEFAULT_SIGNATURE, crops=_array(crops, np.uint8, 4))[0]
        return features.astype(np.float32)

    def reconstruct(self, features: np.ndarray) -> np.ndarray:
        """float32 (N, D) decoded features -> uint8 (N, H, W, 3) reconstructed faces."""
        return self._call(serving.RECONSTRUCTOR, serving.DEFAULT_SIGNATURE,
                          features=_array(features, np.float32, 2))[0].astype(np.uint8)

    def predict_faces(self, features: np.ndarray) -> np.ndarray:
        """float32 (N, D) decoded features -> uint8 (N, H, W, 3) coding predictions (mode ``mmse``)."""
        return self._call(serving.PREDICTOR, serving.DEFAULT_SIGNATURE,
                          features=_array(features, np.float32, 2))[0].astype(np.uint8)

    def encode_images(self, images: np.ndarray, predictions: np.ndarray | None = None) -> tuple[list[bytes], np.ndarray]:
        """uint8 (N, H, W, 3) images (a residual codec: min-max normalised residuals; a conditional codec: faces,
        with their ``predictions``) -> N range-coded strings and the latent (h, w)."""
        inputs = {"images": _array(images, np.uint8, 4)}
        if predictions is not None:
            inputs["predictions"] = _array(predictions, np.uint8, 4)
        strings, shape = self._call(serving.ENHANCEMENT, serving.ENCODE, **inputs)
        return [bytes(s) for s in strings], np.asarray(shape, np.int32)

    def decode_images(self, strings: list[bytes], latent_shape, predictions: np.ndarray | None = None) -> np.ndarray:
        """N strings + latent (h, w) [+ predictions] -> uint8 (N, 16 h, 16 w, 3) images."""
        inputs = {"strings": _strings(strings), "latent_shape": np.asarray(latent_shape, np.int32)}
        if predictions is not None:
            inputs["predictions"] = _array(predictions, np.uint8, 4)
        return self._call(serving.ENHANCEMENT, serving.DECODE, **inputs)[0].astype(np.uint8)

    def decode_full(self, features, strings, latent_shape, low, high) -> np.ndarray:
        """Decoded features + enhancement strings + per-face residual range (float16 values) -> uint8 faces."""
        return self._call(serving.DECODER, serving.DEFAULT_SIGNATURE, features=_array(features, np.float32, 2),
                          strings=_strings(strings), latent_shape=np.asarray(latent_shape, np.int32),
                          low=np.asarray(low, np.float32), high=np.asarray(high, np.float32))[0].astype(np.uint8)


def _array(value, dtype, ndim: int) -> np.ndarray:
    value = np.asarray(value)
    if value.ndim != ndim or not np.can_cast(value.dtype, dtype, "same_kind"):
        raise ValueError(f"expected a {ndim}-d {np.dtype(dtype).name} array, got {value.dtype} {value.shape}")
    return value.astype(dtype, copy=False)


def _strings(strings) -> np.ndarray:
    return np.array([bytes(s) for s in strings], dtype=object)


class LocalModels(Models):
    """The exported SavedModels (``<export_dir>/<model>/<version>/``, newest version), loaded on first use."""

    def __init__(self, export_dir: str | os.PathLike):
        self.export_dir = pathlib.Path(export_dir)
        self._loaded = {}

    def signature(self, model: str, signature: str):
        """The loaded signature function of ``model`` (``ServingError`` if that model is not exported)."""
        if model not in self._loaded:
            import tensorflow as tf
            import tensorflow_compression  # noqa: F401  registers the range-coding ops of enhancement, decoder

            versions = sorted((p for p in (self.export_dir / model).glob("*") if p.name.isdigit()),
                              key=lambda p: int(p.name))
            if not versions:
                raise ServingError(f"no exported {model!r} SavedModel under {self.export_dir / model}")
            self._loaded[model] = tf.saved_model.load(str(versions[-1]))
        signatures = self._loaded[model].signatures
        if signature not in signatures:
            raise ServingError(f"{model} has no signature {signature!r}; it has {sorted(signatures)}")
        return signatures[signature]

    def predict(self, model, signature, inputs):
        import tensorflow as tf

        function = self.signature(model, signature)
        try:
            outputs = function(**{k: tf.constant(v) for k, v in inputs.items()})
        except tf.errors.OpError as exc:
            raise ServingError(f"{model}/{signature}: {exc.message}") from exc
        return {name: value.numpy() for name, value in outputs.items()}


class RemoteModels(Models):
    """The same networks behind a TensorFlow Serving model server (``protocol`` ``grpc`` or ``rest``)."""

    def __init__(self, host_port: str, protocol: str = GRPC, timeout: float = 60.0):
        if protocol not in (GRPC, REST):
            raise ValueError(f"protocol must be {GRPC!r} or {REST!r}, got {protocol!r}")
        self.host_port, self.protocol, self.timeout = host_port, protocol, timeout
        self._stub = None

    def _unreachable(self, reason) -> str:
        return f"model server {self.host_port} ({self.protocol}) is unreachable: {reason}"

    def _refused(self, model: str, signature: str, reason) -> str:
        return f"model server {self.host_port} failed {model}/{signature}: {reason}"

    def _timed_out(self, model: str, signature: str) -> str:
        return f"model server {self.host_port} did not answer {model}/{signature} within {self.timeout:g} s"

    def predict(self, model, signature, inputs):
        if self.protocol == GRPC:
            return self._predict_grpc(model, signature, inputs)
        return self._predict_rest(model, signature, inputs)

    # -- gRPC ---------------------------------------------------------------------------------------------
    def _predict_grpc(self, model, signature, inputs):
        import grpc
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

        if self._stub is None:
            options = [("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                       ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)]
            channel = grpc.insecure_channel(self.host_port, options=options)
            self._stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        request = predict_pb2.PredictRequest()
        request.model_spec.name, request.model_spec.signature_name = model, signature
        for name, value in inputs.items():
            request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
        try:
            response = self._stub.Predict(request, timeout=self.timeout)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.UNAVAILABLE:
                raise ServingError(self._unreachable(exc.details())) from exc
            if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise ServingError(self._timed_out(model, signature)) from exc
            raise ServingError(self._refused(model, signature, f"{exc.code().name}: {exc.details()}")) from exc
        return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}

    # -- REST ---------------------------------------------------------------------------------------------
    def _predict_rest(self, model, signature, inputs):
        body = {"signature_name": signature, "inputs": {k: _to_json(v) for k, v in inputs.items()}}
        request = urllib.request.Request(f"http://{self.host_port}/v1/models/{model}:predict",
                                         data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                reply = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise ServingError(self._refused(model, signature, f"HTTP {exc.code}: {_error_text(exc.read())}")) from exc
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, TimeoutError):
                raise ServingError(self._timed_out(model, signature)) from exc
            raise ServingError(self._unreachable(exc.reason)) from exc
        except TimeoutError as exc:
            raise ServingError(self._timed_out(model, signature)) from exc
        except OSError as exc:                                  # connection reset while reading the reply
            raise ServingError(self._unreachable(exc)) from exc
        except ValueError as exc:
            raise ServingError(self._refused(model, signature, f"reply is not JSON: {exc}")) from exc
        if "error" in reply:
            raise ServingError(self._refused(model, signature, reply["error"]))
        names = serving.OUTPUTS[(model, signature)]
        outputs = reply["outputs"] if len(names) > 1 else {names[0]: reply["outputs"]}  # one output: no name
        return {name: _from_json(outputs[name]) for name in names}


def _error_text(body: bytes) -> str:
    """TF Serving's REST errors are ``{"error": "..."}``; anything else is shown as is."""
    text = body.decode(errors="replace")
    try:
        return json.loads(text)["error"]
    except (ValueError, KeyError, TypeError):
        return text


def _to_json(value: np.ndarray):
    """Columnar ("inputs") JSON of TF Serving's REST API: binary strings as {"b64": ...}; floats exactly (a
    float32 widened to a Python float prints as a decimal that reads back to the same value)."""
    if value.dtype == object:
        return [{"b64": base64.b64encode(s).decode("ascii")} for s in value.tolist()]
    return value.tolist()


def _from_json(value):
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return np.array([base64.b64decode(v["b64"]) for v in value], dtype=object)
    return np.asarray(value)


def checkpoint_meta(directory: str | os.PathLike) -> dict:
    """The meta.json of a reconstructor, predictor or learned-codec checkpoint: with served networks the client
    keeps only these small files, for the model ids (``sha256``) it writes into and checks in files."""
    from sfc_tf.errors import WeightsError

    path = pathlib.Path(directory) / "meta.json"
    try:
        meta = json.loads(path.read_text())
        if not isinstance(meta, dict) or not isinstance(meta.get("sha256"), str):
            raise ValueError("no sha256 model id")
        return meta
    except (OSError, ValueError) as exc:
        raise WeightsError(f"{path}: no model id ({exc})") from exc


class ServedCoder:
    """Stands in for ``learned.RateCoder`` inside ``learned.LearnedCodec`` (which keeps the payload format and its
    checks): ``compress`` / ``decompress`` run the served ``enhancement`` model instead."""

    def __init__(self, models: Models, conditional: bool):
        self.models, self.conditional = models, conditional

    def compress(self, images, predictions=None):
        return self.models.encode_images(np.asarray(images), predictions if self.conditional else None)[0]

    def decompress(self, strings, latent_shape, predictions=None):
        return self.models.decode_images(list(np.asarray(strings)), np.asarray(latent_shape),
                                         predictions if self.conditional else None)


def served_learned_codec(models: Models, directory: str | os.PathLike, quality: int = 1):
    """The learned enhancement codec of checkpoint ``directory`` at ``quality`` (1..N; only its meta.json is read,
    for the model id and kind) with its networks and range coding on ``models``; the server must serve an export
    of that checkpoint at that quality (``train/export.py --enhancement_quality``)."""
    from sfc_tf.enhancement.learned import ConditionalCodec, LearnedCodec

    meta = checkpoint_meta(directory)
    conditional = bool(meta.get("conditional", False))
    cls = ConditionalCodec if conditional else LearnedCodec
    parameter = str(directory) if "lmbdas" not in meta else (str(directory), quality - 1)
    return cls(ServedCoder(models, conditional), parameter, meta["sha256"])
