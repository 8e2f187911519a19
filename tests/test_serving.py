"""Deployment: the SavedModels of ``sfc_tf.serving.exports`` against the in-process library, in a fresh process; their
signatures as ``saved_model_cli`` shows them; ``client`` over gRPC and REST against in-process TEST
DOUBLES of TF Serving (no model server runs here) and against misbehaving ones (bad replies, slow or silent servers,
refused connections); ``sfc --server`` writes the local bytes.

Fast stand-ins (the ``tiny_zoo`` fixture): an untrained reconstructor and coding predictor, untrained 16-filter
learned codecs (the paper's residual BLS2017 and a conditional FaceCodec), FaceNet from the offline converted
weights. ``train/export.py`` (the documented command) exports them once per module, in a subprocess.
"""

import ast
import base64
import contextlib
import http.server
import json
import os
import pathlib
import pickle
import re
import socket
import struct
import subprocess
import sys
import threading
import time
from concurrent import futures

import numpy as np
import pytest
from tensorflow_serving.apis import prediction_service_pb2_grpc

from sfc_tf import cli
from sfc_tf.reconstruction import reconstructor
from sfc_tf.serving import client, exports
from sfc_tf.serving.client import LocalModels, RemoteModels, ServingError

REPO = pathlib.Path(__file__).resolve().parent.parent
SAVED_MODEL_CLI = pathlib.Path(sys.executable).parent / "saved_model_cli"
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
FEATURE_TOLERANCE = 1e-5  # float features, fresh process vs in-process Keras (max abs); everything else exact
CONDITIONAL_QUALITY = 2

IMAGES = ("DT_UINT8", "(-1, -1, -1, 3)")
# (model, signature) -> inputs, outputs: name -> (dtype, shape) as saved_model_cli prints them (docs/exports.md).
SIGNATURES = {
    ("facenet", "serving_default"): (
        {"crops": ("DT_UINT8", "(-1, 160, 160, 3)")},
        {"features": ("DT_FLOAT", "(-1, 512)")},
    ),
    ("reconstructor", "serving_default"): (
        {"features": ("DT_FLOAT", "(-1, 512)")},
        {"faces": ("DT_UINT8", "(-1, 160, 160, 3)")},
    ),
    ("predictor", "serving_default"): (
        {"features": ("DT_FLOAT", "(-1, 512)")},
        {"faces": ("DT_UINT8", "(-1, 160, 160, 3)")},
    ),
    ("enhancement", "encode"): (
        {"images": IMAGES},
        {"strings_bytes": ("DT_STRING", "(-1)"), "latent_shape": ("DT_INT32", "(2)")},
    ),
    ("enhancement", "decode"): (
        {"strings": ("DT_STRING", "(-1)"), "latent_shape": ("DT_INT32", "(2)")},
        {"images": IMAGES},
    ),
    ("decoder", "serving_default"): (
        {
            "features": ("DT_FLOAT", "(-1, 512)"),
            "strings": ("DT_STRING", "(-1)"),
            "latent_shape": ("DT_INT32", "(2)"),
            "low": ("DT_FLOAT", "(-1)"),
            "high": ("DT_FLOAT", "(-1)"),
        },
        {"faces": ("DT_UINT8", "(-1, 160, 160, 3)")},
    ),
}
CONDITIONAL_SIGNATURES = {
    ("enhancement", "encode"): ({"images": IMAGES, "predictions": IMAGES}, SIGNATURES[("enhancement", "encode")][1]),
    ("enhancement", "decode"): (
        {**SIGNATURES[("enhancement", "decode")][0], "predictions": IMAGES},
        {"images": ("DT_UINT8", "(-1, 160, 160, 3)")},
    ),  # the FaceCodec's fixed size
}
# tensorflow-compression's range-coding ops: not in stock TensorFlow, so not in the stock tensorflow/serving image.
TFC_ENCODE_OPS = {"CreateRangeEncoder", "EntropyEncodeChannel", "EntropyEncodeFinalize"}
TFC_DECODE_OPS = {"CreateRangeDecoder", "EntropyDecodeChannel", "EntropyDecodeFinalize"}
TFC_OPS = {
    "facenet": set(),
    "reconstructor": set(),
    "predictor": set(),
    "enhancement": TFC_ENCODE_OPS | TFC_DECODE_OPS,
    "decoder": TFC_DECODE_OPS,
}


# -- models, exports and what the library computes ------------------------------------------------------------
@pytest.fixture(scope="module")
def checkpoints(tiny_zoo):
    return {
        "reconstructor": tiny_zoo / "reconstructor",
        "predictor": tiny_zoo / "predictor",
        "residual": tiny_zoo / "enhancement" / "bls_residual_0",
        "conditional": tiny_zoo / "enhancement" / "face_conditional",
    }


def run_export(root: pathlib.Path, *args) -> subprocess.CompletedProcess:
    """train/export.py into ``root`` with ``args``, its output captured as text (not checked)."""
    return subprocess.run(
        [sys.executable, "train/export.py", "--export_dir", str(root), *map(str, args)],
        cwd=REPO,
        env=ENV,
        capture_output=True,
        text=True,
    )


def export(root: pathlib.Path, *args) -> pathlib.Path:
    run_export(root, *args).check_returncode()
    return root


@pytest.fixture(scope="module")
def export_dir(checkpoints, tmp_path_factory):
    return export(
        tmp_path_factory.mktemp("serving") / "models",
        "--models",
        ",".join(exports.MODEL_NAMES),
        "--reconstructor",
        checkpoints["reconstructor"],
        "--predictor",
        checkpoints["predictor"],
        "--enhancement",
        checkpoints["residual"],
    )


