"""Coding many files at once (sfc_tf.apps.batch_encode, sfc_tf.apps.prefetch): the bytes of files coded alone, bad files
failing alone, alignment threads that stop when their consumer does."""

import threading
import time

import numpy as np
import pytest

from sfc_tf.apps import batch_encode
from sfc_tf.apps.prefetch import prefetched_map
from sfc_tf.codec import ScalableCodec
from sfc_tf.errors import ImageError, SfcError


@pytest.fixture(scope="module")
def codec(tiny_zoo):
    return ScalableCodec.from_pretrained(align="center")


def test_a_bad_file_fails_alone(codec, fixture_lfw_dir, tmp_path):
    images = sorted(fixture_lfw_dir.glob("*/*.jpg"))[:3]
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    sources = [images[0], tmp_path / "bad.jpg", images[1], tmp_path / "missing.jpg", images[2]]
    outcomes = list(batch_encode.encode_files(codec, sources, "jpeg", 50, batch_size=2))
    assert [o.source for o in outcomes] == sources
    assert [o.error is None for o in outcomes] == [True, False, True, False, True]
    assert all(isinstance(o.error, ImageError) for o in outcomes[1::2])
    assert [o.data for o in outcomes[::2]] == [codec.encode(image, "jpeg", 50) for image in images]


def test_a_wrong_sized_crop_is_an_image_error(tiny_zoo, fixture_lfw_dir):
    codec = ScalableCodec.from_pretrained(align="crop")
    (outcome,) = batch_encode.encode_files(codec, [fixture_lfw_dir / "AJ_Cook" / "AJ_Cook_0001.jpg"])
    assert isinstance(outcome.error, ImageError) and "160x160" in str(outcome.error)


def test_a_batch_that_fails_is_coded_face_by_face(tiny_zoo, fixture_crops, monkeypatch):
    codec = ScalableCodec.from_pretrained(align="crop")
    poison = fixture_crops[2]
    encode_crops = ScalableCodec.encode_crops

    def fails_with_the_poison(self, crops, *args, **kwargs):
        if any(np.array_equal(crop, poison) for crop in crops):
            raise SfcError("cannot code this face")
        return encode_crops(self, crops, *args, **kwargs)

    monkeypatch.setattr(ScalableCodec, "encode_crops", fails_with_the_poison)
    sources = list(fixture_crops)
    outcomes = list(batch_encode.encode_files(codec, sources, batch_size=4))
    assert [o.error is None for o in outcomes] == [True, True, False, True, True, True]
    assert str(outcomes[2].error) == "cannot code this face"
    assert outcomes[0].data == codec.encode(fixture_crops[0])


def test_batch_size_is_checked(codec):
    for size in (0, batch_encode.MAX_BATCH + 1):
        with pytest.raises(ValueError, match="batch_size"):
            next(batch_encode.encode_files(codec, [], batch_size=size))


def test_prefetched_map_keeps_the_order_and_each_item_its_error():
    def slow_inverse(x):
        time.sleep(0.01 * (x % 3))
        return 1 / x

    futures = list(prefetched_map(slow_inverse, range(-4, 5), workers=3, ahead=4))
    assert [f.exception() is not None for f in futures] == [i == 0 for i in range(-4, 5)]
    assert [f.result() for f in futures if f.exception() is None] == [1 / x for x in range(-4, 5) if x]


def test_prefetched_map_runs_ahead_a_bounded_number_and_stops_with_its_consumer():
    started = []
    gate = threading.Event()

    def record(x):
        started.append(x)
        gate.wait(5)
        return x

    futures = prefetched_map(record, range(100), workers=2, ahead=3)
    first = next(futures)
    gate.set()
    assert first.result() == 0
    futures.close()  # cancels what has not started, waits for what has
    assert len(started) <= 4 and sorted(started) == list(range(len(started)))
    with pytest.raises(ValueError):
        next(prefetched_map(record, [], workers=0, ahead=1))


# last: its module fixture, set up before tiny_zoo, would drop tiny_zoo's registry when the module ends
def test_batched_files_are_the_bytes_of_files_coded_alone(shipped_checkpoints, fixture_lfw_dir):
    """MTCNN, the default model set, JPEG enhancement with the per-face mode decision: batches of 5 and 1."""
    codec = ScalableCodec.from_pretrained()
    images = sorted(fixture_lfw_dir.glob("*/*.jpg"))
    outcomes = list(batch_encode.encode_files(codec, images, "jpeg", 50, batch_size=5, workers=2))
    assert [o.source for o in outcomes] == images and all(o.error is None for o in outcomes)
    for image, outcome in zip(images, outcomes):
        assert outcome.data == codec.encode(image, "jpeg", 50), image
