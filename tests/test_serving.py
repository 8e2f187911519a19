"""Deployment: the SavedModels of ``sfc_tf.serving`` against the in-process library, in a fresh process; their
signatures as ``saved_model_cli`` shows them; ``serving_client`` over gRPC and REST against in-process TEST
DOUBLES of TF Serving (no model server runs here); ``sfc --server`` writes the local bytes.

Fast stand-ins (the ``tiny_zoo`` fixture): an untrained reconstructor and coding predictor, untrained 16-filter
learned codecs (the paper's residual BLS2017 and a conditional FaceCodec), FaceNet from the offline converted
weights. ``train/export.py`` (the documented command) exports them once per module, in a subprocess.
"""

import ast
import base64
import http.server
import json
import os
import pathlib
import pickle
import re
import socket
import subprocess
import sys
import threading
from concurrent import futures

import numpy as np
import pytest
from tensorflow_serving.apis import prediction_service_pb2_grpc

from sfc_tf import cli, reconstructor, serving, serving_client
from sfc_tf.serving_client import LocalModels, RemoteModels, ServingError

REPO = pathlib.Path(__file__).resolve().parent.parent
SAVED_MODEL_CLI = pathlib.Path(sys.executable).parent / "saved_model_cli"
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
FEATURE_TOLERANCE = 1e-5   # float features, fresh process vs in-process Keras (max abs); everything else exact
CONDITIONAL_QUALITY = 2

IMAGES = ("DT_UINT8", "(-1, -1, -1, 3)")
# (model, signature) -> inputs, outputs: name -> (dtype, shape) as saved_model_cli prints them (docs/serving.md).
SIGNATURES = {
    ("facenet", "serving_default"): (
        {"crops": ("DT_UINT8", "(-1, 160, 160, 3)")}, {"features": ("DT_FLOAT", "(-1, 512)")}),
    ("reconstructor", "serving_default"): (
        {"features": ("DT_FLOAT", "(-1, 512)")}, {"faces": ("DT_UINT8", "(-1, 160, 160, 3)")}),
    ("predictor", "serving_default"): (
        {"features": ("DT_FLOAT", "(-1, 512)")}, {"faces": ("DT_UINT8", "(-1, 160, 160, 3)")}),
    ("enhancement", "encode"): (
        {"images": IMAGES}, {"strings_bytes": ("DT_STRING", "(-1)"), "latent_shape": ("DT_INT32", "(2)")}),
    ("enhancement", "decode"): (
        {"strings": ("DT_STRING", "(-1)"), "latent_shape": ("DT_INT32", "(2)")}, {"images": IMAGES}),
    ("decoder", "serving_default"): (
        {"features": ("DT_FLOAT", "(-1, 512)"), "strings": ("DT_STRING", "(-1)"),
         "latent_shape": ("DT_INT32", "(2)"), "low": ("DT_FLOAT", "(-1)"), "high": ("DT_FLOAT", "(-1)")},
        {"faces": ("DT_UINT8", "(-1, 160, 160, 3)")}),
}
CONDITIONAL_SIGNATURES = {
    ("enhancement", "encode"): ({"images": IMAGES, "predictions": IMAGES}, SIGNATURES[("enhancement", "encode")][1]),
    ("enhancement", "decode"): ({**SIGNATURES[("enhancement", "decode")][0], "predictions": IMAGES},
                                {"images": ("DT_UINT8", "(-1, 160, 160, 3)")}),      # the FaceCodec's fixed size
}
# tensorflow-compression's range-coding ops: not in stock TensorFlow, so not in the stock tensorflow/serving image.
TFC_ENCODE_OPS = {"CreateRangeEncoder", "EntropyEncodeChannel", "EntropyEncodeFinalize"}
TFC_DECODE_OPS = {"CreateRangeDecoder", "EntropyDecodeChannel", "EntropyDecodeFinalize"}
TFC_OPS = {"facenet": set(), "reconstructor": set(), "predictor": set(),
           "enhancement": TFC_ENCODE_OPS | TFC_DECODE_OPS, "decoder": TFC_DECODE_OPS}


# -- models, exports and what the library computes ------------------------------------------------------------
@pytest.fixture(scope="module")
def checkpoints(tiny_zoo):
    return {"reconstructor": tiny_zoo / "reconstructor", "predictor": tiny_zoo / "predictor",
            "residual": tiny_zoo / "enhancement" / "bls_residual_0",
            "conditional": tiny_zoo / "enhancement" / "face_conditional"}