@pytest.fixture(scope="module")
def conditional_export_dir(checkpoints, tmp_path_factory):
    return export(
        tmp_path_factory.mktemp("serving_conditional") / "models",
        "--models",
        "enhancement",
        "--enhancement",
        checkpoints["conditional"],
        "--enhancement_quality",
        CONDITIONAL_QUALITY,
    )


@pytest.fixture(scope="module")
def reference(checkpoints, fixture_crops):
    """The in-process library's outputs for the fixture faces (Keras FaceNet, Keras reconstructor and predictor,
    the learned codecs, minmax): what every exported signature must reproduce."""
    from sfc_tf.base import facenet
    from sfc_tf.enhancement import layer, learned, minmax, prediction
    from sfc_tf.reconstruction import decoder

    features = facenet.FeatureExtractor(allow_download=False)(fixture_crops)
    faces = decoder.reconstruct(reconstructor.load(checkpoints["reconstructor"]), features)
    predicted = decoder.reconstruct(prediction.load_network(checkpoints["predictor"]), features)
    residual_images, spans = layer.normalised_residuals(fixture_crops, faces)
    codec = learned.load_codec(checkpoints["residual"])
    strings = codec.encode_many(residual_images)  # the payload is the range-coded string itself
    decoded = codec.decode_many(strings)
    full = np.stack(
        [minmax.add_residual(face, minmax.denormalise(image, span)) for face, image, span in zip(faces, decoded, spans)]
    )
    conditional = learned.load_codec((checkpoints["conditional"], CONDITIONAL_QUALITY - 1))
    conditional_strings = conditional.encode_many(fixture_crops, predicted)
    return {
        "crops": fixture_crops,
        "features": features,
        "faces": faces,
        "predicted": predicted,
        "residual_images": residual_images,
        "strings": strings,
        "latent_shape": np.array([10, 10], np.int32),
        "decoded": decoded,
        "low": np.array([s.low for s in spans], np.float32),
        "high": np.array([s.high for s in spans], np.float32),
        "full": full,
        "conditional_strings": conditional_strings,
        "conditional_decoded": conditional.decode_many(conditional_strings, predicted),
    }


def assert_same_as_reference(results: dict, reference: dict, feature_tolerance: float = 0.0):
    assert np.abs(results["features"] - reference["features"]).max() <= feature_tolerance
    assert results["features"].dtype == np.float32
    for name in ("faces", "predicted", "decoded", "full", "conditional_decoded"):
        assert results[name].dtype == np.uint8
        np.testing.assert_array_equal(results[name], reference[name], err_msg=name)
    for name in ("strings", "conditional_strings"):
        assert [bytes(s) for s in results[name]] == reference[name], name
    np.testing.assert_array_equal(results["latent_shape"], reference["latent_shape"])


# -- (a) each SavedModel in a fresh process ---------------------------------------------------------------------
FRESH_PROCESS = r"""
import pickle, sys
import tensorflow as tf

export_dir, conditional_dir, inputs_path, outputs_path = sys.argv[1:]
with open(inputs_path, "rb") as f:
    x = pickle.load(f)
loaded = {}

def signature(model, name="serving_default", root=export_dir):
    loaded.setdefault((root, model), tf.saved_model.load(f"{root}/{model}/1"))
    return loaded[(root, model)].signatures[name]

out = {"features": signature("facenet")(crops=tf.constant(x["crops"]))["features"].numpy(),
       "faces": signature("reconstructor")(features=tf.constant(x["features"]))["faces"].numpy(),
       "predicted": signature("predictor")(features=tf.constant(x["features"]))["faces"].numpy(),
       "tfc_imported": "tensorflow_compression" in sys.modules}
try:
    signature("enhancement", "encode")
except Exception as exc:  # stock TensorFlow: the range-coding ops are not registered
    out["enhancement_without_tfc"] = str(exc)
import tensorflow_compression  # registers them

encoded = signature("enhancement", "encode")(images=tf.constant(x["residual_images"]))
out["strings"], out["latent_shape"] = list(encoded["strings_bytes"].numpy()), encoded["latent_shape"].numpy()
strings, latent_shape = tf.constant(x["strings"]), tf.constant(x["latent_shape"])
out["decoded"] = signature("enhancement", "decode")(strings=strings, latent_shape=latent_shape)["images"].numpy()
out["full"] = signature("decoder")(features=tf.constant(x["features"]), strings=strings, latent_shape=latent_shape,
                                   low=tf.constant(x["low"]), high=tf.constant(x["high"]))["faces"].numpy()
predicted = tf.constant(x["predicted"])
encoded = signature("enhancement", "encode", conditional_dir)(images=tf.constant(x["crops"]), predictions=predicted)
out["conditional_strings"] = list(encoded["strings_bytes"].numpy())
out["conditional_decoded"] = signature("enhancement", "decode", conditional_dir)(
    strings=tf.constant(x["conditional_strings"]), latent_shape=latent_shape, predictions=predicted)["images"].numpy()
with open(outputs_path, "wb") as f:
    pickle.dump(out, f)
"""


@pytest.fixture(scope="module")
def fresh_process_outputs(export_dir, conditional_export_dir, reference, tmp_path_factory):
    directory = tmp_path_factory.mktemp("fresh")
    (directory / "inputs.pkl").write_bytes(pickle.dumps(reference))
    subprocess.run(
        [
            sys.executable,
            "-c",
            FRESH_PROCESS,
            str(export_dir),
            str(conditional_export_dir),
            str(directory / "inputs.pkl"),
            str(directory / "outputs.pkl"),
        ],
        env=ENV,
        check=True,
        capture_output=True,
    )
    return pickle.loads((directory / "outputs.pkl").read_bytes())


