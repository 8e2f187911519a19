"""The linear coding predictor: its upsampling matches the model's, the closed-form fit recovers a linear map,
and a saved predictor loads (checksum-verified) as the ``mmse`` network and gives the same pixels."""

import numpy as np
import pytest
import tensorflow as tf

from sfc_tf.base import coarse
from sfc_tf.enhancement import prediction
from sfc_tf.errors import WeightsError
from sfc_tf.reconstruction import linear_predictor, reconstructor


def test_upsampling_matrix_is_the_models_bilinear_resize():
    grid, size = 5, 40
    small = np.random.default_rng(0).normal(size=(2, grid, grid, 3)).astype(np.float32)
    upsample = coarse.upsampling_matrix(grid, size)
    expected = tf.image.resize(small, (size, size), method="bilinear").numpy()
    np.testing.assert_allclose(np.einsum("ha,nabc,wb->nhwc", upsample, small, upsample), expected, atol=1e-5)


def test_coarse_targets_invert_the_upsampling():
    grid, size = 5, 40
    rng = np.random.default_rng(1)
    small = rng.uniform(-0.9, 0.9, size=(3, grid, grid, 3)).astype(np.float32)
    images = reconstructor.to_uint8(tf.image.resize(small, (size, size), method="bilinear"))
    recovered = linear_predictor.coarse_targets(images, grid).reshape(small.shape)
    np.testing.assert_allclose(recovered, small, atol=2 / 127.5)  # within pixel rounding


def test_ridge_fit_recovers_a_linear_map_in_batches():
    rng = np.random.default_rng(2)
    kernel, bias = rng.normal(size=(8, 6)), rng.normal(size=6)
    features = rng.normal(size=(500, 8))
    fit = linear_predictor.RidgeFit(8, 6)
    for chunk in np.array_split(np.arange(500), 3):
        fit.add(features[chunk], features[chunk] @ kernel + bias)
    got_kernel, got_bias = fit.solve(1e-9)
    np.testing.assert_allclose(got_kernel, kernel, atol=1e-4)
    np.testing.assert_allclose(got_bias, bias, atol=1e-4)
    assert np.abs(fit.solve(10.0)[0]).sum() < np.abs(kernel).sum()  # the ridge shrinks the kernel


def test_saved_predictor_loads_as_the_mmse_network(tmp_path):
    model = linear_predictor.LinearPredictor(16, grid=4, image_size=32).build_for_inference()
    model.linear.set_weights(
        [np.random.default_rng(3).normal(size=(16, 48)).astype(np.float32) * 0.1, np.zeros(48, np.float32)]
    )
    linear_predictor.save(model, tmp_path, note="test")
    loaded = prediction.load_network(tmp_path)
    features = np.random.default_rng(4).normal(size=(2, 16)).astype(np.float32)
    np.testing.assert_array_equal(reconstructor.to_uint8(loaded(features)), reconstructor.to_uint8(model(features)))
    weights = tmp_path / linear_predictor.WEIGHTS_FILE
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="sha256"):
        prediction.load_network(tmp_path)