def export(root: pathlib.Path, *args) -> pathlib.Path:
    subprocess.run([sys.executable, "train/export.py", "--export_dir", str(root), *map(str, args)],
                   cwd=REPO, env=ENV, check=True, capture_output=True)
    return root


@pytest.fixture(scope="module")
def export_dir(checkpoints, tmp_path_factory):
    return export(tmp_path_factory.mktemp("serving") / "models", "--models", ",".join(serving.MODEL_NAMES),
                  "--reconstructor", checkpoints["reconstructor"], "--predictor", checkpoints["predictor"],
                  "--enhancement", checkpoints["residual"])


@pytest.fixture(scope="module")
def conditional_export_dir(checkpoints, tmp_path_factory):
    return export(tmp_path_factory.mktemp("serving_conditional") / "models", "--models", "enhancement",
                  "--enhancement", checkpoints["conditional"], "--enhancement_quality", CONDITIONAL_QUALITY)


@pytest.fixture(scope="module")
def reference(checkpoints, fixture_crops):
    """The in-process library's outputs for the fixture faces (Keras FaceNet, Keras reconstructor and predictor,
    the learned codecs, minmax): what every exported signature must reproduce."""
    from sfc_tf import facenet, residuals
    from sfc_tf.enhancement import layer, learned, minmax, prediction

    features = facenet.FeatureExtractor(allow_download=False)(fixture_crops)
    faces = residuals.reconstruct(reconstructor.load(checkpoints["reconstructor"]), features)
    predicted = residuals.reconstruct(prediction.load_network(checkpoints["predictor"]), features)
    residual_images, spans = layer.normalised_residuals(fixture_crops, faces)
    codec = learned.load_codec(checkpoints["residual"])
    strings = codec.encode_many(residual_images)          # the payload is the range-coded string itself
    decoded = codec.decode_many(strings)
    full = np.stack([minmax.add_residual(face, minmax.denormalise(image, span))
                     for face, image, span in zip(faces, decoded, spans)])
    conditional = learned.load_codec((checkpoints["conditional"], CONDITIONAL_QUALITY - 1))
    conditional_strings = conditional.encode_many(fixture_crops, predicted)
    return {"crops": fixture_crops, "features": features, "faces": faces, "predicted": predicted,
            "residual_images": residual_images, "strings": strings, "latent_shape": np.array([10, 10], np.int32),
            "decoded": decoded, "low": np.array([s.low for s in spans], np.float32),
            "high": np.array([s.high for s in spans], np.float32), "full": full,
            "conditional_strings": conditional_strings,
            "conditional_decoded": conditional.decode_many(conditional_strings, predicted)}


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
    subprocess.run([sys.executable, "-c", FRESH_PROCESS, str(export_dir), str(conditional_export_dir),
                    str(directory / "inputs.pkl"), str(directory / "outputs.pkl")], env=ENV, check=True,
                   capture_output=True)
    return pickle.loads((directory / "outputs.pkl").read_bytes())


def test_exports_reproduce_the_library_in_a_fresh_process(fresh_process_outputs, reference):
    # facenet: float features within FEATURE_TOLERANCE; reconstructor, predictor, both learned codecs' encode
    # (the strings) and decode, and the full decoder: bit-identical
    assert_same_as_reference(fresh_process_outputs, reference, FEATURE_TOLERANCE)


def test_only_the_range_coding_models_need_tensorflow_compression(fresh_process_outputs):
    assert not fresh_process_outputs["tfc_imported"]      # facenet, reconstructor, predictor ran on stock TensorFlow
    assert "Op type not registered 'CreateRange" in fresh_process_outputs["enhancement_without_tfc"]


def test_the_decoder_export_refuses_a_conditional_codec(checkpoints, tmp_path):
    result = subprocess.run([sys.executable, "train/export.py", "--export_dir", str(tmp_path), "--models", "decoder",
                             "--enhancement", str(checkpoints["conditional"])], cwd=REPO, env=ENV,
                            capture_output=True, text=True)
    assert result.returncode != 0 and "residual codecs" in result.stderr
    assert not (tmp_path / "decoder").exists()