def test_exports_reproduce_the_library_in_a_fresh_process(fresh_process_outputs, reference):
    # facenet: float features within FEATURE_TOLERANCE; reconstructor, predictor, both learned codecs' encode
    # (the strings) and decode, and the full decoder: bit-identical
    assert_same_as_reference(fresh_process_outputs, reference, FEATURE_TOLERANCE)


def test_only_the_range_coding_models_need_tensorflow_compression(fresh_process_outputs):
    assert not fresh_process_outputs["tfc_imported"]  # facenet, reconstructor, predictor ran on stock TensorFlow
    assert "Op type not registered 'CreateRange" in fresh_process_outputs["enhancement_without_tfc"]


def test_the_decoder_export_refuses_a_conditional_codec(checkpoints, tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "train/export.py",
            "--export_dir",
            str(tmp_path),
            "--models",
            "decoder",
            "--reconstructor",
            str(checkpoints["reconstructor"]),
            "--enhancement",
            str(checkpoints["conditional"]),
        ],
        cwd=REPO,
        env=ENV,
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0 and "residual codecs" in result.stderr
    assert not (tmp_path / "decoder").exists()


def test_the_decoder_export_refuses_a_model_set_with_a_thumbnail(tmp_path):
    """The decoder graph computes from the feature alone; set 15's faces also need the file's colour thumbnail."""
    args = [
        "train/export.py",
        "--export_dir",
        str(tmp_path),
        "--models",
        "decoder",
        "--model_set",
        "step0.08-faces-thumb2",
    ]
    result = subprocess.run([sys.executable, *args], cwd=REPO, env=ENV, capture_output=True, text=True)
    assert result.returncode != 0 and "colour thumbnail" in result.stderr
    assert "Export the codec's networks" not in result.stderr  # one line, not the usage text before it
    assert not (tmp_path / "decoder").exists()


def test_the_default_export_of_a_thumbnail_set_leaves_the_decoder_out(checkpoints, tmp_path):
    """Without --models, a set with a thumbnail exports the default models but the decoder, and says why."""
    args = ["--model_set", "step0.08-faces-thumb2", "--reconstructor", checkpoints["reconstructor"]]
    args += ["--enhancement", checkpoints["residual"]]
    result = run_export(tmp_path, *args)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "decoder: not exported" in result.stdout and "colour thumbnail" in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["enhancement", "facenet", "reconstructor"]


# -- (b) saved_model_cli --------------------------------------------------------------------------------------
def parse_saved_model_cli(text: str) -> tuple[dict, set]:
    """``saved_model_cli show --all`` output -> {signature: (inputs, outputs)} and the set of graph ops."""
    signatures = {}
    for block in re.split(r"\nsignature_def\['", text)[1:]:
        name = block.split("'", 1)[0]
        inputs_text, _, outputs_text = block.partition("contains the following output(s):")
        tensors = r"(?:inputs|outputs)\['(\w+)'\] tensor_info:\s*dtype: (\w+)\s*shape: (\([^)]*\))"
        signatures[name] = tuple(
            {n: (dtype, shape) for n, dtype, shape in re.findall(tensors, part)} for part in (inputs_text, outputs_text)
        )
    ops = re.search(r"contains the following ops: (\{.*\})", text)
    return signatures, ast.literal_eval(ops.group(1))


@pytest.mark.parametrize("model", [*exports.MODEL_NAMES, "conditional enhancement"])
def test_saved_model_cli_lists_the_documented_signatures(model, export_dir, conditional_export_dir):
    table = CONDITIONAL_SIGNATURES if model.startswith("conditional") else SIGNATURES
    root, model = (conditional_export_dir, "enhancement") if model.startswith("conditional") else (export_dir, model)
    shown = subprocess.run(
        [str(SAVED_MODEL_CLI), "show", "--all", "--dir", str(root / model / "1")],
        env=ENV,
        capture_output=True,
        text=True,
    )
    signatures, ops = parse_saved_model_cli(shown.stdout)
    expected = {name: io for (m, name), io in table.items() if m == model}
    assert {name: signatures[name] for name in expected} == expected
    assert set(signatures) == {*expected, "__saved_model_init_op"}
    for name, (_, outputs) in expected.items():
        assert set(outputs) == set(exports.OUTPUTS[(model, name)])
    assert ops & (TFC_ENCODE_OPS | TFC_DECODE_OPS) == TFC_OPS[model]
    if TFC_OPS[model]:  # stock saved_model_cli lists the signatures, then fails on the functions' custom ops
        assert shown.returncode != 0 and "Op type not registered 'CreateRange" in shown.stderr
    else:
        assert shown.returncode == 0, shown.stderr


# -- (c) TF Serving test doubles and the serving client -----------------------------------------------------------
class InProcessPredictionServiceDouble(prediction_service_pb2_grpc.PredictionServiceServicer):
    """TEST DOUBLE of TF Serving's gRPC PredictionService: ``Predict`` runs the exported SavedModels in this
    process (``LocalModels``) after TF Serving's request checks (model, signature, input names)."""

    def __init__(self, models: LocalModels):
        self.models = models

    def Predict(self, request, context):
        import grpc
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        model = request.model_spec.name
        signature = request.model_spec.signature_name or exports.DEFAULT_SIGNATURE
        try:
            function = self.models.signature(model, signature)
        except ServingError as exc:
            context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        expected = set(function.structured_input_signature[1])
        if set(request.inputs) != expected:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"inputs {sorted(request.inputs)}, need {sorted(expected)}")
        try:
            outputs = self.models.predict(model, signature, {k: tf.make_ndarray(v) for k, v in request.inputs.items()})
        except ServingError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        response = predict_pb2.PredictResponse()
        response.model_spec.CopyFrom(request.model_spec)
        for name, value in outputs.items():
            response.outputs[name].CopyFrom(tf.make_tensor_proto(value))
        return response


