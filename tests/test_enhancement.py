"""Enhancement layer: min-max normalisation, the residual codecs (JPEG, JPEG2000, learned Balle 2016),
training resume, decoding determinism across processes."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from sfc_tf import bitstream, metrics
from sfc_tf.bitstream import CONDITIONAL, LEARNED, MEAN_FACE, MMSE, NO_PREDICTION
from sfc_tf.enhancement import layer, minmax
from sfc_tf.enhancement.registry import make_codec
from sfc_tf.errors import BitstreamError

REPO = pathlib.Path(__file__).resolve().parent.parent


def smooth_residual(seed: int = 0, scale: float = 30.0) -> np.ndarray:
    """A residual-like float image: low-frequency structure plus mild noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:160, 0:160] / 160.0
    base = np.stack([np.sin(6 * xx + c) * np.cos(4 * yy - c) for c in range(3)], -1)
    return (scale * base + rng.normal(0, 2, base.shape)).astype(np.float32)


def test_minmax_round_trip_is_within_one_quantization_step():
    residual = np.random.default_rng(0).normal(0, 20, (160, 160, 3)).astype(np.float32)
    image, span = minmax.normalise(residual)
    assert span.low <= residual.min() and span.high >= residual.max()
    step = (span.high - span.low) / 255
    assert np.abs(minmax.denormalise(image, span) - residual).max() <= step / 2 + 1e-4
    assert minmax.MinMax.from_bytes(span.to_bytes()) == span and len(span.to_bytes()) == bitstream.SPAN_BYTES


@pytest.mark.parametrize("value", [0.0, -255.0, 255.0, 7.3])
def test_constant_residual(value):
    image, span = minmax.normalise(np.full((16, 16, 3), value, np.float32))
    if float(np.float16(value)) == value:  # integer residuals (the codec's case) are exact
        assert (image == 0).all() and span.low == span.high == value
    np.testing.assert_allclose(minmax.denormalise(image, span), value, atol=abs(value) * 1e-3 + 1e-6)


def test_extreme_residuals_and_clipping():
    residual = np.zeros((8, 8, 3), np.float32)
    residual[0, 0], residual[1, 1] = -255, 255
    image, span = minmax.normalise(residual)
    assert span.low == -255 and span.high == 255
    recon = np.full((8, 8, 3), 128, np.uint8)
    out = minmax.add_residual(recon, minmax.denormalise(image, span))
    assert out.dtype == np.uint8 and out[0, 0, 0] == 0 and out[1, 1, 0] == 255


def test_bad_ranges_raise():
    with pytest.raises(BitstreamError):
        minmax.MinMax.from_bytes(b"\x00")
    with pytest.raises(BitstreamError):
        minmax.MinMax.from_bytes(minmax.MinMax(5.0, -5.0).to_bytes())
    with pytest.raises(BitstreamError):
        minmax.MinMax.from_bytes(b"\x7c\x00\x00\x00")  # +inf
    with pytest.raises(ValueError):
        minmax.normalise(np.array([[[np.nan, 0, 0]]], np.float32))


def coded_round_trip(codec, mode, crops, predictions):
    coded = layer.encode(codec, mode, crops, predictions)
    return coded, layer.decode(codec, mode, coded, predictions)


@pytest.mark.parametrize(
    "name,coarse,fine",
    [
        ("jpeg", 10, 95),
        ("jpeg-file", 10, 95),
        ("jpeg2000", 80, 4),
        ("avif", 10, 90),
        ("jpegxl", 10, 95),
        ("webp", 10, 95),
    ],
)
def test_residual_coding_round_trip(name, coarse, fine, fixture_crops):
    """x - p coded at two rates: more bits, closer to x; the range covers the residual."""
    crops, predictions = fixture_crops[:2], np.full((2, 160, 160, 3), 128, np.uint8)
    (small, low), (large, high) = (
        coded_round_trip(make_codec(name, q), MEAN_FACE, crops, predictions) for q in (coarse, fine)
    )
    assert sum(len(c.payload) for c in small) < sum(len(c.payload) for c in large)
    residual = layer.residual(crops, predictions)
    assert all(c.span.low <= r.min() and c.span.high >= r.max() for c, r in zip(large, residual))
    assert metrics.psnr(crops, high).min() > metrics.psnr(crops, low).max() > 20
    assert high.dtype == np.uint8 and high.shape == crops.shape


