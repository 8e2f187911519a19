"""FaceNet weights conversion and the feature extractor, on real fixture faces."""

import numpy as np
import pytest
import tensorflow as tf

from sfc_tf import checkpoint
from sfc_tf.base import facenet
from sfc_tf.errors import WeightsError


@pytest.fixture(scope="module")
def extractor():
    return facenet.FeatureExtractor()


def frozen_graph_embeddings(images: np.ndarray) -> np.ndarray:
    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(facenet.frozen_graph_path().read_bytes())
    graph = tf.Graph()
    with graph.as_default():
        tf.import_graph_def(graph_def, name="")
    with tf.compat.v1.Session(graph=graph) as session:  # the graph's input is fixed to batch 1
        return np.concatenate([session.run("embeddings:0", {"input:0": x[None]}) for x in images])


def test_keras_model_matches_frozen_graph(extractor, fixture_crops):
    keras_features = extractor(fixture_crops)
    graph_features = frozen_graph_embeddings(facenet.standardize(fixture_crops))
    assert np.abs(keras_features - graph_features).max() < 1e-4
    np.testing.assert_allclose(np.linalg.norm(keras_features, axis=1), 1.0, atol=1e-5)


def test_any_batch_size_gives_the_same_features(extractor, fixture_crops, monkeypatch):
    whole = extractor(fixture_crops)
    one_by_one = np.concatenate([extractor(crop) for crop in fixture_crops])
    np.testing.assert_allclose(whole, one_by_one, atol=1e-5)
    monkeypatch.setattr(extractor, "batch_size", 4)  # batches of 4 then 2
    np.testing.assert_allclose(whole, extractor(fixture_crops), atol=1e-5)


def test_same_person_is_closer_than_different_people(extractor, fixture_crops):
    # sorted fixture order: AJ_Cook_0001, Aaron_Peirsol_0001, Aaron_Peirsol_0002, Abel_Pacheco_0001,
    # Abel_Pacheco_0004, Akhmed_Zakayev_0001
    f = extractor(fixture_crops)
    same = [np.sum((f[1] - f[2]) ** 2), np.sum((f[3] - f[4]) ** 2)]
    different = [
        np.sum((f[i] - f[j]) ** 2) for i in range(6) for j in range(i + 1, 6) if (i, j) not in ((1, 2), (3, 4))
    ]
    assert max(same) < min(different)


def test_converted_weights_are_cached_and_checked(tmp_path, monkeypatch):
    monkeypatch.setenv("SFC_TF_CACHE", str(tmp_path))
    facenet.load_model()
    cached = facenet.converted_weights_path()
    assert cached.is_file()
    assert cached.with_suffix(".sha256").read_text().strip() == checkpoint.sha256_file(cached)
    cached.write_bytes(b"corrupt")  # a damaged cache is rebuilt, not loaded
    facenet.load_model()
    assert cached.with_suffix(".sha256").read_text().strip() == checkpoint.sha256_file(cached)


def test_weight_source_errors(tmp_path):
    with pytest.raises(WeightsError, match="not found"):
        facenet.load_model(weights_path=tmp_path / "missing.h5")
    with pytest.raises(WeightsError, match="unknown FaceNet key"):
        facenet.load_model("no-such-model")
    with pytest.raises(WeightsError, match="no offline weights"):
        facenet.load_model("20170512-110547", allow_download=False)


def test_all_keras_facenet_keys_are_known():
    assert {"20180402-114759", "20180408-102900", "20170511-185253", "20170512-110547"} <= set(facenet.available_keys())
    assert facenet.feature_dim("20170512-110547") == 128
    assert facenet.build_model("20170512-110547").output_shape == (None, 128)


def test_standardize_modes():
    x = np.full((1, 160, 160, 3), 255, np.uint8)
    assert facenet.standardize(x).max() == pytest.approx((255 - 127.5) / 128)
    assert np.isfinite(facenet.standardize(x, "prewhiten")).all()  # constant image: no division by zero
    with pytest.raises(ValueError):
        facenet.standardize(x, "other")