class InProcessRestDouble(http.server.BaseHTTPRequestHandler):
    """TEST DOUBLE of TF Serving's REST predict API: ``POST /v1/models/<name>[/versions/<v>]:predict`` with the
    columnar ``{"signature_name", "inputs"}`` request and ``{"outputs"}`` reply (one output: its value, unnamed);
    strings in requests as ``{"b64": ...}``, in replies so when the output name ends in ``_bytes``; errors as
    ``{"error": ...}`` with HTTP 400 / 404. Runs the SavedModels in this process (``models``)."""

    models: LocalModels

    def do_POST(self):
        match = re.fullmatch(r"/v1/models/([\w-]+)(?:/versions/\d+)?:predict", self.path)
        if not match:
            return self._reply(404, {"error": f"no such endpoint {self.path}"})
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        model, signature = match.group(1), body.get("signature_name", exports.DEFAULT_SIGNATURE)
        try:
            specs = self.models.signature(model, signature).structured_input_signature[1]
        except ServingError as exc:
            return self._reply(404, {"error": str(exc)})
        if set(body.get("inputs", {})) != set(specs):
            return self._reply(400, {"error": f"inputs {sorted(body.get('inputs', {}))}, need {sorted(specs)}"})
        inputs = {name: self._tensor(value, specs[name].dtype) for name, value in body["inputs"].items()}
        try:
            outputs = self.models.predict(model, signature, inputs)
        except ServingError as exc:
            return self._reply(400, {"error": str(exc)})
        columns = {name: self._json(name, value) for name, value in outputs.items()}
        self._reply(200, {"outputs": columns if len(columns) > 1 else next(iter(columns.values()))})

    @staticmethod
    def _tensor(value, dtype) -> np.ndarray:
        if dtype.name == "string":  # 1-d string inputs only (all this codec has)
            return np.array(
                [base64.b64decode(v["b64"]) if isinstance(v, dict) else v.encode() for v in value], dtype=object
            )
        return np.asarray(value, dtype.as_numpy_dtype)

    @staticmethod
    def _json(name: str, value: np.ndarray):
        if value.dtype == object:
            return [
                {"b64": base64.b64encode(v).decode()} if name.endswith("_bytes") else v.decode() for v in value.tolist()
            ]
        return value.tolist()  # float32 -> Python float: the decimal reads back to the same float32

    def _reply(self, status: int, body: dict):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def local_models(export_dir):
    return LocalModels(export_dir)


def start_servers(local_models):
    """protocol -> "localhost:PORT" of the gRPC and REST doubles, both over ``local_models``."""
    import grpc

    options = [
        ("grpc.max_send_message_length", client.MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", client.MAX_MESSAGE_BYTES),
    ]
    grpc_server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), options=options)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        InProcessPredictionServiceDouble(local_models), grpc_server
    )
    grpc_port = grpc_server.add_insecure_port("localhost:0")
    grpc_server.start()
    handler = type("Handler", (InProcessRestDouble,), {"models": local_models})
    rest_server = http.server.ThreadingHTTPServer(("localhost", 0), handler)
    threading.Thread(target=rest_server.serve_forever, daemon=True).start()
    yield {"grpc": f"localhost:{grpc_port}", "rest": f"localhost:{rest_server.server_address[1]}"}
    rest_server.shutdown()
    rest_server.server_close()
    grpc_server.stop(None)


@pytest.fixture(scope="module")
def servers(local_models):
    yield from start_servers(local_models)


@pytest.fixture(scope="module")
def conditional_servers(conditional_local_models):
    yield from start_servers(conditional_local_models)


@pytest.fixture(scope="module")
def conditional_local_models(conditional_export_dir):
    return LocalModels(conditional_export_dir)


def run_all(models: client.Models, conditional: client.Models, reference: dict) -> dict:
    """Every signature once, on the reference's inputs."""
    strings, latent_shape = models.encode_images(reference["residual_images"])
    conditional_strings, _ = conditional.encode_images(reference["crops"], reference["predicted"])
    return {
        "features": models.features(reference["crops"]),
        "faces": models.reconstruct(reference["features"]),
        "predicted": models.predict_faces(reference["features"]),
        "strings": strings,
        "latent_shape": latent_shape,
        "decoded": models.decode_images(strings, latent_shape),
        "full": models.decode_full(reference["features"], strings, latent_shape, reference["low"], reference["high"]),
        "conditional_strings": conditional_strings,
        "conditional_decoded": conditional.decode_images(conditional_strings, latent_shape, reference["predicted"]),
    }


@pytest.fixture(scope="module")
def local_results(local_models, conditional_local_models, reference):
    return run_all(local_models, conditional_local_models, reference)


def test_local_models_reproduce_the_library(local_results, reference):
    assert_same_as_reference(local_results, reference, FEATURE_TOLERANCE)


@pytest.mark.parametrize("protocol", ["grpc", "rest"])
def test_remote_models_round_trip_to_the_local_results(
    protocol, servers, conditional_servers, local_results, reference
):
    results = run_all(
        RemoteModels(servers[protocol], protocol), RemoteModels(conditional_servers[protocol], protocol), reference
    )
    assert_same_as_reference(results, local_results)  # the transport is exact, float features included


