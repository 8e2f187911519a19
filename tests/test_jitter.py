"""Shift-and-scale augmentation: exact geometry, masks of the reflected border, features of each copy."""

import numpy as np
import pytest

from sfc_tf.data import jitter, training_set


@pytest.fixture(scope="module")
def crop() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (160, 160, 3), dtype=np.uint8)


def test_no_shift_no_scale_is_the_crop_itself(crop):
    image, mask = jitter.transform(crop, 0.0, 0.0, 1.0)
    np.testing.assert_array_equal(image, crop)
    assert mask.min() == 1


def test_a_shift_moves_the_face_and_masks_the_reflected_columns(crop):
    image, mask = jitter.transform(crop, 4.0, 0.0, 1.0)
    np.testing.assert_array_equal(image[:, :-4], crop[:, 4:])
    assert mask[:, :-4].min() == 1 and mask[:, -4:].max() == 0
    image, mask = jitter.transform(crop, 0.0, -3.0, 1.0)
    np.testing.assert_array_equal(image[3:], crop[:-3])
    assert mask[:3].max() == 0


def test_zooming_out_masks_the_frame_around_the_crop(crop):
    _, mask = jitter.transform(crop, 0.0, 0.0, 0.9)
    assert mask.mean() == pytest.approx(0.81, abs=0.01)
    assert mask[80, 80] == 1 and mask[0, 0] == 0 and mask[159, 159] == 0
    _, mask = jitter.transform(crop, 0.0, 0.0, 1.1)
    assert mask.min() == 1


def test_copies_are_deterministic_copy_major_and_within_bounds(crop):
    crops = np.stack([crop, crop[::-1]])
    images, masks = jitter.jittered(crops, copies=3, seed=5)
    again, _ = jitter.jittered(crops, copies=3, seed=5)
    assert images.shape == (6, 160, 160, 3) and masks.shape == (6, 160, 160)
    np.testing.assert_array_equal(images, again)
    draws = jitter.draws(2, 3, 5)
    np.testing.assert_array_equal(images[3], jitter.transform(crops[1], *draws[3])[0])
    assert np.abs(draws[:, :2]).max() <= jitter.MAX_SHIFT
    assert np.all(np.abs(draws[:, 2] - 1) <= jitter.MAX_SCALE)


class MeanColour:
    """A cheap stand-in for FaceNet whose feature depends on where the pixels are: mean colour per image third."""

    def __call__(self, crops, progress=False):
        crops = np.asarray(crops, np.float32)
        parts = [crops[:, i * 53 : (i + 1) * 53].mean(axis=(1, 2)) + 1 for i in range(3)]
        features = np.concatenate(parts, axis=1)
        return (features / np.linalg.norm(features, axis=1, keepdims=True)).astype(np.float32)


def test_training_set_gains_jittered_copies_with_their_own_features(fixture_lfw_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("SFC_TF_CACHE", str(tmp_path))
    plain = training_set.assemble(fixture_lfw_dir, align="center", validation_fraction=0.0, extractor=MeanColour())
    augmented = training_set.assemble(
        fixture_lfw_dir, align="center", validation_fraction=0.0, extractor=MeanColour(), jitter_copies=2
    )
    n = len(plain.crops)
    assert len(augmented.crops) == len(augmented.features) == len(augmented.masks) == 3 * n
    copies, masks = jitter.jittered(plain.crops, 2, 0)
    np.testing.assert_array_equal(augmented.crops[n:], copies)
    np.testing.assert_array_equal(augmented.masks[n:], masks)
    np.testing.assert_allclose(augmented.features[n:], MeanColour()(copies), atol=1e-6)
    assert augmented.masks[:n].min() == 1 and augmented.description["jitter"]["copies"] == 2
    assert not np.allclose(augmented.features[n : 2 * n], plain.features)


def test_jitter_needs_faces_in_memory(tmp_path):
    with pytest.raises(training_set.SfcError, match="--jitter goes with --data_dir"):
        training_set.load(records_path=str(tmp_path), jitter_copies=1)
