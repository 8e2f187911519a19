"""JPEG and JPEG2000 image codecs (anchors and enhancement layer)."""

import numpy as np
import pytest

from sfc_tf import metrics
from sfc_tf.enhancement import JPEG, JPEG2000, make_codec
from sfc_tf.errors import BitstreamError


@pytest.mark.parametrize("name,low,high", [("jpeg", 5, 90), ("jpeg2000", 100, 8)])
def test_round_trip_and_rate_knob(fixture_crops, name, low, high):
    image = fixture_crops[0]
    coarse, fine = make_codec(name, low), make_codec(name, high)
    small, large = coarse.encode(image), fine.encode(image)
    assert len(small) < len(large)
    decoded = fine.decode(large)
    assert decoded.shape == image.shape and decoded.dtype == np.uint8
    assert metrics.psnr(image, decoded) > metrics.psnr(image, coarse.decode(small)) > 20
    assert coarse.codec_id == fine.codec_id == {"jpeg": JPEG, "jpeg2000": JPEG2000}[name]


@pytest.mark.parametrize("name,parameter", [("jpeg", 50), ("jpeg2000", 20)])
def test_damaged_payloads_raise(fixture_crops, name, parameter):
    codec = make_codec(name, parameter)
    data = codec.encode(fixture_crops[1])
    for damaged in (b"", data[:10], data[: len(data) // 2], b"\x00" * 64):
        with pytest.raises(BitstreamError):
            codec.decode(damaged)


def test_jpeg2000_damage_reported_only_as_a_warning_is_refused_quietly(fixture_crops, capfd):
    codec = make_codec("jpeg2000", 20)
    data = codec.encode(fixture_crops[1])
    siz_end = 4 + int.from_bytes(data[4:6], "big")
    unknown_marker = b"\xff\x6f\x00\x04\x00\x00"  # OpenJPEG warns "Unknown marker", skips it and decodes on
    with pytest.raises(BitstreamError, match="Unknown marker"):
        codec.decode(data[:siz_end] + unknown_marker + data[siz_end:])
    assert "Traceback" not in capfd.readouterr().err


def test_bad_parameters_and_inputs(fixture_crops):
    with pytest.raises(ValueError):
        make_codec("jpeg", 0)
    with pytest.raises(ValueError):
        make_codec("jpeg2000", 0.5)
    with pytest.raises(ValueError):
        make_codec("webp", 1)
    with pytest.raises(ValueError):
        make_codec("jpeg", 50).encode(fixture_crops[0].astype(np.float32))