def test_served_learned_codecs_write_the_local_payloads(local_models, conditional_local_models, checkpoints, reference):
    residual = client.served_learned_codec(local_models, checkpoints["residual"])
    assert residual.encode_many(reference["residual_images"]) == reference["strings"]
    np.testing.assert_array_equal(residual.decode_many(reference["strings"]), reference["decoded"])
    conditional = client.served_learned_codec(conditional_local_models, checkpoints["conditional"], CONDITIONAL_QUALITY)
    assert conditional.encode_many(reference["crops"], reference["predicted"]) == reference["conditional_strings"]
    np.testing.assert_array_equal(
        conditional.decode_many(reference["conditional_strings"], reference["predicted"]),
        reference["conditional_decoded"],
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("protocol", ["grpc", "rest"])
def test_unreachable_server_is_a_serving_error(protocol):
    host_port = f"localhost:{free_port()}"
    with pytest.raises(ServingError, match=rf"model server {host_port} \({protocol}\) is unreachable"):
        RemoteModels(host_port, protocol, timeout=10).features(np.zeros((1, 160, 160, 3), np.uint8))


@pytest.mark.parametrize("protocol", ["grpc", "rest"])
def test_server_side_failures_are_serving_errors(protocol, servers, conditional_servers):
    # the conditional servers serve only enhancement, like a stock image serves no enhancement
    with pytest.raises(ServingError, match="failed facenet/serving_default: .*no exported 'facenet'"):
        RemoteModels(conditional_servers[protocol], protocol).features(np.zeros((1, 160, 160, 3), np.uint8))
    with pytest.raises(ServingError, match="multiples of 16"):
        RemoteModels(servers[protocol], protocol).encode_images(np.zeros((1, 40, 40, 3), np.uint8))


def test_remote_models_refuse_bad_arguments_before_sending():
    remote = RemoteModels(f"127.0.0.1:{free_port()}", "rest")
    with pytest.raises(ValueError, match="nosuchmodel/serving_default is not one of the codec's signatures"):
        remote.predict("nosuchmodel", exports.DEFAULT_SIGNATURE, {"crops": np.zeros((1, 4, 4, 3), np.uint8)})
    for kwargs in ({"retries": -1}, {"backoff": -0.5}, {"backoff": float("inf")}):
        with pytest.raises(ValueError, match="need retries >= 0"):
            RemoteModels("127.0.0.1:8501", "rest", **kwargs)
    for timeout in (0, -1, float("inf"), float("nan"), 1e300, 86_401):
        with pytest.raises(ValueError, match="a server timeout is a number of seconds"):
            RemoteModels("127.0.0.1:8501", "rest", timeout=timeout)
    with pytest.raises(ValueError, match="Port"):
        RemoteModels("127.0.0.1:http", "rest")


# -- (d) misbehaving servers: bad replies, the deadline, retries, the reply cap ----------------------------------
CROPS = np.zeros((2, 4, 4, 3), np.uint8)  # the fakes never look at the request: tiny crops, batch of 2
FEATURES = np.array([[0.6, 0.8], [1.0, 0.0]], np.float32)


def http_reply(body: bytes, status: bytes = b"200 OK") -> bytes:
    return b"HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (status, len(body), body)


FEATURES_REPLY = http_reply(json.dumps({"outputs": FEATURES.tolist()}).encode())


def read_request(connection: socket.socket) -> None:
    """Reads one HTTP request, headers and Content-Length body."""

    def received() -> bytes:
        data = connection.recv(1 << 16)
        if not data:
            raise ConnectionError("the client hung up mid-request")
        return data

    data = b""
    while b"\r\n\r\n" not in data:
        data += received()
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"content-length: *(\d+)", head, re.IGNORECASE).group(1))
    while len(body) < length:
        body += received()


class RawServer:
    """TEST DOUBLE of a misbehaving REST model server: a TCP socket on 127.0.0.1 whose ``reply(connection)`` writes
    whatever the test wants after the request was read (one thread per connection). Connections are refused until
    ``listen()``; ``connections`` counts the accepted ones."""

    def __init__(self, reply):
        self.reply, self.connections = reply, 0
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.host_port = f"127.0.0.1:{self.socket.getsockname()[1]}"

    def listen(self) -> None:
        self.socket.listen()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                connection, _ = self.socket.accept()
            except OSError:  # closed
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection):
        with connection:
            try:
                read_request(connection)
                self.reply(connection)
            except OSError:  # the client hung up
                pass

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.socket.shutdown(socket.SHUT_RDWR)  # wakes accept()
        self.socket.close()


@pytest.fixture
def raw_server():
    """``raw_server(reply, listen=True)`` -> a listening (or not yet listening) ``RawServer``."""
    started = []

    def start(reply, listen: bool = True) -> RawServer:
        started.append(RawServer(reply))
        if listen:
            started[-1].listen()
        return started[-1]

    yield start
    for server in started:
        server.close()


def send(data: bytes):
    return lambda connection: connection.sendall(data)


def reset(connection: socket.socket) -> None:
    """Drops the connection with a TCP reset (SO_LINGER 0) instead of a reply."""
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def trickle(connection: socket.socket) -> None:
    """A reply a byte every 0.2 s (each read well within any per-read timeout), for at most 8 s."""
    for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n[]":
        connection.sendall(bytes([byte]))
        time.sleep(0.2)


def wait_for_hang_up(connection: socket.socket) -> None:
    """No reply: holds the connection until the client closes it (at most 10 s)."""
    connection.settimeout(10)
    connection.recv(1)


