"""The hyperprior face codec (sfc_tf/enhancement/hyperprior.py): coding round trips, batch invariance, its range
tables, damaged payloads, warm starts and storage."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_compression as tfc

from sfc_tf.enhancement import face_codec, hyperprior, learned, range_guard
from sfc_tf.enhancement.registry import make_codec
from sfc_tf.errors import BitstreamError

TINY = dict(num_filters=16, latent_depth=32, hyper_filters=16, hyper_depth=8, num_slices=4, slice_hidden=8)


def tiny_model(conditional: bool, lmbdas=(0.001, 0.01, 0.1)) -> hyperprior.HyperpriorFaceCodec:
    model = hyperprior.HyperpriorFaceCodec(list(lmbdas), conditional=conditional, **TINY)
    for variable in model.trainable_variables:  # untrained but not degenerate: every network passes something on
        variable.assign(variable + tf.random.stateless_normal(variable.shape, (1, len(variable.name))) * 0.05)
    return model


@pytest.fixture(scope="module", params=[False, True], ids=["end-to-end", "conditional"])
def saved(request, tmp_path_factory):
    directory = tmp_path_factory.mktemp("hyperprior")
    learned.save(tiny_model(request.param), directory, input="test")
    return directory, request.param


def predictions_for(crops: np.ndarray) -> np.ndarray:
    return np.clip(crops[::-1].astype(int) + 7, 0, 255).astype(np.uint8)


def codec_and_prediction(saved, quality, crops):
    directory, conditional = saved
    codec = make_codec("conditional" if conditional else "learned", (directory, quality))
    return codec, predictions_for(crops) if conditional else None


@pytest.mark.parametrize("quality", [0, 1, 4])
def test_decoding_gives_what_the_encoder_reconstructs(saved, quality, fixture_crops):
    codec, p = codec_and_prediction(saved, quality, fixture_crops)
    strings, reconstructed = tf.function(learned.load_model(saved[0])[0].encode)(fixture_crops, p, quality)
    decoded = codec.decode_many([bytes(s) for s in strings.numpy()], p)
    difference = np.abs(decoded.astype(int) - reconstructed.numpy())  # two graphs may round the synthesis apart
    assert difference.max() <= 1 and np.mean(difference > 0) < 1e-3  # a wrongly decoded symbol moves a region


def test_decoding_alone_and_in_batches_gives_the_same_pixels(saved, fixture_crops):
    codec, p = codec_and_prediction(saved, 2, fixture_crops)
    payloads = codec.encode_many(fixture_crops, p)
    together = codec.decode_many(payloads, p)
    for i, payload in enumerate(payloads):
        alone = codec.decode_many([payload], None if p is None else p[i : i + 1])
        np.testing.assert_array_equal(alone[0], together[i])


def test_interpolated_qualities_lie_between_their_trained_neighbours():
    model = tiny_model(False)
    assert model.num_qualities == 5
    for quality in (1, 3):
        below, middle, above = (model.gain_pair(q)[0].numpy() for q in (quality - 1, quality, quality + 1))
        np.testing.assert_allclose(middle, np.sqrt(below * above), rtol=1e-6)


def test_values_far_outside_a_rows_range_are_coded_exactly():
    """Escape codes carry what a table row does not cover, for the hyperprior's rows and the Gaussian ones."""
    coder = tiny_model(False).enable_coding().coder
    rows = tf.constant([[0, 0, 0, coder.num_z, coder.num_z + hyperprior.NUM_SCALES - 1]])
    symbols = tf.constant([[-(10**4), 0, 10**4, 5000, -3]])
    handle = tfc.entropy_encode_index(tfc.create_range_encoder((1,), coder.cdf), rows, symbols)
    strings = tfc.entropy_encode_finalize(handle)
    handle, decoded = tfc.entropy_decode_index(tfc.create_range_decoder(strings, coder.cdf), rows, (5,), tf.int32)
    assert bool(tfc.entropy_decode_finalize(handle).numpy().all())
    np.testing.assert_array_equal(decoded.numpy(), symbols.numpy())
    replayed = range_guard.Replay(strings.numpy()[0]).symbols(coder.replay_rows, rows.numpy()[0])
    np.testing.assert_array_equal(replayed, symbols.numpy()[0])  # the hang guard decodes escapes as tfc does