@pytest.mark.parametrize("name,parameter", [("jpeg", 50), ("jpeg2000", 20), ("avif", 50), ("jpegxl", 50), ("webp", 50)])
def test_no_prediction_codes_the_face_itself(name, parameter, fixture_crops):
    codec = make_codec(name, parameter)
    coded, decoded = coded_round_trip(codec, NO_PREDICTION, fixture_crops[:2], None)
    assert all(c.span is None for c in coded)
    np.testing.assert_array_equal(decoded, codec.decode_many(codec.encode_many(fixture_crops[:2])))


@pytest.mark.parametrize("name,parameter", [("jpeg", 50), ("jpeg2000", 20), ("avif", 50), ("jpegxl", 50), ("webp", 50)])
def test_constant_residual_and_damaged_payloads(name, parameter, fixture_crops):
    codec = make_codec(name, parameter)
    predictions = np.clip(fixture_crops[:1].astype(int) + 3, 0, 255).astype(np.uint8)
    _, decoded = coded_round_trip(
        codec, MEAN_FACE, np.clip(predictions.astype(int) - 3, 0, 255).astype(np.uint8), predictions
    )
    np.testing.assert_array_equal(decoded, np.clip(predictions.astype(int) - 3, 0, 255))
    payload = codec.encode(fixture_crops[0])
    damaged = [b"", payload[:4]]
    if name in ("jpeg", "jpeg2000"):  # AV1, VP8 and JPEG XL data of zeros can be valid: no checksum inside
        damaged += [payload[:3] + b"\x00" * 40, payload[:4] + b"\x00" * 64]
    for data in damaged:
        with pytest.raises(BitstreamError):
            codec.decode(data)
    with pytest.raises(ValueError):
        codec.encode(fixture_crops[0, :150])


def test_payloads_declaring_another_geometry_are_refused_before_decoding():
    """A JPEG file or JPEG2000 payload of a 320x320 image is refused by its header, not decoded (the headerless
    codecs' payloads declare no geometry: the decoder rebuilds the crop's)."""
    big = np.zeros((320, 320, 3), np.uint8)
    for name, parameter in (("jpeg-file", 50), ("jpeg2000", 20)):
        payload = make_codec(name, parameter, shape=big.shape).encode(big)
        with pytest.raises(BitstreamError, match="declares 320x320x3"):
            make_codec(name, parameter).decode(payload)


TINY_FILTERS = 16  # the shipped architecture has 128; a narrow untrained model keeps the tests fast


def test_default_architecture_has_128_filters():
    from sfc_tf.enhancement import learned

    model = learned.BLS2017(0.01)
    assert model.num_filters == 128
    assert [layer.kernel.shape[-1] for layer in model.analysis_transform.layers[1:]] == [128, 128, 128]


@pytest.fixture(scope="module")
def tiny_learned_checkpoint(tmp_path_factory):
    from sfc_tf.enhancement import learned

    directory = tmp_path_factory.mktemp("learned")
    learned.save(learned.BLS2017(0.01, TINY_FILTERS), directory, input="test")
    return directory


@pytest.fixture(scope="module")
def tiny_codec(tiny_learned_checkpoint):
    return make_codec("learned", tiny_learned_checkpoint)


def _weights(directory):
    import tensorflow as tf

    reader = tf.train.load_checkpoint(str(directory / "weights"))
    return {
        name: reader.get_tensor(name)
        for name in reader.get_variable_to_shape_map()
        if name != "_CHECKPOINTABLE_OBJECT_GRAPH"
    }


