"""Running the codec's networks through the exported signatures, in process or behind TensorFlow Serving.

One interface, two implementations with the same methods:

  models = LocalModels(export_dir)                      # the SavedModels of ``sfc_tf.serving.exports``, in process
  models = RemoteModels("host:8500", "grpc")            # TF Serving's gRPC PredictionService
  models = RemoteModels("host:8501", "rest")            # TF Serving's REST API (/v1/models/<name>:predict)
  features = models.features(crops)                     # uint8 (N, 160, 160, 3) -> float32 (N, 512)
  faces = models.reconstruct(features)                  # float32 (N, D) -> uint8 (N, 160, 160, 3)
  faces = models.predict_faces(features)                # the coding predictor (prediction mode mmse)
  strings, latent_shape = models.encode_images(images[, predictions])      # one rate of a learned codec
  images = models.decode_images(strings, latent_shape[, predictions])
  faces = models.decode_full(features, strings, latent_shape, low, high)  # the paper's residual mode

``RemoteModels(..., timeout=60.0, retries=2, backoff=0.5)``: each request has a deadline of ``timeout`` seconds
(finite, at most a day) covering the REST reply's parsing too; only connection errors before it was sent are
retried; every failure, bad replies included, is a one-line ``ServingError``.

``ScalableCodec(models=...)`` (``sfc compress/decompress --server HOST:PORT``) runs FaceNet, the reconstructor
and the coding predictor through one of these; ``served_learned_codec`` is a learned enhancement codec whose
transforms and range coding run there (one served rate of one checkpoint).
"""

from __future__ import annotations

import base64
import contextlib
import functools
import http.client
import io
import itertools
import json
import math
import os
import pathlib
import re
import socket
import time
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from sfc_tf.errors import SfcError
from sfc_tf.serving import exports

if TYPE_CHECKING:
    import numpy.typing as npt
    import tensorflow as tf
    from _typeshed import WriteableBuffer
    from tensorflow_serving.apis import predict_pb2

    from sfc_tf.enhancement.learned import LearnedCodec

_T = TypeVar("_T")

GRPC, REST = "grpc", "rest"
MAX_MESSAGE_BYTES = 64 << 20  # gRPC's cap on requests and replies
# REST's caps on a reply, checked against its Content-Length and again while reading, before anything is parsed: 1 MiB
# plus 2 MiB per row of the request (a 160x160x3 face is at most ~0.4 MB of JSON integers, ~2.0 MB even as floats at
# 17 significant digits; a 1 MiB enhancement payload ~1.4 MB of base64; a 512-d feature ~13 KB), and 1 GiB in all.
MAX_REPLY_BYTES = 1 << 30
REPLY_BYTES_PER_ROW, REPLY_OVERHEAD_BYTES = 2 << 20, 1 << 20
MAX_JSON_DEPTH = 8  # the deepest valid reply, {"outputs": {"faces": [rows of H x W x 3]}}, nests 6 levels
MAX_TIMEOUT = 86_400.0  # seconds: a day; longer deadlines overflow socket and gRPC timers
_CHUNK_BYTES = 64 << 10
# How gRPC's UNAVAILABLE details start when a call never left the client: no connection, or no address.
_GRPC_NOT_SENT = ("failed to connect to all addresses", "DNS resolution failed", "errors resolving")
# Output name -> dtype and shape (None: the request's batch size; -1: any) of the codec's signatures.
_OUTPUT_SPECS = {
    "features": (np.float32, (None, -1)),
    "faces": (np.uint8, (None, -1, -1, 3)),
    "images": (np.uint8, (None, -1, -1, 3)),
    "strings_bytes": (object, (None,)),
    "latent_shape": (np.int32, (2,)),
}


class ServingError(SfcError):
    """The model server is unreachable, failed or timed out on a request, or sent a bad reply."""