def serving_error(
    remote: RemoteModels, model: str = exports.FACENET, signature: str = exports.DEFAULT_SIGNATURE, **inputs
) -> str:
    """The message of the ServingError of ``remote.predict``, checked to be one line naming server, model, signature."""
    with pytest.raises(ServingError) as error:
        remote.predict(model, signature, inputs or {"crops": CROPS})
    message = str(error.value)
    assert message.startswith(f"model server {remote.host_port} ({remote.protocol}) ")
    assert f" {model}/{signature}: " in message and "\n" not in message
    return message


@pytest.mark.parametrize(
    "reply, expected",
    [
        (http_reply(b'{"foo": 1}'), r'sent a bad reply to .*: no outputs in \{"foo": 1\}$'),
        (http_reply(b"[]"), r"sent a bad reply to .*: no outputs in \[\]$"),
        (http_reply(b"<html>busy</html>"), "sent a bad reply to .*: not JSON"),
        (http_reply(b'{"outputs": [[0.5, 0.5]]}'), r"output 'features' has shape \(1, 2\), expected \(2, \?\)"),
        (http_reply(b'{"outputs": [["a", "b"], ["c", "d"]]}'), "output 'features' is <U1, expected float32"),
        (http_reply(b'{"outputs": [[1.0], [1.0, 2.0]]}'), "output 'features' is not a tensor"),
        (http_reply(b'{"outputs": {"features": [[1.0], [2.0]]}}'), r"output 'features' has shape \(\), expected"),
        (b"HTTP/1.1 2OO OK\r\n\r\n", "sent a bad reply to .*: BadStatusLine"),
        (b"", "sent a bad reply to .*: RemoteDisconnected"),
        (http_reply(b'{"outputs": [[0.5, 0.5]]}')[:-5], "reply ended 5 bytes short of its Content-Length"),
        (
            http_reply(b"<h1>Bad gateway</h1>\n<p>upstream</p>", b"502 Bad Gateway"),
            "failed .*: HTTP 502: <h1>Bad gateway</h1> <p>upstream</p>$",
        ),
        (reset, "failed .*: connection lost after sending: .*Connection reset by peer"),
    ],
    ids=[
        "foo",
        "list",
        "html",
        "batch",
        "dtype",
        "ragged",
        "named",
        "status-line",
        "closed",
        "short",
        "http-502",
        "reset",
    ],
)
def test_bad_rest_replies_are_one_line_serving_errors_and_not_retried(reply, expected, raw_server):
    server = raw_server(reply if callable(reply) else send(reply))
    assert re.search(expected, serving_error(RemoteModels(server.host_port, "rest", timeout=10)))
    assert server.connections == 1  # the server may have run the request: no retry


def test_rest_wrong_outputs_of_a_two_output_signature(raw_server):
    strings = [{"b64": base64.b64encode(b"abc").decode()}]
    for outputs, expected in [
        ([1, 2], "outputs are a list, not strings_bytes, latent_shape by name"),
        ({"strings_bytes": strings}, "no output 'latent_shape'"),
        ({"strings_bytes": strings, "latent_shape": [10, 300, 1]}, r"has shape \(3,\)"),
        ({"strings_bytes": ["abc"], "latent_shape": [10, 10]}, "is <U3, expected bytes"),
        ({"strings_bytes": [{"b64": 1}], "latent_shape": [10, 10]}, "is not a tensor"),
        ({"strings_bytes": strings, "latent_shape": [10, 1e10]}, "is float64, expected int32"),
        ({"strings_bytes": strings, "latent_shape": [10, 2**40]}, "is int64, expected int32"),
    ]:
        server = raw_server(send(http_reply(json.dumps({"outputs": outputs}).encode())))
        message = serving_error(
            RemoteModels(server.host_port, "rest"),
            exports.ENHANCEMENT,
            exports.ENCODE,
            images=np.zeros((1, 16, 16, 3), np.uint8),
        )
        assert re.search(expected, message), message


def test_rest_content_length_over_the_cap_is_refused_before_reading(raw_server):
    server = raw_server(send(b"HTTP/1.1 200 OK\r\nContent-Length: 100000000000\r\n\r\n{"))
    message = serving_error(RemoteModels(server.host_port, "rest", timeout=10))
    assert message.endswith(f"Content-Length 100000000000 is larger than the {5 << 20}-byte cap of this request")
    assert client.reply_cap(len(CROPS)) == 5 << 20  # 1 MiB + 2 MiB per row


def test_rest_reply_over_the_cap_of_its_request_is_refused_before_parsing(raw_server, monkeypatch):
    """A valid reply far larger than any reply to its request (300 MB took 33 s and 4.1 GB to parse against a 3 s
    deadline) is refused once the bytes read pass the request's cap, before any parsing."""
    body = b'{"outputs": [' + b"0.5, " * (2 << 20) + b"0.5]}"  # 10 MiB of floats for a batch of 2: cap 5 MiB
    monkeypatch.setattr(client, "_JsonReply", None)  # parsing it would fail the test
    for reply in (http_reply(body), b"HTTP/1.1 200 OK\r\n\r\n" + body):  # with and without Content-Length
        server = raw_server(send(reply))
        message = serving_error(RemoteModels(server.host_port, "rest", timeout=30))
        assert re.search(f"(Content-Length {len(body)} is|reply is) larger than the {5 << 20}-byte cap", message)


