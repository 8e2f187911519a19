"""The .sfc container: round trips, scalability by truncation, and hostile input."""

import dataclasses

import pytest
from hypothesis import given, settings, strategies as st

from sfc_tf import bitstream
from sfc_tf.enhancement import JPEG, LEARNED
from sfc_tf.enhancement.minmax import MinMax
from sfc_tf.errors import BitstreamError, ModelMismatchError

BASE = bitstream.SfcFile("mtcnn", 160, 160, 0x1234, 0xABCD, 0x0F0F, bytes(range(1, 30)))
FULL = dataclasses.replace(BASE, enhancement=bitstream.Enhancement(JPEG, 0, MinMax(-12.0, 40.5), b"\xff\xd8" + b"x" * 300))


def test_round_trips():
    for sfc in (BASE, FULL):
        assert bitstream.unpack(bitstream.pack(sfc)) == sfc
    assert bitstream.unpack_base(bitstream.pack(FULL)) == BASE


def test_strip_is_a_valid_base_only_file():
    data = bitstream.pack(FULL)
    stripped = bitstream.strip_enhancement(data)
    assert stripped == bitstream.pack(BASE) and data.startswith(stripped)
    assert bitstream.unpack(stripped) == BASE
    info = bitstream.info(data)
    assert info["layers"] == ["base", "enhancement"] and info["file_bits"] == 8 * len(data)
    assert info["base_part_bits"] + info["enhancement_part_bits"] == info["file_bits"]


def test_container_overhead_is_small():
    overhead = len(bitstream.pack(BASE)) - len(BASE.base_payload)
    assert overhead <= 16


def test_every_truncation_fails_except_the_base_boundary():
    data = bitstream.pack(FULL)
    boundary = len(bitstream.pack(BASE))
    for cut in range(len(data)):
        if cut == boundary:
            assert bitstream.unpack(data[:cut]) == BASE
            continue
        with pytest.raises(BitstreamError):
            bitstream.unpack(data[:cut])


@pytest.mark.parametrize("offset,value,message", [
    (0, ord("X"), "magic"), (2, 2, "version"), (3, 7, "alignment"), (4, 0, "geometry")])
def test_bad_header_fields(offset, value, message):
    data = bytearray(bitstream.pack(BASE))
    data[offset] = value
    with pytest.raises(BitstreamError, match=message):
        bitstream.unpack(bytes(data))


def test_huge_declared_lengths_are_refused_before_reading():
    data = bytearray(bitstream.pack(BASE))
    data[12:13] = b"\xff\x7f"                     # base length 16,383 > 4096
    with pytest.raises(BitstreamError, match="exceeds"):
        bitstream.unpack(bytes(data))
    enhancement = bitstream.pack(BASE) + bytes([JPEG, 0, 0]) + MinMax(0, 1).to_bytes() + b"\xff\xff\xff\xff\x0f"
    with pytest.raises(BitstreamError):
        bitstream.unpack(enhancement)


def test_unknown_enhancement_codec_and_trailing_bytes():
    with pytest.raises(BitstreamError, match="codec id"):
        bitstream.unpack(bitstream.pack(BASE) + b"\x09" + b"\x00" * 20)
    with pytest.raises(BitstreamError, match="unexpected bytes"):
        bitstream.unpack(bitstream.pack(FULL) + b"\x00")


def test_require_models_names_what_is_missing():
    sfc = dataclasses.replace(FULL, enhancement=dataclasses.replace(FULL.enhancement, codec_id=LEARNED, model_id=7))
    bitstream.require_models(sfc, {"base_layer": 0xABCD, "enhancement": 7})
    with pytest.raises(ModelMismatchError, match="reconstructor model 0f0f \\(have 0001\\)"):
        bitstream.require_models(sfc, {"reconstructor": 1})
    with pytest.raises(ModelMismatchError, match="enhancement model 0007 \\(none loaded\\)"):
        bitstream.require_models(sfc, {"enhancement": None})


def test_pack_rejects_invalid_contents():
    for bad in (dataclasses.replace(BASE, height=150), dataclasses.replace(BASE, base_payload=b""),
                dataclasses.replace(BASE, alignment="dlib")):
        with pytest.raises(ValueError):
            bitstream.pack(bad)


@settings(max_examples=300, deadline=None)
@given(payload=st.binary(min_size=1, max_size=300), enhancement=st.one_of(st.none(), st.binary(min_size=1, max_size=500)),
       ids=st.tuples(*[st.integers(0, 0xFFFF)] * 3), side=st.integers(1, 20))
def test_round_trip_property(payload, enhancement, ids, side):
    sfc = bitstream.SfcFile("center", 16 * side, 16 * side, *ids, payload,
                            None if enhancement is None else bitstream.Enhancement(LEARNED, 3, MinMax(-1.0, 2.0), enhancement))
    assert bitstream.unpack(bitstream.pack(sfc)) == sfc


@settings(max_examples=500, deadline=None)
@given(data=st.binary(max_size=400))
def test_random_bytes_raise_only_bitstream_errors(data):
    try:
        bitstream.unpack(data)
    except BitstreamError:
        pass


@settings(max_examples=500, deadline=None)
@given(position=st.integers(0, 10_000), flip=st.integers(1, 255))
def test_mutations_are_detected(position, flip):
    data = bytearray(bitstream.pack(FULL))
    data[position % len(data)] ^= flip
    with pytest.raises(BitstreamError):
        bitstream.unpack(bytes(data))