class Models:
    """The codec's networks behind one ``predict(model, signature, inputs) -> outputs`` call."""

    def predict(self, model: str, signature: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _call(self, model: str, signature: str, **inputs: np.ndarray) -> tuple[np.ndarray, ...]:
        outputs = self.predict(model, signature, inputs)
        return tuple(outputs[name] for name in exports.OUTPUTS[(model, signature)])

    def features(self, crops: np.ndarray) -> np.ndarray:
        """uint8 (N, 160, 160, 3) aligned RGB crops -> float32 (N, D) L2-normalised FaceNet features."""
        features = self._call(exports.FACENET, exports.DEFAULT_SIGNATURE, crops=_array(crops, np.uint8, 4))[0]
        return features.astype(np.float32)

    def reconstruct(self, features: np.ndarray) -> np.ndarray:
        """float32 (N, D) decoded features -> uint8 (N, H, W, 3) reconstructed faces."""
        return self._call(exports.RECONSTRUCTOR, exports.DEFAULT_SIGNATURE, features=_array(features, np.float32, 2))[
            0
        ].astype(np.uint8)

    def predict_faces(self, features: np.ndarray) -> np.ndarray:
        """float32 (N, D) decoded features -> uint8 (N, H, W, 3) coding predictions (mode ``mmse``)."""
        return self._call(exports.PREDICTOR, exports.DEFAULT_SIGNATURE, features=_array(features, np.float32, 2))[
            0
        ].astype(np.uint8)

    def encode_images(
        self, images: np.ndarray, predictions: np.ndarray | None = None
    ) -> tuple[list[bytes], np.ndarray]:
        """uint8 (N, H, W, 3) images (a residual codec: min-max normalised residuals; a conditional codec: faces,
        with their ``predictions``) -> N range-coded strings and the latent (h, w)."""
        inputs = {"images": _array(images, np.uint8, 4)}
        if predictions is not None:
            inputs["predictions"] = _array(predictions, np.uint8, 4)
        strings, shape = self._call(exports.ENHANCEMENT, exports.ENCODE, **inputs)
        return [bytes(s) for s in strings], np.asarray(shape, np.int32)

    def decode_images(
        self, strings: list[bytes], latent_shape: npt.ArrayLike, predictions: np.ndarray | None = None
    ) -> np.ndarray:
        """N strings + latent (h, w) [+ predictions] -> uint8 (N, 16 h, 16 w, 3) images."""
        inputs = {"strings": _strings(strings), "latent_shape": np.asarray(latent_shape, np.int32)}
        if predictions is not None:
            inputs["predictions"] = _array(predictions, np.uint8, 4)
        return self._call(exports.ENHANCEMENT, exports.DECODE, **inputs)[0].astype(np.uint8)

    def decode_full(
        self,
        features: np.ndarray,
        strings: Iterable[bytes],
        latent_shape: npt.ArrayLike,
        low: npt.ArrayLike,
        high: npt.ArrayLike,
    ) -> np.ndarray:
        """Decoded features + enhancement strings + per-face residual range (float16 values) -> uint8 faces, the
        served decoder graph: from the feature alone (no colour thumbnail: not for files of a set that has one)."""
        return self._call(
            exports.DECODER,
            exports.DEFAULT_SIGNATURE,
            features=_array(features, np.float32, 2),
            strings=_strings(strings),
            latent_shape=np.asarray(latent_shape, np.int32),
            low=np.asarray(low, np.float32),
            high=np.asarray(high, np.float32),
        )[0].astype(np.uint8)


def _array(value: npt.ArrayLike, dtype: type[np.generic], ndim: int) -> np.ndarray:
    value = np.asarray(value)
    if value.ndim != ndim or not np.can_cast(value.dtype, dtype, "same_kind"):
        raise ValueError(f"expected a {ndim}-d {np.dtype(dtype).name} array, got {value.dtype} {value.shape}")
    return value.astype(dtype, copy=False)


def _strings(strings: Iterable[bytes]) -> np.ndarray:
    return np.array([bytes(s) for s in strings], dtype=object)


class LocalModels(Models):
    """The exported SavedModels (``<export_dir>/<model>/<version>/``, newest version), loaded on first use."""

    def __init__(self, export_dir: str | os.PathLike) -> None:
        self.export_dir = pathlib.Path(export_dir)
        self._loaded = {}

    def signature(self, model: str, signature: str) -> tf.types.experimental.ConcreteFunction:
        """The loaded signature function of ``model`` (``ServingError`` if that model is not exported)."""
        if model not in self._loaded:
            import tensorflow as tf
            import tensorflow_compression  # noqa: F401  registers the range-coding ops of enhancement, decoder

            versions = sorted(
                (p for p in (self.export_dir / model).glob("*") if p.name.isdigit()), key=lambda p: int(p.name)
            )
            if not versions:
                raise ServingError(f"no exported {model!r} SavedModel under {self.export_dir / model}")
            self._loaded[model] = tf.saved_model.load(str(versions[-1]))
        signatures = self._loaded[model].signatures
        if signature not in signatures:
            raise ServingError(f"{model} has no signature {signature!r}; it has {sorted(signatures)}")
        return signatures[signature]

    def predict(self, model: str, signature: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import tensorflow as tf

        function = self.signature(model, signature)
        try:
            outputs = function(**{k: tf.constant(v) for k, v in inputs.items()})
        except tf.errors.OpError as exc:
            raise ServingError(f"{model}/{signature}: {exc.message}") from exc
        return {name: value.numpy() for name, value in outputs.items()}


def check_timeout(timeout: float) -> float:
    """A request deadline in seconds: finite, positive and at most ``MAX_TIMEOUT`` (``ValueError`` otherwise)."""
    if not (isinstance(timeout, (int, float)) and math.isfinite(timeout) and 0 < timeout <= MAX_TIMEOUT):
        raise ValueError(f"a server timeout is a number of seconds in (0, {MAX_TIMEOUT:g}], not {timeout!r}")
    return float(timeout)


class RemoteModels(Models):
    """The same networks behind a TensorFlow Serving model server (``protocol`` ``grpc`` or ``rest``).

    ``timeout`` is the deadline of each request in seconds: connecting, sending and reading the whole reply, retries
    included. A connection error that left the request unsent (connection refused or reset, DNS failure) is retried
    up to ``retries`` times, after ``backoff`` seconds, then twice that, ...; nothing else is retried. Every failure is
    a one-line ``ServingError`` naming the server, model and signature."""

    def __init__(
        self, host_port: str, protocol: str = GRPC, timeout: float = 60.0, retries: int = 2, backoff: float = 0.5
    ) -> None:
        if protocol not in (GRPC, REST):
            raise ValueError(f"protocol must be {GRPC!r} or {REST!r}, got {protocol!r}")
        check_timeout(timeout)
        if retries < 0 or not math.isfinite(backoff) or backoff < 0:
            raise ValueError(f"need retries >= 0 and a finite backoff >= 0; got {retries}, {backoff}")
        self.host_port, self.protocol = host_port, protocol
        self.timeout, self.retries, self.backoff = timeout, retries, backoff
        self._address = _address(host_port) if protocol == REST else None
        self._channel = None

    def _error(self, what: str, model: str, signature: str, reason: object) -> ServingError:
        """``what``: "failed", "is unreachable for", "sent a bad reply to", ..."""
        return ServingError(
            f"model server {self.host_port} ({self.protocol}) {what} {model}/{signature}: " f"{_one_line(reason)}"
        )

    def _timed_out(self, model: str, signature: str) -> ServingError:
        return self._error("did not answer", model, signature, f"no complete reply within {self.timeout:g} s")

    def predict(self, model: str, signature: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if (model, signature) not in exports.OUTPUTS:
            raise ValueError(f"{model}/{signature} is not one of the codec's signatures")
        deadline = time.monotonic() + self.timeout
        if self.protocol == GRPC:
            outputs = self._predict_grpc(model, signature, inputs, deadline)
        else:
            outputs = self._predict_rest(model, signature, inputs, deadline)
        try:
            return _checked_outputs(outputs, exports.OUTPUTS[(model, signature)], _batch_size(inputs), deadline)
        except TimeoutError as exc:
            raise self._timed_out(model, signature) from exc
        except ValueError as exc:
            raise self._error("sent a bad reply to", model, signature, exc) from exc

    def _retrying(self, send: Callable[[], _T], model: str, signature: str, deadline: float) -> _T:
        """``send()``, again after a connection error that left the request unsent (``_NotSent``), with exponential
        backoff while ``retries`` and the deadline allow."""
        for retry in itertools.count():
            try:
                return send()
            except _NotSent as exc:
                delay = self.backoff * 2**retry
                if retry == self.retries or time.monotonic() + delay >= deadline:
                    attempts = f"{retry + 1} attempt{'s' if retry else ''}"
                    raise self._error("is unreachable for", model, signature, f"{exc} ({attempts})") from exc
                time.sleep(delay)

    # -- gRPC ---------------------------------------------------------------------------------------------
    def _predict_grpc(
        self, model: str, signature: str, inputs: dict[str, np.ndarray], deadline: float
    ) -> dict[str, np.ndarray]:
        import grpc
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        request = predict_pb2.PredictRequest()
        request.model_spec.name, request.model_spec.signature_name = model, signature
        for name, value in inputs.items():
            request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
        try:
            response = self._retrying(functools.partial(self._grpc_call, request, deadline), model, signature, deadline)
        except TimeoutError as exc:
            raise self._timed_out(model, signature) from exc
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise self._timed_out(model, signature) from exc
            raise self._error("failed", model, signature, f"{exc.code().name}: {exc.details()}") from exc
        try:
            return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}
        except (ValueError, TypeError) as exc:
            raise self._error("sent a bad reply to", model, signature, f"undecodable tensor: {exc}") from exc

    def _grpc_call(self, request: predict_pb2.PredictRequest, deadline: float) -> predict_pb2.PredictResponse:
        """One ``Predict`` by ``deadline``; ``_NotSent`` if the call never left the client (then the channel is
        dropped, so that the next attempt connects at once instead of waiting for gRPC's own reconnect backoff)."""
        import grpc
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        if self._channel is None:
            options = [
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.use_local_subchannel_pool", 1),
            ]  # a new channel makes a new connection
            self._channel = grpc.insecure_channel(self.host_port, options=options)
        stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        try:
            return stub.Predict(request, timeout=_remaining(deadline))
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.UNAVAILABLE or not (exc.details() or "").startswith(_GRPC_NOT_SENT):
                raise
            self._channel.close()
            self._channel = None
            raise _NotSent(exc.details()) from exc

    # -- REST ---------------------------------------------------------------------------------------------
    def _predict_rest(self, model: str, signature: str, inputs: dict[str, np.ndarray], deadline: float) -> object:
        body = json.dumps({"signature_name": signature, "inputs": {k: _to_json(v) for k, v in inputs.items()}}).encode()
        request = (
            f"POST /v1/models/{model}:predict HTTP/1.1\r\nHost: {self.host_port}\r\nContent-Type: "
            f"application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode() + body
        cap = reply_cap(_batch_size(inputs))
        try:
            status, data = self._retrying(
                functools.partial(_post, self._address, request, deadline, cap), model, signature, deadline
            )
        except TimeoutError as exc:
            raise self._timed_out(model, signature) from exc
        except http.client.HTTPException as exc:  # bad status line or headers
            raise self._error("sent a bad reply to", model, signature, f"{type(exc).__name__}: {exc}") from exc
        except ValueError as exc:  # over the cap, or short of Content-Length
            raise self._error("sent a bad reply to", model, signature, exc) from exc
        except OSError as exc:
            raise self._error("failed", model, signature, f"connection lost after sending: {exc}") from exc
        if status != 200:
            raise self._error("failed", model, signature, f"HTTP {status}: {_error_text(data)}")
        try:
            reply = _JsonReply(data, deadline).parse()
        except TimeoutError as exc:
            raise self._timed_out(model, signature) from exc
        except ValueError as exc:
            raise self._error("sent a bad reply to", model, signature, f"not JSON ({exc})") from exc
        if isinstance(reply, dict) and "error" in reply:
            raise self._error("failed", model, signature, reply["error"])
        if not isinstance(reply, dict) or "outputs" not in reply:
            start = data[:100].decode(errors="replace")
            raise self._error("sent a bad reply to", model, signature, f"no outputs in {start}")
        names = exports.OUTPUTS[(model, signature)]
        return reply["outputs"] if len(names) > 1 else {names[0]: reply["outputs"]}  # one output: no name


class _NotSent(Exception):
    """A connection error that left the request unsent: safe to retry."""


def _remaining(deadline: float) -> float:
    """Seconds left until ``deadline`` (of ``time.monotonic``); ``TimeoutError`` if none."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError("deadline passed")
    return remaining


def _address(host_port: str) -> tuple[str, int]:
    """ "host:port" (IPv6 hosts in brackets; port 80 if none) -> (host, port); ``ValueError`` if it is not one."""
    parts = urllib.parse.urlsplit(f"//{host_port}")
    if not parts.hostname:
        raise ValueError(f"expected HOST:PORT, got {host_port!r}")
    return parts.hostname, parts.port or 80


def reply_cap(rows: int) -> int:
    """The most bytes a REST reply to a request of ``rows`` rows may take (``REPLY_BYTES_PER_ROW``)."""
    return min(MAX_REPLY_BYTES, REPLY_OVERHEAD_BYTES + max(rows, 1) * REPLY_BYTES_PER_ROW)


def _post(address: tuple[str, int], request: bytes, deadline: float, cap: int) -> tuple[int, bytearray]:
    """Sends the HTTP ``request`` and reads the whole reply, at most ``cap`` bytes, by ``deadline``: (status, body).
    ``_NotSent`` if connecting or sending failed, ``TimeoutError`` at the deadline."""
    with contextlib.ExitStack() as stack:
        try:
            sock = stack.enter_context(socket.create_connection(address, timeout=_remaining(deadline)))
            sock.settimeout(_remaining(deadline))  # sendall: the time for all of the request
            sock.sendall(request)
        except TimeoutError:  # the deadline passed: no time for another attempt
            raise
        except OSError as exc:  # refused, reset, unreachable, DNS failure (gaierror)
            raise _NotSent(exc) from exc
        response = http.client.HTTPResponse(_DeadlineReader(sock, deadline), method="POST")
        response.begin()
        return response.status, _read_capped(response, cap)


class _DeadlineReader(io.RawIOBase):
    """Reads of ``sock`` that all end by ``deadline``; ``makefile`` is ``http.client.HTTPResponse``'s way in."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        super().__init__()
        self.sock, self.deadline = sock, deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        self.sock.settimeout(_remaining(self.deadline))
        return self.sock.recv_into(buffer)

    def makefile(self, mode: str) -> io.BufferedReader:
        return io.BufferedReader(self)


def _read_capped(response: http.client.HTTPResponse, cap: int) -> bytearray:
    """The reply's body, read in chunks; ``ValueError`` once it is larger than ``cap``, or before reading if its
    Content-Length says it is, or if it ends short of its Content-Length."""
    if response.length is not None and response.length > cap:
        raise ValueError(f"Content-Length {response.length} is larger than the {cap}-byte cap of this request")
    body = bytearray()
    while chunk := response.read(min(_CHUNK_BYTES, cap + 1 - len(body))):
        body += chunk
        if len(body) > cap:
            raise ValueError(f"reply is larger than the {cap}-byte cap of this request")
    if response.length:
        raise ValueError(f"reply ended {response.length} bytes short of its Content-Length")
    return body


class _JsonReply:
    """A REST reply's JSON, parsed by ``deadline``: objects and the rows of the arrays that are their members (an
    output tensor's rows) are walked here, the deadline checked after each; every row is parsed by ``json`` in one
    call. Objects nest at most ``MAX_JSON_DEPTH`` deep; a row nested past Python's recursion limit is refused."""

    _decoder = json.JSONDecoder()
    _space = re.compile(r"[ \t\n\r]*")

    def __init__(self, data: bytes, deadline: float) -> None:
        self.text, self.deadline, self.pos = bytes(data).decode("utf-8"), deadline, 0

    def parse(self) -> object:
        value = self._value(0, rows=True)
        self._skip()
        if self.pos != len(self.text):
            raise ValueError(f"extra data at character {self.pos}")
        return value

    def _skip(self) -> None:
        self.pos = self._space.match(self.text, self.pos).end()

    def _expect(self, char: str) -> None:
        self._skip()
        if not self.text.startswith(char, self.pos):
            raise ValueError(f"expected {char!r} at character {self.pos}")
        self.pos += 1

    def _value(self, depth: int, rows: bool) -> object:
        if depth >= MAX_JSON_DEPTH:
            raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels")
        self._skip()
        if self.text.startswith("{", self.pos):
            return self._object(depth)
        if rows and self.text.startswith("[", self.pos):
            return self._rows(depth)
        try:
            value, self.pos = self._decoder.raw_decode(self.text, self.pos)
        except RecursionError:
            raise ValueError(f"nested too deeply at character {self.pos}") from None
        return value

    def _object(self, depth: int) -> dict:
        members = {}

        def member() -> None:
            self._skip()
            if not self.text.startswith('"', self.pos):
                raise ValueError(f"expected a member name at character {self.pos}")
            name, self.pos = self._decoder.raw_decode(self.text, self.pos)
            self._expect(":")
            members[name] = self._value(depth + 1, rows=True)

        self._items("}", member)
        return members

    def _rows(self, depth: int) -> list:
        rows = []
        self._items("]", lambda: rows.append(self._value(depth + 1, rows=False)))
        return rows

    def _items(self, end: str, item: Callable[[], None]) -> None:
        """The comma-separated items after an opening bracket up to ``end``, each parsed by ``item``; the deadline
        is checked after each."""
        self.pos += 1
        self._skip()
        if self.text.startswith(end, self.pos):
            self.pos += 1
            return
        while True:
            item()
            _remaining(self.deadline)
            self._skip()
            if not self.text.startswith(",", self.pos):
                self._expect(end)
                return
            self.pos += 1


def _error_text(body: bytes) -> str:
    """TF Serving's REST errors are ``{"error": "..."}``; anything else is shown as is."""
    text = body.decode(errors="replace")
    try:
        return json.loads(text)["error"]
    except (ValueError, KeyError, TypeError):
        return text


def _one_line(reason: object, limit: int = 500) -> str:
    """``reason`` on one line, cut after ``limit`` characters."""
    text = " ".join(str(reason).split())
    return text if len(text) <= limit else text[:limit] + "..."


def _batch_size(inputs: dict) -> int:
    """N: the first size of the batched inputs (all but ``latent_shape``); -1 if there are none."""
    return next((np.shape(value)[0] for name, value in inputs.items() if name != "latent_shape" and np.ndim(value)), -1)


def _checked_outputs(
    outputs: object, names: tuple[str, ...], batch: int, deadline: float = math.inf
) -> dict[str, np.ndarray]:
    """A reply's ``outputs`` (name -> tensor, or its JSON) -> the arrays of ``names``, of the dtypes and shapes of
    ``_OUTPUT_SPECS``; ``ValueError`` naming the first one missing or wrong, ``TimeoutError`` past ``deadline``."""
    if not isinstance(outputs, dict):
        raise ValueError(f"outputs are a {type(outputs).__name__}, not {', '.join(names)} by name")
    for name in names:
        if name not in outputs:
            raise ValueError(f"no output {name!r} (outputs: {sorted(outputs)})")
    return {name: _checked(name, outputs[name], batch, deadline) for name in names}


def _checked(name: str, value: object, batch: int, deadline: float = math.inf) -> np.ndarray:
    """Output ``name`` (a tensor, or its JSON) as an array of its dtype and shape; ``ValueError`` if it is not one."""
    dtype, shape = _OUTPUT_SPECS[name]
    try:
        array = _from_json(value, deadline)
    except (ValueError, TypeError, KeyError) as exc:  # ragged lists, strings without "b64"
        raise ValueError(f"output {name!r} is not a tensor ({exc})") from exc
    if shape[0] is None and batch == 0 and array.size == 0:  # JSON's [] for an empty batch: no dtype, no sizes
        return np.zeros((0, *(max(size, 0) for size in shape[1:])), dtype)
    expected = tuple(batch if size is None else size for size in shape)
    if array.ndim != len(expected) or any(size not in (-1, actual) for size, actual in zip(expected, array.shape)):
        sizes = ", ".join("?" if size == -1 else str(size) for size in expected)
        raise ValueError(f"output {name!r} has shape {array.shape}, expected ({sizes})")
    if dtype is object:
        fits = array.dtype == object and all(isinstance(v, bytes) for v in array.flat)
    elif np.dtype(dtype).kind == "f":
        fits = array.dtype.kind in "iuf"
    else:  # integers, and in range
        fits = array.dtype.kind in "iu" and np.array_equal(array.astype(dtype), array)
    if not fits:
        raise ValueError(f"output {name!r} is {array.dtype}, expected {'bytes' if dtype is object else dtype.__name__}")
    return array.astype(dtype, copy=False)


def _to_json(value: np.ndarray) -> list:
    """Columnar ("inputs") JSON of TF Serving's REST API: binary strings as {"b64": ...}; floats exactly (a
    float32 widened to a Python float prints as a decimal that reads back to the same value)."""
    if value.dtype == object:
        return [{"b64": base64.b64encode(s).decode("ascii")} for s in value.tolist()]
    return value.tolist()


def _from_json(value: object, deadline: float = math.inf) -> np.ndarray:
    """A tensor's JSON (nested lists, or a list of {"b64": ...}) as an array, row by row by ``deadline``."""
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return np.array([base64.b64decode(v["b64"]) for v in value], dtype=object)
    if not isinstance(value, list):
        return np.asarray(value)
    rows = []
    for row in value:
        rows.append(np.asarray(row))
        _remaining(deadline)
    return np.asarray(rows) if rows else np.asarray(value)


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

    def __init__(self, models: Models, conditional: bool) -> None:
        self.models, self.conditional = models, conditional

    def compress(self, images: np.ndarray, predictions: np.ndarray | None = None) -> list[bytes]:
        return self.models.encode_images(np.asarray(images), predictions if self.conditional else None)[0]

    def decompress(
        self,
        strings: tf.Tensor | Sequence[bytes],
        latent_shape: tf.Tensor | npt.ArrayLike,
        predictions: np.ndarray | None = None,
    ) -> np.ndarray:
        return self.models.decode_images(
            list(np.asarray(strings)), np.asarray(latent_shape), predictions if self.conditional else None
        )


def served_learned_codec(models: Models, directory: str | os.PathLike, quality: int = 1) -> LearnedCodec:
    """The learned enhancement codec of checkpoint ``directory`` at ``quality`` (1..N; only its meta.json is read,
    for the model id and kind) with its networks and range coding on ``models``; the server must serve an export
    of that checkpoint at that quality (``train/export.py --enhancement_quality``)."""
    from sfc_tf.enhancement.learned import ConditionalCodec, LearnedCodec

    meta = checkpoint_meta(directory)
    conditional = bool(meta.get("conditional", False))
    cls = ConditionalCodec if conditional else LearnedCodec
    parameter = str(directory) if "lmbdas" not in meta else (str(directory), quality - 1)
    return cls(ServedCoder(models, conditional), parameter, meta["sha256"])