def test_rest_reply_without_length_is_capped_while_reading(raw_server, monkeypatch):
    monkeypatch.setattr(client, "MAX_REPLY_BYTES", 1 << 20)

    def endless(connection):  # 4 MiB (not endless: today's client would read it all)
        connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n")
        for _ in range(64):
            connection.sendall(b" " * (1 << 16))

    server = raw_server(endless)
    assert serving_error(RemoteModels(server.host_port, "rest", timeout=10)).endswith(
        "reply is larger than the 1048576-byte cap of this request"
    )


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 5000 + b"]" * 5000,
        b'{"outputs": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        b'{"outputs": [' + b"[" * 5000 + b"]" * 5000 + b"]}",
        b'{"a": ' * 5000 + b"1" + b"}" * 5000,
    ],
    ids=["top", "outputs", "row", "objects"],
)
def test_rest_reply_nested_deeply_is_a_one_line_error(body, raw_server):
    server = raw_server(send(http_reply(body)))
    assert re.search(
        r"sent a bad reply to .*: not JSON \(nested", serving_error(RemoteModels(server.host_port, "rest"))
    )


def test_rest_deadline_covers_parsing(raw_server, monkeypatch):
    """A reply within the cap that arrives at once but takes long to parse (16 rows, each parsed in 0.5 s by a slow
    decoder standing in for a slow machine: 8 s in all) fails at the deadline, not when the parse ends."""

    class SlowDecoder(json.JSONDecoder):
        def raw_decode(self, text, pos=0):
            time.sleep(0.5)
            return super().raw_decode(text, pos)

    monkeypatch.setattr(client._JsonReply, "_decoder", SlowDecoder())
    row = "[" + ", ".join(["-1.2345679351710714e-05"] * 128) + "]"
    body = ('{"outputs": [' + ", ".join([row] * 16) + "]}").encode()
    server = raw_server(send(http_reply(body)))
    started = time.monotonic()
    message = serving_error(
        RemoteModels(server.host_port, "rest", timeout=1.5), crops=np.zeros((16, 4, 4, 3), np.uint8)
    )
    assert message.endswith("did not answer facenet/serving_default: no complete reply within 1.5 s")
    assert time.monotonic() - started < 4.5  # slack for a loaded machine; parsing it all takes 8 s


@pytest.mark.parametrize("reply", [trickle, wait_for_hang_up], ids=["trickling", "silent"])
def test_rest_timeout_is_a_deadline_and_not_retried(reply, raw_server):
    server = raw_server(reply)
    started = time.monotonic()
    message = serving_error(RemoteModels(server.host_port, "rest", timeout=1.5))  # retries on by default
    assert 1.5 <= time.monotonic() - started < 4.5  # slack for a loaded machine; the old code took 80 s
    assert message.endswith("did not answer facenet/serving_default: no complete reply within 1.5 s")
    assert server.connections == 1  # sent, so the server may be running it: no retry


def test_rest_retries_a_refused_connection(raw_server, monkeypatch):
    server = raw_server(send(FEATURES_REPLY), listen=False)  # bound, not listening: connections are refused
    connect, attempts = socket.create_connection, []

    def refused_then_listening(address, *args, **kwargs):
        attempts.append(time.monotonic())
        try:
            return connect(address, *args, **kwargs)
        except ConnectionRefusedError:
            server.listen()  # from the second attempt on
            raise

    monkeypatch.setattr(socket, "create_connection", refused_then_listening)
    remote = RemoteModels(server.host_port, "rest", timeout=10, retries=2, backoff=0.2)
    np.testing.assert_array_equal(remote.features(CROPS), FEATURES)
    assert len(attempts) == 2 and attempts[1] - attempts[0] >= 0.2 and server.connections == 1


@pytest.mark.parametrize("protocol", ["grpc", "rest"])
@pytest.mark.parametrize("timeout, retries, backoff, attempts", [(10, 2, 0.1, 3), (1, 5, 0.4, 2), (10, 0, 5, 1)])
def test_refused_connections_are_retried_within_the_deadline(protocol, timeout, retries, backoff, attempts):
    remote = RemoteModels(f"127.0.0.1:{free_port()}", protocol, timeout=timeout, retries=retries, backoff=backoff)
    started = time.monotonic()
    message = serving_error(remote)
    waited = sum(backoff * 2**k for k in range(attempts - 1))  # 0.1 + 0.2; 0.4 (then 0.8 would pass 1 s); 0
    assert waited <= time.monotonic() - started < waited + 2.5
    plural = "s" if attempts > 1 else ""
    # grpcio's own text varies by release ("... refused" or "... refused (111)"); the attempt count is ours
    assert re.search(
        rf"is unreachable for facenet/serving_default: .*refused.* \({attempts} attempt{plural}\)$",
        message,
        re.IGNORECASE,
    ), message


class CannedPredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    """TEST DOUBLE of a misbehaving gRPC PredictionService: every ``Predict`` returns ``outputs``."""

    def __init__(self, outputs: dict):
        self.outputs = outputs

    def Predict(self, request, context):
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        response = predict_pb2.PredictResponse()
        for name, value in self.outputs.items():
            response.outputs[name].CopyFrom(tf.make_tensor_proto(value))
        return response


@contextlib.contextmanager
def grpc_double(outputs: dict, port: int = 0):
    import grpc

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(CannedPredictionService(outputs), server)
    port = server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(None)


@pytest.mark.parametrize(
    "outputs, expected",
    [
        ({}, r"no output 'features' \(outputs: \[\]\)"),
        ({"features": np.array([[1.0, 2.0]], np.float32)}, r"output 'features' has shape \(1, 2\), expected \(2, \?\)"),
        ({"features": np.array([[b"a"], [b"b"]], object)}, "output 'features' is object, expected float32"),
    ],
)
def test_bad_grpc_replies_are_one_line_serving_errors(outputs, expected):
    with grpc_double(outputs) as host_port:
        message = serving_error(RemoteModels(host_port, "grpc", timeout=10))
    assert re.search(rf"sent a bad reply to facenet/serving_default: {expected}", message), message


