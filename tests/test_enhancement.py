"""Enhancement layer: min-max normalisation, the residual codecs (JPEG, JPEG2000, learned Balle 2016),
training resume, decoding determinism across processes."""

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


@pytest.fixture(scope="module")
def tiny_learned_checkpoint(tmp_path_factory, fixture_crops):
    from sfc_tf.enhancement import training

    directory = tmp_path_factory.mktemp("learned")
    config = training.EnhancementTrainConfig(str(directory), lmbda=0.01, epochs=1, batch_size=2, verbose=0)
    meta = training.train(config, fixture_crops, {"input": "test"})
    assert meta["steps"] == 3 and meta["epochs_done"] == 1 and meta["input"] == "test"
    return directory


def test_training_warm_starts_and_resumes(tiny_learned_checkpoint, fixture_crops, tmp_path):
    from sfc_tf.enhancement import training

    config = training.EnhancementTrainConfig(str(tmp_path / "a"), 0.01, epochs=1, batch_size=2, patch_size=32,
                                             learning_rate=0.0, init_from=str(tiny_learned_checkpoint), verbose=0)
    first = training.train(config, fixture_crops, {})
    assert first["steps"] == 3 and _same_weights(tmp_path / "a", tiny_learned_checkpoint)
    config.epochs, config.learning_rate = 2, 1e-3
    second = training.train(config, fixture_crops, {})
    assert second["steps"] == 6 and second["wall_time_s"] >= first["wall_time_s"]
    assert not _same_weights(tmp_path / "a", tiny_learned_checkpoint)
    with pytest.raises(ValueError):
        training.patches_dataset(fixture_crops, 2, 40)


def _same_weights(first, second) -> bool:
    from sfc_tf.enhancement import learned

    a, b = learned.load_model(first)[0], learned.load_model(second)[0]
    return all(np.array_equal(x.numpy(), y.numpy()) for x, y in zip(a.weights, b.weights))


def test_learned_round_trip_and_rate_estimate(tiny_learned_checkpoint, fixture_crops):
    from sfc_tf.enhancement import make_codec

    residual_codec = make_residual_codec("learned", tiny_learned_checkpoint)
    residual = smooth_residual(2)
    decoded_residual = residual_codec.decode(residual_codec.encode(residual))
    assert decoded_residual.shape == residual.shape and np.isfinite(decoded_residual).all()
    codec = make_codec("learned", tiny_learned_checkpoint)
    assert codec.codec_id == LEARNED and codec.model.num_filters == 128
    records = codec.encode_many(fixture_crops[:2])
    decoded = codec.decode_many(records)
    assert decoded.shape == (2, 160, 160, 3) and decoded.dtype == np.uint8
    np.testing.assert_array_equal(codec.decode(records[1]), decoded[1])
    estimate = codec.model.estimated_bits(fixture_crops[:2])
    coded = np.array([8 * (len(r) - 2) for r in records])
    assert np.all(np.abs(coded - estimate) <= 0.03 * estimate + 64)


def test_learned_damaged_payloads_raise(tiny_learned_checkpoint, fixture_crops):
    from sfc_tf.enhancement import make_codec

    codec = make_codec("learned", tiny_learned_checkpoint)
    record = codec.encode(fixture_crops[0])
    for damaged in (b"", record[:2], b"\x00\x0a" + record[2:], [record, b"\x05\x05xyz"]):
        with pytest.raises(BitstreamError):
            codec.decode_many(damaged if isinstance(damaged, list) else [damaged])


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


DECODE_SCRIPT = """
import hashlib, sys
import numpy as np
from sfc_tf.enhancement import make_codec
codec = make_codec("learned", sys.argv[1])
records = [bytes.fromhex(line) for line in open(sys.argv[2]).read().split()]
print(hashlib.sha256(codec.decode_many(records).tobytes()).hexdigest())
"""


def test_learned_decoding_is_bit_identical_across_processes(tiny_learned_checkpoint, fixture_crops, tmp_path):
    from sfc_tf.enhancement import make_codec

    codec = make_codec("learned", tiny_learned_checkpoint)
    records = codec.encode_many(fixture_crops)
    (tmp_path / "records.txt").write_text("\n".join(r.hex() for r in records))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    digests = {
        subprocess.run([sys.executable, "-c", DECODE_SCRIPT, str(tiny_learned_checkpoint), str(tmp_path / "records.txt")],
                       check=True, capture_output=True, text=True, env=env).stdout.strip()
        for _ in range(2)
    }
    import hashlib

    digests.add(hashlib.sha256(codec.decode_many(records).tobytes()).hexdigest())
    assert len(digests) == 1
