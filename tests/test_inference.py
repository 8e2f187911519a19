"""Keras models run at inference as one graph: the same outputs as an eager call, nothing left behind per call."""

import tracemalloc

import numpy as np
import pytest
import tensorflow as tf

from sfc_tf.base import facenet
from sfc_tf.reconstruction import decoder, linear_predictor, reconstructor


def python_memory_left_by(call, repeats: int) -> int:
    """Bytes of Python memory still allocated after ``repeats`` calls (after a few warm-up calls)."""
    for _ in range(3):
        call()
    tracemalloc.start(1)
    try:
        before = tracemalloc.take_snapshot()
        for _ in range(repeats):
            call()
        return sum(stat.size_diff for stat in tracemalloc.take_snapshot().compare_to(before, "filename"))
    finally:
        tracemalloc.stop()


@pytest.fixture(scope="module")
def feature_networks():
    tf.keras.utils.set_random_seed(0)
    return [
        reconstructor.Reconstructor(128).build_for_inference(),
        linear_predictor.LinearPredictor(128, 8, 160).build_for_inference(),
    ]


def test_networks_reconstruct_as_their_eager_call_does_at_every_batch_size(feature_networks):
    """A row comes out of the graph the same in any batch, bit for bit: an odd batch is run with one row more
    (``inference.batch_invariant``: a row alone, or on some CPUs any odd batch, takes other kernels). The graph gives
    an eager call's output up to the last bit of a float (equal on some CPUs, one ulp apart on an AMX Xeon)."""
    features = np.random.default_rng(0).normal(size=(5, 128)).astype(np.float32)
    for network in feature_networks:
        expected = network.infer(features).numpy()
        np.testing.assert_allclose(expected, network(features, training=False).numpy(), rtol=0, atol=1e-6)
        for batch_size in (4, 3, 2, 1):
            rows = [network.infer(features[i : i + batch_size]).numpy() for i in range(0, len(features), batch_size)]
            np.testing.assert_array_equal(np.concatenate(rows), expected)  # the networks' floats, bit for bit
        np.testing.assert_array_equal(decoder.reconstruct(network, features, 1), reconstructor.to_uint8(expected))


def test_reconstruction_leaves_no_memory_behind(feature_networks):
    feature = np.random.default_rng(1).normal(size=(1, 128)).astype(np.float32)
    # an eager call of the reconstructor leaves ~9 KB per call in TF 2.14 (~270 KB here)
    assert python_memory_left_by(lambda: decoder.reconstruct(feature_networks[0], feature), 30) < 30_000


def test_facenet_graph_matches_eager_and_leaves_no_memory_behind(fixture_crops):
    extractor = facenet.FeatureExtractor(allow_download=False)
    expected = extractor.model(facenet.standardize(fixture_crops, "fixed"), training=False).numpy()
    np.testing.assert_allclose(extractor(fixture_crops), expected, rtol=0, atol=1e-6)  # one ulp apart on some CPUs
    # an eager FaceNet call leaves ~90 KB per call in TF 2.14 (~900 KB here)
    assert python_memory_left_by(lambda: extractor(fixture_crops[:1]), 10) < 30_000
