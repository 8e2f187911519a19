"""The colour thumbnail of the base layer: its coarse images, the correction the decoder applies, and a base layer
that codes one beside the feature (round trips, persistence, model ids, damaged payloads)."""

import pathlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sfc_tf.base import base_layer, coarse
from sfc_tf.base.thumbnail import Thumbnail
from sfc_tf.errors import BitstreamError

DIM, SIZE = 32, 40
REPO = pathlib.Path(__file__).resolve().parent.parent


def faces(n: int, seed: int) -> np.ndarray:
    """Smooth random uint8 images with a per-image colour and a gradient (what a thumbnail describes) plus noise."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(-1, 1, SIZE)[None, :, None, None]
    images = rng.uniform(60, 190, (n, 1, 1, 3)) + rng.uniform(-40, 40, (n, 1, 1, 3)) * ramp
    return np.clip(images + rng.normal(0, 20, (n, SIZE, SIZE, 3)), 0, 255).astype(np.uint8)


def features(n: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, DIM)) * np.linspace(1.0, 0.05, DIM)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def thumbnail():
    return Thumbnail.fit(faces(500, 0), grid=2, step=8.0)


@pytest.fixture(scope="module")
def models(thumbnail):
    plain = base_layer.BaseLayerModel.fit(features(1000, 0), step=0.05)
    return plain, plain.with_thumbnail(thumbnail)


def test_coarse_images_invert_the_bilinear_upsampling():
    small = np.random.default_rng(0).uniform(0, 255, (3, 2, 2, 3))
    np.testing.assert_allclose(coarse.coarse_images(coarse.upsample(small, SIZE), 2), small, atol=1e-9)


def test_apply_replaces_the_coarse_image_and_keeps_the_detail(thumbnail):
    images, targets = faces(8, 1), faces(8, 2)
    wanted = coarse.coarse_images(targets, 2).reshape(8, -1)
    corrected = thumbnail.apply(images, wanted)
    assert corrected.dtype == np.uint8 and corrected.shape == images.shape
    # the coarse image is the wanted one (up to rounding and clipping at 0 and 255) ...
    assert np.abs(coarse.coarse_images(corrected, 2).reshape(8, -1) - wanted).max() < 3
    # ... and what lies above it is the input's
    detail = lambda x: x - coarse.upsample(coarse.coarse_images(x, 2), SIZE)  # noqa: E731
    assert np.abs(detail(corrected) - detail(images)).mean() < 1.5
    np.testing.assert_array_equal(thumbnail.apply(images, coarse.coarse_images(images, 2).reshape(8, -1)), images)


def test_a_thumbnail_brings_an_image_closer_to_its_target(thumbnail):
    images, targets = faces(50, 3), faces(50, 4)
    decoded = thumbnail.dequantize(thumbnail.quantize(targets))
    before = np.mean((images.astype(float) - targets) ** 2)
    after = np.mean((thumbnail.apply(images, decoded).astype(float) - targets) ** 2)
    assert after < 0.7 * before


def test_quantizer_clips_to_the_prior_and_rejects_bad_parameters(thumbnail):
    extreme = np.zeros((2, SIZE, SIZE, 3), np.uint8)
    extreme[1] = 255
    symbols = thumbnail.quantize(extreme)
    assert np.all(np.abs(symbols) <= thumbnail.half_ranges)
    for grid, step in ((0, 8.0), (2, 0.0), (2, -1.0)):
        with pytest.raises(ValueError):
            Thumbnail.fit(faces(20, 0), grid, step)


def test_round_trip_gives_the_features_and_the_thumbnails(models, thumbnail):
    plain, with_thumbnail = models
    f, crops = features(40, 5), faces(40, 5)
    payloads = with_thumbnail.encode_payloads(f, crops)
    decoded, thumbnails = with_thumbnail.decode_layers(payloads)
    np.testing.assert_array_equal(decoded, plain.decode_payloads(plain.encode_payloads(f)))
    np.testing.assert_allclose(thumbnails, thumbnail.dequantize(thumbnail.quantize(crops)))
    np.testing.assert_array_equal(with_thumbnail.decode_payloads(payloads), decoded)  # analysis: features only
    assert plain.decode_layers(plain.encode_payloads(f))[1] is None
    extra = np.mean([len(p) for p in payloads]) - np.mean([len(p) for p in plain.encode_payloads(f)])
    assert 0 < extra < 8  # a few bytes per face


def test_escaped_feature_values_still_decode_beside_a_thumbnail(models):
    _, with_thumbnail = models
    extreme = np.zeros((2, DIM), np.float32)
    extreme[0, 0], extreme[1, -2:] = 1.0, [0.6, -0.8]
    batch, crops = np.concatenate([features(3, 6), extreme]), faces(5, 6)
    decoded, thumbnails = with_thumbnail.decode_layers(with_thumbnail.encode_payloads(batch, crops))
    np.testing.assert_allclose(decoded, with_thumbnail.quantize_dequantize(batch), atol=1e-6)
    np.testing.assert_allclose(
        thumbnails, with_thumbnail.thumbnail.dequantize(with_thumbnail.thumbnail.quantize(crops))
    )


def test_encoding_without_the_crops_is_refused(models):
    with pytest.raises(ValueError, match="pass the crops"):
        models[1].encode_payloads(features(2, 0))


def test_save_load_keeps_the_thumbnail_and_the_feature_models_id(tmp_path, models):
    plain, with_thumbnail = models
    with_thumbnail.save(tmp_path / "t.npz")
    plain.save(tmp_path / "p.npz")
    loaded = base_layer.load(tmp_path / "t.npz")
    assert loaded.model_id == with_thumbnail.model_id != plain.model_id
    assert base_layer.load(tmp_path / "p.npz").model_id == plain.model_id and plain.thumbnail is None
    f, crops = features(5, 7), faces(5, 7)
    assert loaded.encode_payloads(f, crops) == with_thumbnail.encode_payloads(f, crops)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(min_size=1, max_size=64))
def test_random_payloads_decode_or_raise(models, payload):
    try:
        decoded, thumbnails = models[1].decode_layers([payload])
    except BitstreamError:
        return
    assert np.isfinite(decoded).all() and np.isfinite(thumbnails).all()


def test_the_codec_corrects_every_prediction_with_the_decoded_thumbnail(tiny_zoo, fixture_crops):
    """A model set whose base layer codes a thumbnail (the shipped one, with the stand-in networks): the base layer
    alone decodes the same features as without it; the reconstruction level and each prediction the enhancement
    layer uses take their coarse image from the file's thumbnail."""
    from sfc_tf import bitstream
    from sfc_tf.codec import ScalableCodec
    from sfc_tf.enhancement import prediction

    thumbnail_base = REPO / "checkpoints" / "base_layer" / "thumbnail2" / "step_0.08.npz"
    codec = ScalableCodec.from_paths(thumbnail_base, tiny_zoo / "reconstructor", tiny_zoo / "predictor", align="crop")
    plain = ScalableCodec.from_paths(
        tiny_zoo / "base_layer" / "step_0.08.npz", tiny_zoo / "reconstructor", tiny_zoo / "predictor", align="crop"
    )
    features = np.random.default_rng(0).normal(size=(len(fixture_crops), 512)).astype(np.float32)
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    files = codec.encode_analysis(codec.analyse(fixture_crops, features)).files
    plain_files = plain.encode_analysis(plain.analyse(fixture_crops, features)).files
    assert all(len(a) > len(b) for a, b in zip(files, plain_files))

    base = codec.decode_many(files, "base")
    np.testing.assert_array_equal(
        [d.feature for d in base], [d.feature for d in plain.decode_many(plain_files, "base")]
    )
    _, thumbnails = codec.base_layer.decode_layers([bitstream.unpack_base(f).base_payload for f in files])
    rebuilt = np.stack([d.image for d in codec.decode_many(files, "reconstruction")])
    alone = np.stack([codec.decode(f, "reconstruction").image for f in files])
    np.testing.assert_array_equal(alone, rebuilt)  # a face decodes to the same pixels alone and in a batch
    plain_rebuilt = np.stack([d.image for d in plain.decode_many(plain_files, "reconstruction")])
    np.testing.assert_array_equal(rebuilt, codec.base_layer.thumbnail.apply(plain_rebuilt, thumbnails))
    assert np.mean((rebuilt.astype(float) - fixture_crops) ** 2) < np.mean(
        (plain_rebuilt.astype(float) - fixture_crops) ** 2
    )

    predictions = codec.analyse(fixture_crops, features).predictions
    plain_predictions = plain.analyse(fixture_crops, features).predictions
    for mode in (bitstream.MEAN_FACE, bitstream.MMSE):
        np.testing.assert_array_equal(
            predictions(mode), codec.base_layer.thumbnail.apply(plain_predictions(mode), thumbnails)
        )
    assert predictions(prediction.mode_id("none")) is None
    # training sees the predictions the decoder makes
    train_predict = prediction.training_predictor(tiny_zoo / "reconstructor", thumbnail_base)
    np.testing.assert_array_equal(train_predict(features, fixture_crops), predictions.reconstruction)
    decoded = codec.decode_many(codec.encode_crops(fixture_crops, "jpeg", 50, mode="mean_face"), "full")
    assert all(d.image.shape == (160, 160, 3) for d in decoded)