# -- (b) saved_model_cli --------------------------------------------------------------------------------------
def parse_saved_model_cli(text: str) -> tuple[dict, set]:
    """``saved_model_cli show --all`` output -> {signature: (inputs, outputs)} and the set of graph ops."""
    signatures = {}
    for block in re.split(r"\nsignature_def\['", text)[1:]:
        name = block.split("'", 1)[0]
        inputs_text, _, outputs_text = block.partition("contains the following output(s):")
        tensors = r"(?:inputs|outputs)\['(\w+)'\] tensor_info:\s*dtype: (\w+)\s*shape: (\([^)]*\))"
        signatures[name] = tuple({n: (dtype, shape) for n, dtype, shape in re.findall(tensors, part)}
                                 for part in (inputs_text, outputs_text))
    ops = re.search(r"contains the following ops: (\{.*\})", text)
    return signatures, ast.literal_eval(ops.group(1))


@pytest.mark.parametrize("model", [*serving.MODEL_NAMES, "conditional enhancement"])
def test_saved_model_cli_lists_the_documented_signatures(model, export_dir, conditional_export_dir):
    table = CONDITIONAL_SIGNATURES if model.startswith("conditional") else SIGNATURES
    root, model = (conditional_export_dir, "enhancement") if model.startswith("conditional") else (export_dir, model)
    shown = subprocess.run([str(SAVED_MODEL_CLI), "show", "--all", "--dir", str(root / model / "1")],
                           env=ENV, capture_output=True, text=True)
    signatures, ops = parse_saved_model_cli(shown.stdout)
    expected = {name: io for (m, name), io in table.items() if m == model}
    assert {name: signatures[name] for name in expected} == expected
    assert set(signatures) == {*expected, "__saved_model_init_op"}
    for name, (_, outputs) in expected.items():
        assert set(outputs) == set(serving.OUTPUTS[(model, name)])
    assert ops & (TFC_ENCODE_OPS | TFC_DECODE_OPS) == TFC_OPS[model]
    if TFC_OPS[model]:   # stock saved_model_cli lists the signatures, then fails on the functions' custom ops
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
        signature = request.model_spec.signature_name or serving.DEFAULT_SIGNATURE
        try:
            function = self.models.signature(model, signature)
        except ServingError as exc:
            context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        expected = set(function.structured_input_signature[1])
        if set(request.inputs) != expected:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"inputs {sorted(request.inputs)}, need {sorted(expected)}")
        try:
            outputs = self.models.predict(model, signature,
                                          {k: tf.make_ndarray(v) for k, v in request.inputs.items()})
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
        model, signature = match.group(1), body.get("signature_name", serving.DEFAULT_SIGNATURE)
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
        if dtype.name == "string":      # 1-d string inputs only (all this codec has)
            return np.array([base64.b64decode(v["b64"]) if isinstance(v, dict) else v.encode() for v in value],
                            dtype=object)
        return np.asarray(value, dtype.as_numpy_dtype)

    @staticmethod
    def _json(name: str, value: np.ndarray):
        if value.dtype == object:
            return [{"b64": base64.b64encode(v).decode()} if name.endswith("_bytes") else v.decode()
                    for v in value.tolist()]
        return value.tolist()           # float32 -> Python float: the decimal reads back to the same float32

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

    options = [("grpc.max_send_message_length", serving_client.MAX_MESSAGE_BYTES),
               ("grpc.max_receive_message_length", serving_client.MAX_MESSAGE_BYTES)]
    grpc_server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), options=options)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        InProcessPredictionServiceDouble(local_models), grpc_server)
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


def run_all(models: serving_client.Models, conditional: serving_client.Models, reference: dict) -> dict:
    """Every signature once, on the reference's inputs."""
    strings, latent_shape = models.encode_images(reference["residual_images"])
    conditional_strings, _ = conditional.encode_images(reference["crops"], reference["predicted"])
    return {"features": models.features(reference["crops"]), "faces": models.reconstruct(reference["features"]),
            "predicted": models.predict_faces(reference["features"]),
            "strings": strings, "latent_shape": latent_shape,
            "decoded": models.decode_images(strings, latent_shape),
            "full": models.decode_full(reference["features"], strings, latent_shape, reference["low"],
                                       reference["high"]),
            "conditional_strings": conditional_strings,
            "conditional_decoded": conditional.decode_images(conditional_strings, latent_shape,
                                                             reference["predicted"])}