def test_grpc_connects_again_at_once_after_a_refused_connection():
    host_port = f"127.0.0.1:{free_port()}"
    remote = RemoteModels(host_port, "grpc", timeout=10, retries=0)
    assert "is unreachable" in serving_error(remote)
    with grpc_double({"features": FEATURES}, int(host_port.split(":")[1])):
        # a new connection, not UNAVAILABLE at once from a channel in gRPC's own 1 s reconnect backoff
        np.testing.assert_array_equal(remote.features(CROPS), FEATURES)


# -- sfc --server ----------------------------------------------------------------------------------------------
FACE = "Abel_Pacheco/Abel_Pacheco_0001.jpg"


def sfc(*args) -> None:
    assert cli.run([str(a) for a in args]) == 0


@pytest.fixture(scope="module")
def local_files(tiny_zoo, fixture_lfw_dir, tmp_path_factory):
    """The local path's file for one face (JPEG2000, per-face mode decision: the predictor runs) and its decodes
    at every layer."""
    out = tmp_path_factory.mktemp("local")
    sfc(
        "compress",
        fixture_lfw_dir / FACE,
        out / "face.sfc",
        "--enhancement",
        "jpeg2000",
        "--quality",
        "20",
        "--align",
        "center",
    )
    for layers in ("reconstruction", "full"):
        sfc("decompress", out / "face.sfc", out / f"{layers}.png", "--layers", layers)
    return out


@pytest.mark.parametrize("protocol", ["grpc", "rest"])
def test_cli_server_writes_the_local_bitstream(protocol, servers, local_files, fixture_lfw_dir, tmp_path):
    from PIL import Image

    remote = ["--server", servers[protocol], "--server_protocol", protocol]
    sfc(
        "compress",
        fixture_lfw_dir / FACE,
        tmp_path / "face.sfc",
        "--enhancement",
        "jpeg2000",
        "--quality",
        "20",
        "--align",
        "center",
        *remote,
    )
    assert (tmp_path / "face.sfc").read_bytes() == (local_files / "face.sfc").read_bytes()
    for layers in ("reconstruction", "full"):
        sfc("decompress", local_files / "face.sfc", tmp_path / f"{layers}.png", "--layers", layers, *remote)
        np.testing.assert_array_equal(
            np.asarray(Image.open(tmp_path / f"{layers}.png")), np.asarray(Image.open(local_files / f"{layers}.png"))
        )


def test_cli_server_unreachable_exits_with_one_line(tiny_zoo, fixture_lfw_dir, tmp_path, capsys):
    args = [
        "compress",
        str(fixture_lfw_dir / "AJ_Cook" / "AJ_Cook_0001.jpg"),
        str(tmp_path / "x.sfc"),
        "--align",
        "center",
        "--server",
        f"localhost:{free_port()}",
    ]
    assert cli.run(args) == 1
    err = capsys.readouterr().err
    assert "is unreachable" in err and len(err.strip().splitlines()) == 1


def test_cli_nested_rest_reply_exits_with_one_line(tiny_zoo, fixture_lfw_dir, tmp_path, capsys, raw_server):
    server = raw_server(send(http_reply(b"[" * 5000 + b"]" * 5000)))
    image = str(fixture_lfw_dir / "AJ_Cook" / "AJ_Cook_0001.jpg")
    args = ["compress", image, str(tmp_path / "x.sfc"), "--align", "center", "--server", server.host_port]
    assert cli.run(args + ["--server_protocol", "rest"]) == 1
    err = capsys.readouterr().err
    assert "not JSON (nested" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("timeout", ["inf", "nan", "-1", "0", "1e300"])
def test_cli_refuses_a_server_timeout_out_of_range_before_loading_models(timeout, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli, "_codec", lambda *args: pytest.fail("models were loaded"))
    args = ["compress", str(tmp_path / "x.jpg"), str(tmp_path / "x.sfc"), "--server", "localhost:8501"]
    assert cli.run(args + ["--server_timeout", timeout]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "a server timeout is a number of seconds in (0, 86400]" in err


def test_every_export_records_where_it_came_from(export_dir, checkpoints):
    """assets/provenance.json: each source checkpoint's path and sha256 (its meta.json's), the code version."""
    reconstructor_meta = json.loads((checkpoints["reconstructor"] / "meta.json").read_text())
    for name in exports.MODEL_NAMES:
        record = json.loads((export_dir / name / "1" / "assets" / exports.PROVENANCE_FILE).read_text())
        assert record["code"]["sfc_tf"] and "git_commit" in record["code"]
        if name in (exports.RECONSTRUCTOR, exports.DECODER):
            source = record["sources"]["reconstructor"]
            assert source == {"path": str(checkpoints["reconstructor"]), "sha256": reconstructor_meta["sha256"]}
    decoder = json.loads((export_dir / "decoder" / "1" / "assets" / exports.PROVENANCE_FILE).read_text())
    assert decoder["enhancement_quality"] == 1 and decoder["sources"]["enhancement"]["sha256"]


def test_an_existing_version_is_replaced_only_with_overwrite(checkpoints, tmp_path):
    args = ["--models", "reconstructor", "--reconstructor", checkpoints["reconstructor"]]
    export(tmp_path, *args)
    refused = run_export(tmp_path, *args)
    assert refused.returncode != 0 and "pass --overwrite" in refused.stderr
    replaced = subprocess.run(
        [sys.executable, "train/export.py", "--export_dir", str(tmp_path), "--overwrite", *map(str, args)],
        cwd=REPO,
        env=ENV,
        capture_output=True,
        text=True,
    )
    assert replaced.returncode == 0 and f"replacing {tmp_path / 'reconstructor' / '1'}" in replaced.stdout
