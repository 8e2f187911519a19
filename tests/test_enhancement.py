"""Enhancement layer: min-max normalisation, the residual codecs (JPEG, JPEG2000, learned Balle 2016),
training resume, decoding determinism across processes."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from sfc_tf import metrics
from sfc_tf.enhancement import LEARNED, make_residual_codec, minmax
from sfc_tf.errors import BitstreamError


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
    assert minmax.MinMax.from_bytes(span.to_bytes()) == span and len(span.to_bytes()) == minmax.NUM_BYTES


@pytest.mark.parametrize("value", [0.0, -255.0, 255.0, 7.3])
def test_constant_residual(value):
    image, span = minmax.normalise(np.full((16, 16, 3), value, np.float32))
    if float(np.float16(value)) == value:        # integer residuals (the codec's case) are exact
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
        minmax.MinMax.from_bytes(b"\x7c\x00\x00\x00")   # +inf
    with pytest.raises(ValueError):
        minmax.normalise(np.array([[[np.nan, 0, 0]]], np.float32))


@pytest.mark.parametrize("name,coarse,fine", [("jpeg", 10, 95), ("jpeg2000", 80, 4)])
def test_residual_codec_round_trip(name, coarse, fine):
    residual = smooth_residual()
    low, high = make_residual_codec(name, coarse), make_residual_codec(name, fine)
    small, large = low.encode(residual), high.encode(residual)
    assert len(small) < len(large)
    span, payload = high.split(large)
    assert span.low <= residual.min() and span.high >= residual.max() and len(payload) == len(large) - 4
    decoded = high.decode(large)
    assert decoded.shape == residual.shape and decoded.dtype == np.float32
    peak = float(residual.max() - residual.min())
    assert metrics.psnr(residual, decoded, peak) > metrics.psnr(residual, low.decode(small), peak) > 20
    recon = np.full(residual.shape, 128, np.uint8)
    final = minmax.add_residual(recon, decoded)
    assert final.dtype == np.uint8 and np.abs(final.astype(np.float32) - (128 + residual)).mean() < 2


@pytest.mark.parametrize("name,parameter", [("jpeg", 50), ("jpeg2000", 20)])
def test_residual_codec_constant_and_damaged(name, parameter):
    codec = make_residual_codec(name, parameter)
    np.testing.assert_array_equal(codec.decode(codec.encode(np.full((160, 160, 3), -3.0, np.float32))), -3.0)
    record = codec.encode(smooth_residual(1))
    for damaged in (b"", record[:4], record[:3] + b"\x00" * 40, b"\x7c\x00\x00\x00" + record[4:],
                    record[:4] + b"\x00" * 64):
        with pytest.raises(BitstreamError):
            codec.decode(damaged)
    with pytest.raises(ValueError):
        codec.encode(np.full((160, 160, 3), np.inf, np.float32))


TINY_FILTERS = 16      # the shipped architecture has 128; a narrow untrained model keeps the tests fast


def test_default_architecture_has_128_filters():
    from sfc_tf.enhancement import learned

    model = learned.BLS2017(0.01)
    assert model.num_filters == learned.NUM_FILTERS == 128
    assert model.analysis_transform.layers[-1].kernel.shape[-1] == 128


@pytest.fixture(scope="module")
def tiny_learned_checkpoint(tmp_path_factory):
    from sfc_tf.enhancement import learned

    directory = tmp_path_factory.mktemp("learned")
    learned.save(learned.BLS2017(0.01, TINY_FILTERS), directory, input="test")
    return directory


@pytest.fixture(scope="module")
def tiny_codec(tiny_learned_checkpoint):
    from sfc_tf.enhancement import make_codec

    return make_codec("learned", tiny_learned_checkpoint)


def _weights(directory):
    import tensorflow as tf

    reader = tf.train.load_checkpoint(str(directory / "weights"))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if name != "_CHECKPOINTABLE_OBJECT_GRAPH"}


def _same_weights(first, second) -> bool:
    a, b = _weights(first), _weights(second)
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_training_warm_starts_and_resumes(tiny_learned_checkpoint, fixture_crops, tmp_path):
    from sfc_tf.enhancement import training

    config = training.EnhancementTrainConfig(str(tmp_path), 0.01, epochs=1, batch_size=2, patch_size=32,
                                             num_filters=TINY_FILTERS, learning_rate=0.0,
                                             init_from=str(tiny_learned_checkpoint), verbose=0)
    first = training.train(config, fixture_crops, {"input": "test"})
    assert first["steps"] == 3 and first["epochs_done"] == 1 and first["input"] == "test"
    assert _same_weights(tmp_path, tiny_learned_checkpoint)       # learning rate 0: exactly the warm start
    warm_meta = json.loads((tiny_learned_checkpoint / "meta.json").read_text())
    assert first["warm_start"]["sha256"] == warm_meta["sha256"]  # the warm start's history travels along
    config.epochs, config.learning_rate = 2, 1e-2
    second = training.train(config, fixture_crops, {"input": "test"})
    assert second["steps"] == 6 and second["wall_time_s"] >= first["wall_time_s"]
    assert second["warm_start"] == first["warm_start"]             # kept when resuming from train_state
    assert not _same_weights(tmp_path, tiny_learned_checkpoint)
    assert set(second["final_metrics"]) == {"loss", "bpp", "mse"}
    with pytest.raises(ValueError):
        training.patches_dataset(fixture_crops, 2, 40)


def test_learned_round_trip_and_rate_estimate(tiny_codec, fixture_crops):
    from sfc_tf.enhancement import ResidualCodec

    assert tiny_codec.codec_id == LEARNED
    residual_codec = ResidualCodec(tiny_codec)
    residual = smooth_residual(2)
    decoded_residual = residual_codec.decode(residual_codec.encode(residual))
    assert decoded_residual.shape == residual.shape and np.isfinite(decoded_residual).all()
    records = tiny_codec.encode_many(fixture_crops[:2])
    decoded = tiny_codec.decode_many(records)
    assert decoded.shape == (2, 160, 160, 3) and decoded.dtype == np.uint8
    np.testing.assert_array_equal(tiny_codec.decode(records[1]), decoded[1])
    estimate = tiny_codec.model.estimated_bits(fixture_crops[:2])
    coded = np.array([8 * (len(r) - 2) for r in records])
    assert np.all(np.abs(coded - estimate) <= 0.03 * estimate + 64)


def test_learned_damaged_payloads_raise(tiny_codec, fixture_crops):
    record = tiny_codec.encode(fixture_crops[0])
    for damaged in (b"", record[:2], b"\x00\x0a" + record[2:], [record, b"\x05\x05xyz"]):
        with pytest.raises(BitstreamError):
            tiny_codec.decode_many(damaged if isinstance(damaged, list) else [damaged])
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
        learned.LearnedCodec.load(copy)
    with pytest.raises(WeightsError):
        learned.LearnedCodec.load(tmp_path / "missing")


DECODE_SCRIPT = """
import hashlib, sys
from sfc_tf.enhancement import make_codec
codec = make_codec("learned", sys.argv[1])
records = [bytes.fromhex(line) for line in open(sys.argv[2]).read().split()]
print(hashlib.sha256(codec.decode_many(records).tobytes()).hexdigest())
"""


def test_learned_decoding_is_bit_identical_across_processes(tiny_learned_checkpoint, tiny_codec, fixture_crops,
                                                            tmp_path):
    import hashlib

    records = tiny_codec.encode_many(fixture_crops)
    (tmp_path / "records.txt").write_text("\n".join(r.hex() for r in records))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    command = [sys.executable, "-c", DECODE_SCRIPT, str(tiny_learned_checkpoint), str(tmp_path / "records.txt")]
    workers = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    digests = {worker.communicate(timeout=300)[0].strip() for worker in workers}
    assert all(worker.returncode == 0 for worker in workers)
    digests.add(hashlib.sha256(tiny_codec.decode_many(records).tobytes()).hexdigest())
    assert len(digests) == 1