@pytest.mark.parametrize("quality", [0, 2, 4])
def test_the_range_decoder_guard_passes_real_payloads(saved, quality, fixture_crops):
    """The guard replays the decode with the rows the model derives from what it replayed: real payloads pass."""
    codec, p = codec_and_prediction(saved, quality, fixture_crops)
    payloads = codec.encode_many(fixture_crops, p)
    bad, images = codec.coder.replay(payloads, codec.latent_shape, p)
    assert bad == [] and images is not None


@pytest.mark.parametrize("quality", [0, 3, 4])
def test_a_clean_replay_decodes_what_tfcs_decoder_decodes(saved, quality, fixture_crops):
    """A payload the guard replayed cleanly is decoded from the replay's symbols: the pixels of tfc's decode."""
    codec, p = codec_and_prediction(saved, quality, fixture_crops)
    payloads = codec.encode_many(fixture_crops, p)
    replayed = codec.decode_many(payloads, p)
    shape = tf.constant(codec.latent_shape, tf.int32)
    np.testing.assert_array_equal(replayed, codec.coder.decompress(tf.constant(payloads), shape, p).numpy())


def test_the_replays_end_check_is_tfcs(saved, fixture_crops):
    """A replay gives images exactly where tfc's decoder ends cleanly (``entropy_decode_finalize``), and the same
    images, on intact, cut, padded and flipped payloads."""
    codec, p = codec_and_prediction(saved, 2, fixture_crops[:1])
    payload = codec.encode_many(fixture_crops[:1], p)[0]
    rng = np.random.default_rng(1)
    variants = [payload, payload[:-1], payload[: len(payload) // 2], payload + b"\x00", payload + b"\x01\x02"]
    for _ in range(12):
        flipped = bytearray(payload)
        flipped[rng.integers(len(flipped))] ^= 1 << int(rng.integers(8))
        variants.append(bytes(flipped))
    model, shape, outcomes = codec.coder.model, tf.constant(codec.latent_shape, tf.int32), set()
    for data in variants:
        bad, images = model.replay([data], p, 2, codec.latent_shape)
        if bad or model._range_guard.lanes.derailed:
            continue
        ended = bool(model.decode(tf.constant([data]), p, 2, shape)[1].numpy()[0])
        assert (images is not None) == ended, data.hex()
        if ended:
            np.testing.assert_array_equal(images, codec.coder.decompress(tf.constant([data]), shape, p))
        outcomes.add(ended)
    assert outcomes == {True, False}  # both answers were checked


def test_the_range_decoder_guard_leaves_no_memory_behind(saved, fixture_crops):
    """The guard runs the model's networks as one traced graph: an eager Keras call leaves memory behind (TF 2.14)."""
    from test_inference import python_memory_left_by

    codec, p = codec_and_prediction(saved, 2, fixture_crops[:1])
    payloads = codec.encode_many(fixture_crops[:1], p)
    assert python_memory_left_by(lambda: codec.coder.replay(payloads, codec.latent_shape, p), 20) < 30_000


def test_damaged_payloads_raise_or_decode_to_a_face(saved, fixture_crops):
    codec, p = codec_and_prediction(saved, 2, fixture_crops[:1])
    payload = codec.encode_many(fixture_crops[:1], p)[0]
    rng = np.random.default_rng(0)
    damaged = [payload[: len(payload) // 2], payload + b"\x00" * 9, bytes(rng.integers(0, 256, 700, dtype=np.uint8))]
    for _ in range(10):
        flipped = bytearray(payload)
        flipped[rng.integers(len(flipped))] ^= 1 << int(rng.integers(8))
        damaged.append(bytes(flipped))
    for data in damaged:
        try:
            image = codec.decode_many([data], p)
        except BitstreamError:
            continue
        assert image.shape == (1, 160, 160, 3) and image.dtype == np.uint8


@pytest.mark.parametrize("conditional", [False, True])
def test_a_warm_started_model_first_decodes_like_its_source(conditional, fixture_crops):
    if conditional:
        source = face_codec.FaceCodec([0.01], conditional=True, prior="channel", num_filters=16)
    else:
        source = learned.BLS2017(0.01, num_filters=16)
    for variable in source.trainable_variables:
        variable.assign(variable + tf.random.stateless_normal(variable.shape, (2, len(variable.name))) * 0.05)
    model = hyperprior.warm_start(tiny_model(conditional, lmbdas=(0.01,)), source)
    p = predictions_for(fixture_crops) if conditional else None
    if conditional:
        expected = source.synthesise(tf.round(source.analyse(fixture_crops, p, 0)), p, 0)
    else:
        expected = source.synthesis_transform(tf.round(source.analysis_transform(tf.cast(fixture_crops, tf.float32))))
    y = model.analyse(fixture_crops, p, model.gains[0])
    got = model.synthesise(tf.round(y), p, model.inverse_gains[0])
    np.testing.assert_allclose(got.numpy(), expected.numpy(), atol=1e-3)
    with pytest.raises(ValueError, match="its own kind"):
        hyperprior.warm_start(tiny_model(not conditional, lmbdas=(0.01,)), source)


def test_float16_storage_codes_with_the_rounded_model(tmp_path, fixture_crops):
    model = tiny_model(True)
    learned.save(model, tmp_path / "half", weights_dtype="float16", input="test")
    codec = make_codec("conditional", (tmp_path / "half", 3))
    p = predictions_for(fixture_crops)
    payloads = codec.encode_many(fixture_crops, p)
    strings, reconstructed = tf.function(learned.load_model(tmp_path / "half")[0].encode)(fixture_crops, p, 3)
    assert [bytes(s) for s in strings.numpy()] == payloads
    difference = np.abs(codec.decode_many(payloads, p).astype(int) - reconstructed.numpy())
    assert difference.max() <= 1 and np.mean(difference > 0) < 1e-3


def test_a_fitted_entropy_model_matches_the_latents_statistics(fixture_crops):
    model = tiny_model(True)
    p = predictions_for(fixture_crops)
    u = model.analyse(fixture_crops, p, 1.0)
    z = tf.round(model.hyper_analysis(u) * model.hyper_gains[0])
    bits_before = -tf.reduce_sum(model.hyperprior.log_prob(z)).numpy()
    model.fit_entropy_model(fixture_crops, p, batch_size=3, steps=100)
    assert -tf.reduce_sum(model.hyperprior.log_prob(z)).numpy() < 0.5 * bits_before
    u = model.analyse(fixture_crops, p, 1.0).numpy()
    np.testing.assert_allclose(model.position_means.numpy(), u.mean(0), atol=1e-5)
    spread = hyperprior.scale_fn(tf.constant(model.position_indexes.numpy(), tf.float64)).numpy()
    np.testing.assert_allclose(spread, np.maximum(u.std(0), hyperprior.SCALE_MIN / 8), rtol=1e-4)


def test_a_hyperprior_codec_warm_starts_from_one_with_another_hyper_latent(fixture_crops):
    source = tiny_model(True)
    model = hyperprior.warm_start(
        hyperprior.HyperpriorFaceCodec([0.001, 0.01, 0.1], conditional=True, **{**TINY, "hyper_depth": 4}), source
    )
    p = predictions_for(fixture_crops)
    np.testing.assert_allclose(model.analyse(fixture_crops, p, 1.0), source.analyse(fixture_crops, p, 1.0), atol=1e-6)
    with pytest.raises(ValueError, match="same transforms"):
        hyperprior.warm_start(tiny_model(True, lmbdas=(0.01,)), source)