@pytest.fixture(scope="module")
def local_results(local_models, conditional_local_models, reference):
    return run_all(local_models, conditional_local_models, reference)


def test_local_models_reproduce_the_library(local_results, reference):
    assert_same_as_reference(local_results, reference, FEATURE_TOLERANCE)


@pytest.mark.parametrize("protocol", ["grpc", "rest"])
def test_remote_models_round_trip_to_the_local_results(protocol, servers, conditional_servers, local_results,
                                                        reference):
    results = run_all(RemoteModels(servers[protocol], protocol),
                      RemoteModels(conditional_servers[protocol], protocol), reference)
    assert_same_as_reference(results, local_results)          # the transport is exact, float features included


def test_served_learned_codecs_write_the_local_payloads(local_models, conditional_local_models, checkpoints,
                                                         reference):
    residual = serving_client.served_learned_codec(local_models, checkpoints["residual"])
    assert residual.encode_many(reference["residual_images"]) == reference["strings"]
    np.testing.assert_array_equal(residual.decode_many(reference["strings"]), reference["decoded"])
    conditional = serving_client.served_learned_codec(conditional_local_models, checkpoints["conditional"],
                                                      CONDITIONAL_QUALITY)
    assert conditional.encode_many(reference["crops"], reference["predicted"]) == reference["conditional_strings"]
    np.testing.assert_array_equal(conditional.decode_many(reference["conditional_strings"], reference["predicted"]),
                                  reference["conditional_decoded"])


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
def test_server_side_failures_are_serving_errors(protocol, servers):
    remote = RemoteModels(servers[protocol], protocol)
    with pytest.raises(ServingError, match="failed nosuchmodel/serving_default"):
        remote.predict("nosuchmodel", serving.DEFAULT_SIGNATURE, {"crops": np.zeros((1, 160, 160, 3), np.uint8)})
    with pytest.raises(ServingError, match="multiples of 16"):
        remote.encode_images(np.zeros((1, 40, 40, 3), np.uint8))


# -- sfc --server ----------------------------------------------------------------------------------------------
FACE = "Abel_Pacheco/Abel_Pacheco_0001.jpg"


def sfc(*args) -> None:
    assert cli.run([str(a) for a in args]) == 0


@pytest.fixture(scope="module")
def local_files(tiny_zoo, fixture_lfw_dir, tmp_path_factory):
    """The local path's file for one face (JPEG2000, per-face mode decision: the predictor runs) and its decodes
    at every layer."""
    out = tmp_path_factory.mktemp("local")
    sfc("compress", fixture_lfw_dir / FACE, out / "face.sfc", "--enhancement", "jpeg2000", "--quality", "20",
        "--align", "center")
    for layers in ("reconstruction", "full"):
        sfc("decompress", out / "face.sfc", out / f"{layers}.png", "--layers", layers)
    return out


@pytest.mark.parametrize("protocol", ["grpc", "rest"])
def test_cli_server_writes_the_local_bitstream(protocol, servers, local_files, fixture_lfw_dir, tmp_path):
    from PIL import Image

    remote = ["--server", servers[protocol], "--server_protocol", protocol]
    sfc("compress", fixture_lfw_dir / FACE, tmp_path / "face.sfc", "--enhancement", "jpeg2000", "--quality", "20",
        "--align", "center", *remote)
    assert (tmp_path / "face.sfc").read_bytes() == (local_files / "face.sfc").read_bytes()
    for layers in ("reconstruction", "full"):
        sfc("decompress", local_files / "face.sfc", tmp_path / f"{layers}.png", "--layers", layers, *remote)
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / f"{layers}.png")),
                                      np.asarray(Image.open(local_files / f"{layers}.png")))


def test_cli_server_unreachable_exits_with_one_line(tiny_zoo, fixture_lfw_dir, tmp_path, capsys):
    args = ["compress", str(fixture_lfw_dir / "AJ_Cook" / "AJ_Cook_0001.jpg"), str(tmp_path / "x.sfc"),
            "--align", "center", "--server", f"localhost:{free_port()}"]
    assert cli.run(args) == 1
    err = capsys.readouterr().err
    assert "is unreachable" in err and len(err.strip().splitlines()) == 1