def _same_weights(first, second) -> bool:
    a, b = _weights(first), _weights(second)
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_training_warm_starts_and_resumes(tiny_learned_checkpoint, fixture_crops, tmp_path):
    from sfc_tf.enhancement import training

    config = training.EnhancementTrainConfig(
        str(tmp_path),
        0.01,
        epochs=1,
        batch_size=2,
        patch_size=32,
        num_filters=TINY_FILTERS,
        learning_rate=0.0,
        init_from=str(tiny_learned_checkpoint),
        verbose=0,
    )
    first = training.train(config, fixture_crops, {"input": "test"})
    assert first["steps"] == 3 and first["epochs_done"] == 1 and first["input"] == "test"
    assert _same_weights(tmp_path, tiny_learned_checkpoint)  # learning rate 0: exactly the warm start
    warm_meta = json.loads((tiny_learned_checkpoint / "meta.json").read_text())
    assert first["warm_start"]["sha256"] == warm_meta["sha256"]  # the warm start's history travels along
    config.epochs, config.learning_rate = 2, 1e-2
    second = training.train(config, fixture_crops, {"input": "test"})
    assert second["steps"] == 6 and second["wall_time_s"] >= first["wall_time_s"]
    assert second["warm_start"] == first["warm_start"]  # recorded again when resuming from train_state
    assert second["steps_this_session"] == 3 and second["epochs_this_session"] == 1
    assert not _same_weights(tmp_path, tiny_learned_checkpoint)
    assert set(second["final_metrics"]) == {"loss", "bpp", "mse"}
    with pytest.raises(ValueError, match="already finished: 6 steps"):
        training.train(config, fixture_crops, {"input": "test"})  # a finished run is refused, not re-saved
    with pytest.raises(ValueError):
        training.patches_dataset(fixture_crops, 2, 40)


def test_learned_round_trip_and_rate_estimate(tiny_codec, fixture_crops):
    assert tiny_codec.codec_id == LEARNED
    _, decoded_residual = coded_round_trip(tiny_codec, MMSE, fixture_crops[:2], fixture_crops[2:4])
    assert decoded_residual.shape == (2, 160, 160, 3)
    payloads = tiny_codec.encode_many(fixture_crops[:2])
    decoded = tiny_codec.decode_many(payloads)
    assert decoded.shape == (2, 160, 160, 3) and decoded.dtype == np.uint8
    np.testing.assert_array_equal(tiny_codec.decode(payloads[1]), decoded[1])
    estimate = tiny_codec.coder.model.estimated_bits(fixture_crops[:2])
    coded = np.array([8 * len(p) for p in payloads])
    assert np.all(np.abs(coded - estimate) <= 0.03 * estimate + 64)


