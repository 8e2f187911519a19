import numpy as np
import pytest

from sfc_tf.evaluation.independent_verifier import DlibVerifier


@pytest.fixture(scope="module")
def verifier():
    return DlibVerifier()


def test_two_photos_of_one_person_are_closer_than_other_people(verifier, fixture_crops):
    # sorted fixture order: AJ_Cook, Aaron_Peirsol x2, Abel_Pacheco x2, Akhmed_Zakayev
    landmarks, _ = verifier.landmarks(fixture_crops)
    descriptors = verifier(fixture_crops, landmarks)
    distances = ((descriptors[:, None] - descriptors[None]) ** 2).sum(-1)
    for first, second in ((1, 2), (3, 4)):
        others = [i for i in range(len(fixture_crops)) if i not in (first, second)]
        assert distances[first, second] < distances[first, others].min()


def test_a_face_aligned_with_another_crops_landmarks_is_still_scored(verifier, fixture_crops):
    landmarks, _ = verifier.landmarks(fixture_crops[:1])
    flat = np.full_like(fixture_crops[:1], 128)
    assert verifier(flat, landmarks).shape == (1, 128)


def test_crops_and_landmarks_must_pair_up(verifier, fixture_crops):
    landmarks, _ = verifier.landmarks(fixture_crops[:2])
    with pytest.raises(ValueError, match="landmark"):
        verifier(fixture_crops[:3], landmarks)