def test_learned_damaged_payloads_raise_or_decode_to_a_face(tiny_codec, fixture_crops):
    """A range-coded latent has no check of its own (the container's CRC-32 has): damage either raises
    BitstreamError or decodes to some face of the right shape, never anything else."""
    payload = tiny_codec.encode(fixture_crops[0])
    with pytest.raises(BitstreamError):
        tiny_codec.decode_many([payload, b""])
    for damaged in (payload[:1], payload[: len(payload) // 2], bytes(b ^ 0x5A for b in payload)):
        try:
            image = tiny_codec.decode(damaged)
        except BitstreamError:
            continue
        assert image.shape == (160, 160, 3) and image.dtype == np.uint8
    with pytest.raises(ValueError):
        tiny_codec.encode(fixture_crops[0, :150])


def test_learned_checkpoint_tampering_is_detected(tiny_learned_checkpoint, tmp_path):
    import shutil

    from sfc_tf.enhancement import learned
    from sfc_tf.errors import WeightsError

    copy = tmp_path / "copy"
    shutil.copytree(tiny_learned_checkpoint, copy)
    with open(copy / "weights.index", "ab") as handle:
        handle.write(b"x")
    with pytest.raises(WeightsError):
        learned.load_model(copy)
    with pytest.raises(WeightsError):
        learned.load_model(tmp_path / "missing")


def test_learned_checkpoints_load_their_stored_coding_tables(
    tiny_learned_checkpoint, fixture_crops, tmp_path, monkeypatch
):
    """Loading builds the range coder from tables.npz without recomputing the tables from the prior (seconds per
    prior); a damaged tables file is refused; a checkpoint saved before the file existed computes the same tables."""
    import json
    import shutil

    import tensorflow_compression as tfc

    from sfc_tf.enhancement import coding_tables, learned
    from sfc_tf.errors import WeightsError

    reference = learned.load_codec(tiny_learned_checkpoint)
    payloads = reference.encode_many(fixture_crops[:2])
    stored, legacy, damaged = (tmp_path / name for name in ("stored", "legacy", "damaged"))
    for copy in (stored, legacy, damaged):
        shutil.copytree(tiny_learned_checkpoint, copy)
    meta = json.loads((legacy / "meta.json").read_text())
    del meta["tables_sha256"]
    (legacy / "meta.json").write_text(json.dumps(meta))
    (legacy / coding_tables.TABLES_FILE).unlink()
    tables = dict(np.load(damaged / coding_tables.TABLES_FILE))
    tables["cdf_0"][5] += 1
    np.savez(damaged / coding_tables.TABLES_FILE, **tables)

    def no_table_building(*args, **kwargs):
        raise AssertionError("the range-coding tables were rebuilt from the prior")

    with monkeypatch.context() as patch:
        patch.setattr(tfc.ContinuousBatchedEntropyModel, "_build_tables", no_table_building)
        codec = learned.load_codec(stored)
    assert codec.encode_many(fixture_crops[:2]) == payloads
    np.testing.assert_array_equal(codec.decode_many(payloads), reference.decode_many(payloads))
    np.testing.assert_array_equal(learned.load_codec(legacy).decode_many(payloads), reference.decode_many(payloads))
    with pytest.raises(WeightsError, match="tables.npz"):
        learned.load_model(damaged)


@pytest.fixture(scope="module")
def tiny_conditional(tmp_path_factory):
    """A narrow, untrained two-rate conditional FaceCodec, saved and loaded like a shipped one."""
    from sfc_tf.enhancement import face_codec, learned

    directory = tmp_path_factory.mktemp("conditional")
    learned.save(
        face_codec.FaceCodec([0.001, 0.01], conditional=True, prior="position", num_filters=TINY_FILTERS),
        directory,
        input="test",
    )
    return directory


def test_conditional_codec_round_trip(tiny_conditional, fixture_crops):
    codecs = [make_codec("conditional", (tiny_conditional, rate)) for rate in (0, 1)]
    assert all(c.codec_id == CONDITIONAL and c.conditional for c in codecs)
    predictions = np.clip(fixture_crops[::-1].astype(int) + 5, 0, 255).astype(np.uint8)
    for codec in codecs:
        coded, decoded = coded_round_trip(codec, MMSE, fixture_crops, predictions)
        assert all(c.span is None for c in coded) and decoded.shape == fixture_crops.shape
        other = codec.decode_many([c.payload for c in coded], fixture_crops)  # another prediction: another face
        assert not np.array_equal(other, decoded)
    with pytest.raises(ValueError):
        codecs[0].encode_many(fixture_crops, None)
    with pytest.raises(ValueError):
        make_codec("conditional", (tiny_conditional, 2))


@pytest.mark.parametrize("conditional,prior", [(False, "channel"), (True, "channel"), (True, "position")])
def test_face_codec_warm_started_from_bls2017_codes_like_it(conditional, prior, fixture_crops):
    import tensorflow as tf

    from sfc_tf.enhancement import face_codec, learned

    tf.random.set_seed(1)
    source = learned.BLS2017(0.01, TINY_FILTERS)
    for variable in source.trainable_variables:  # away from the initialisation (GDN starts as identity)
        variable.assign_add(tf.random.normal(variable.shape, stddev=0.01))
    model = face_codec.FaceCodec([0.01, 0.03], conditional, prior, TINY_FILTERS)
    face_codec.warm_start(model, source)
    predictions = fixture_crops[::-1].copy()
    expected = [float(v) for v in source(fixture_crops)]
    for rate in (0, 1):
        loss, bpp, mse = (float(v) for v in model(fixture_crops, predictions, rate))
        np.testing.assert_allclose([bpp, mse], expected[1:], rtol=1e-5)
    source.enable_coding()
    model.enable_coding()
    np.testing.assert_array_equal(
        model.compress(fixture_crops, predictions, 0).numpy(), source.compress(fixture_crops).numpy()
    )
    with pytest.raises(ValueError):
        face_codec.warm_start(face_codec.FaceCodec([0.01], conditional, prior, 2 * TINY_FILTERS), source)


def test_face_codec_warm_starts_from_a_face_codec_of_its_configuration_only(tiny_conditional, fixture_crops):
    """A fine-tune: every weight of the source FaceCodec copied (it codes as the source does); another
    configuration is refused."""
    from sfc_tf.enhancement import face_codec, learned, training

    config = {"lmbdas": [0.001, 0.01], "conditional": True, "prior": "position", "num_filters": TINY_FILTERS}
    model = face_codec.FaceCodec(**config)
    training._warm_start_face_codec(model, str(tiny_conditional))
    source = learned.load_model(tiny_conditional)[0]
    predictions = fixture_crops[::-1].copy()
    for rate in (0, 1):
        np.testing.assert_allclose(model(fixture_crops, predictions, rate), source(fixture_crops, predictions, rate))
    with pytest.raises(ValueError, match="another configuration"):
        training._warm_start_face_codec(face_codec.FaceCodec(**{**config, "prior": "channel"}), str(tiny_conditional))


DECODE_SCRIPT = """
import hashlib, sys
import numpy as np
from sfc_tf.enhancement.registry import make_codec
rate = int(sys.argv[3])
codec = make_codec("learned", sys.argv[1]) if rate < 0 else make_codec("conditional", (sys.argv[1], rate))
payloads = [bytes.fromhex(line) for line in open(sys.argv[2]).read().split()]
predictions = np.load(sys.argv[2] + ".npy") if rate >= 0 else None
decoded = codec.decode_many(payloads) if rate < 0 else codec.decode_many(payloads, predictions)
print(hashlib.sha256(decoded.tobytes()).hexdigest())
"""


@pytest.mark.parametrize("conditional", [False, True])
def test_learned_decoding_is_bit_identical_across_processes(
    conditional, tiny_learned_checkpoint, tiny_codec, tiny_conditional, fixture_crops, tmp_path
):
    import hashlib

    codec = make_codec("conditional", (tiny_conditional, 1)) if conditional else tiny_codec
    predictions = fixture_crops[::-1].copy() if conditional else None
    payloads = codec.encode_many(fixture_crops, predictions) if conditional else codec.encode_many(fixture_crops)
    (tmp_path / "payloads.txt").write_text("\n".join(p.hex() for p in payloads))
    if conditional:
        np.save(tmp_path / "payloads.txt.npy", predictions)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    command = [
        sys.executable,
        "-c",
        DECODE_SCRIPT,
        str(tiny_conditional if conditional else tiny_learned_checkpoint),
        str(tmp_path / "payloads.txt"),
        "1" if conditional else "-1",
    ]
    workers = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    digests = {worker.communicate(timeout=300)[0].strip() for worker in workers}
    assert all(worker.returncode == 0 for worker in workers)
    local = codec.decode_many(payloads, predictions) if conditional else codec.decode_many(payloads)
    digests.add(hashlib.sha256(local.tobytes()).hexdigest())
    assert len(digests) == 1


def test_face_codec_batches_keep_image_and_prediction_together():
    from sfc_tf.enhancement import training

    images = np.arange(10 * 4 * 4 * 3, dtype=np.int64).reshape(10, 4, 4, 3).astype(np.uint8)
    predictions = 255 - images
    batches = list(training.face_codec_dataset(images, predictions, batch_size=4, seed=1).take(6).as_numpy_iterator())
    assert all(x.shape == (4, 4, 4, 3) and x.dtype == np.uint8 for x, _ in batches)
    np.testing.assert_array_equal(
        np.concatenate([p for _, p in batches]), 255 - np.concatenate([x for x, _ in batches])
    )  # mirrored together
    seen = np.concatenate([x for x, _ in batches])
    mirrored = [any(np.array_equal(x, image[:, ::-1]) for image in images) for x in seen]
    assert 0 < sum(mirrored) < len(seen)  # some faces mirrored, not all
    with pytest.raises(ValueError):
        training.face_codec_dataset(images, predictions[:5], batch_size=4)


def test_face_codec_patches_cut_the_same_square_of_image_and_prediction():
    from sfc_tf.enhancement import training

    images = np.random.default_rng(0).integers(0, 255, (6, 48, 48, 3), dtype=np.uint8)
    predictions = 255 - images
    dataset = training.face_codec_dataset(images, predictions, batch_size=3, seed=2, patch_size=16)
    batches = list(dataset.take(8).as_numpy_iterator())
    assert all(x.shape == p.shape == (3, 16, 16, 3) for x, p in batches)
    np.testing.assert_array_equal(
        np.concatenate([p for _, p in batches]), 255 - np.concatenate([x for x, _ in batches])
    )
    corners = set()
    for x in np.concatenate([x for x, _ in batches]):
        found = [
            (r, c)
            for image in images
            for view in (image, image[:, ::-1])
            for r in range(33)
            for c in range(33)
            if np.array_equal(view[r : r + 16, c : c + 16], x)
        ]
        assert found  # a square of a face (or of its mirror), never a blend of two
        corners.add(found[0])
    assert len(corners) > 1  # at different places
    for bad in (20, 64):
        with pytest.raises(ValueError, match="patch size"):
            training.face_codec_dataset(images, predictions, batch_size=3, patch_size=bad)
    with pytest.raises(ValueError, match="positional prior"):
        training.build_face_codec(training.FaceCodecTrainConfig("unused", prior="position", patch_size=64))


@pytest.mark.parametrize("kind", ["bls2017", "conditional"])
def test_float16_storage_round_trips_the_rounded_model(kind, tiny_learned_checkpoint, tiny_conditional, tmp_path):
    import tensorflow as tf

    from sfc_tf.enhancement import learned

    source = tiny_learned_checkpoint if kind == "bls2017" else tiny_conditional
    tf.random.set_seed(2)
    model = learned.restore_weights(learned.build(learned.load_model(source)[1]), source)
    for variable in model.trainable_variables:  # values float16 cannot hold exactly
        variable.assign_add(tf.random.normal(variable.shape, stddev=1e-3))
    meta = learned.save(model, tmp_path / "half", weights_dtype="float16", input="test")
    assert meta["files"] == [learned.HALF_WEIGHTS_FILE] and meta["weights_dtype"] == "float16"
    loaded, loaded_meta = learned.load_model(tmp_path / "half")
    assert loaded_meta["sha256"] == meta["sha256"]
    stored, restored = learned._variables(model), learned._variables(loaded)
    assert stored.keys() == restored.keys()
    for key, variable in stored.items():  # the saved model was rounded in place: loading gives it back exactly
        np.testing.assert_array_equal(restored[key].numpy(), variable.numpy())
        np.testing.assert_array_equal(variable.numpy(), variable.numpy().astype(np.float16).astype(np.float32))
    assert learned.table_sha256(loaded) == meta["cdf_table_sha256"]
    learned.save(loaded, tmp_path / "half", weights_dtype="float32", input="test")  # saved again as float32
    assert not (tmp_path / "half" / learned.HALF_WEIGHTS_FILE).exists()


def test_convert_to_float16_halves_the_weights_and_refuses_to_overwrite(tiny_conditional, fixture_crops, tmp_path):
    from sfc_tf.enhancement import learned

    target = tmp_path / "half"
    meta = learned.convert(tiny_conditional, target, "float16")
    source_meta = learned.load_model(tiny_conditional)[1]
    assert meta["converted_from"] == {"weights_dtype": "float32", "sha256": source_meta["sha256"]}
    assert meta["lmbdas"] == source_meta["lmbdas"] and meta["input"] == "test"
    source_bytes = sum((tiny_conditional / name).stat().st_size for name in source_meta["files"])
    assert (target / learned.HALF_WEIGHTS_FILE).stat().st_size < 0.6 * source_bytes
    codec = make_codec("conditional", (target, 1))
    predictions = fixture_crops[::-1].copy()
    decoded = codec.decode_many(codec.encode_many(fixture_crops, predictions), predictions)
    assert decoded.shape == fixture_crops.shape
    with pytest.raises(FileExistsError):
        learned.convert(tiny_conditional, target, "float16")
    with pytest.raises(ValueError, match="float16"):
        learned.convert(tiny_conditional, tmp_path / "other", "int8")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["half"]  # nothing half-written


def test_a_stray_float16_file_beside_float32_weights_is_never_loaded(tiny_learned_checkpoint, tmp_path):
    """The storage a folder's meta.json lists (and hashes) is the one loaded, whatever else lies beside it."""
    import shutil

    import tensorflow as tf

    from sfc_tf.enhancement import learned

    other = learned.restore_weights(
        learned.build(learned.load_model(tiny_learned_checkpoint)[1]), tiny_learned_checkpoint
    )
    for variable in other.trainable_variables:
        variable.assign_add(tf.ones_like(variable))
    learned.save(other, tmp_path / "other", weights_dtype="float16", input="test")
    folder = tmp_path / "float32"
    shutil.copytree(tiny_learned_checkpoint, folder)
    shutil.copy(tmp_path / "other" / learned.HALF_WEIGHTS_FILE, folder)
    loaded = learned.load_model(folder)[0]
    reference = learned.load_model(tiny_learned_checkpoint)[0]
    for a, b in zip(learned._variables(loaded).values(), learned._variables(reference).values()):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_the_convert_binary_says_why_in_one_line(tiny_conditional, tmp_path):
    args = ["train/convert_weights.py", "--checkpoint", str(tiny_conditional), "--output", str(tiny_conditional)]
    result = subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=REPO)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("convert_weights:")


def test_float16_weights_of_another_architecture_are_refused(tiny_conditional, tmp_path):
    from sfc_tf.enhancement import face_codec, learned
    from sfc_tf.errors import WeightsError

    learned.convert(tiny_conditional, tmp_path / "half", "float16")
    other = face_codec.FaceCodec([0.001, 0.01], conditional=False, prior="position", num_filters=TINY_FILTERS)
    with pytest.raises(WeightsError, match="other variables"):
        learned.restore_weights(other, tmp_path / "half")


def test_a_warm_start_is_checked_before_the_first_update_and_at_the_end(fixture_crops, tmp_path, capsys):
    """With no held-out faces (--validation_fraction 0) the check takes training faces and says so; meta.json
    keeps the loss before the first update and at the end, and whether the run ended worse. TensorBoard gets the
    training scalars."""
    from sfc_tf.enhancement import learned, training

    start = tmp_path / "end_to_end"
    learned.save(learned.BLS2017(0.01, TINY_FILTERS), start, input="original")

    config = training.FaceCodecTrainConfig(
        str(tmp_path / "run"),
        lmbdas=(0.01,),
        steps=2,
        batch_size=2,
        num_filters=TINY_FILTERS,
        init_from=str(start),
        log_dir=str(tmp_path / "tensorboard"),
        verbose=0,
    )
    meta = training.train_face_codec(
        config, lambda seed: training.face_codec_dataset(fixture_crops, None, 2, seed), len(fixture_crops), {}
    )
    check = meta["warm_start_check"]
    assert check["faces"] == "training (none held out)" and check["images"] == training.WARM_START_CHECK_IMAGES
    assert set(check["before"]) == set(check["after"]) == {"loss", "bpp", "mse"}
    assert check["worse"] == (check["after"]["loss"] > check["before"]["loss"])
    line = [x for x in capsys.readouterr().out.splitlines() if x.startswith("warm start check")]
    assert len(line) == 1 and "before the first update" in line[0] and "at the end" in line[0]
    assert list((tmp_path / "tensorboard").rglob("events.out.tfevents.*"))  # the training scalars


def test_a_checkpoint_spec_names_a_folder_or_a_rate_of_one():
    from sfc_tf.enhancement import learned

    assert learned.checkpoint_spec("runs/hp") == "runs/hp"
    assert learned.checkpoint_spec("runs/hp:14") == ("runs/hp", 14)
    assert learned.checkpoint_spec("C:/runs/hp") == "C:/runs/hp"  # a colon that names no rate stays in the path
    assert learned.checkpoint_spec("C:/runs/hp:3") == ("C:/runs/hp", 3)
