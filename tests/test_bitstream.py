"""The .sfc container (versions 3 and 4): round trips, scalability by truncation, layer binding, hostile input."""

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sfc_tf import bitstream
from sfc_tf.bitstream import CONDITIONAL, JPEG, LEARNED, MEAN_FACE, MMSE, NO_PREDICTION, RECONSTRUCTION, MinMax
from sfc_tf.errors import BitstreamError

BASE = bitstream.SfcFile("mtcnn", 9, bytes(range(1, 26)))
FULL = dataclasses.replace(
    BASE, enhancement=bitstream.Enhancement(JPEG, MEAN_FACE, b"\xff\xd8" + b"x" * 300, MinMax(-12.0, 40.5))
)
LEARNED_FULL = dataclasses.replace(
    BASE, enhancement=bitstream.Enhancement(CONDITIONAL, MMSE, b"latent" * 50, None, 0x59C2)
)


def test_round_trips():
    for sfc in (BASE, FULL, LEARNED_FULL):
        assert bitstream.unpack(bitstream.pack(sfc)) == sfc
    assert bitstream.unpack_base(bitstream.pack(FULL)) == BASE


def reference_crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE bit by bit (poly 0x1021, init 0xFFFF): the check value of b"123456789" is 0x29B1."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def test_golden_bytes():
    """The format byte by byte (docs/bitstream.md): a change to pack or unpack that keeps them symmetric but
    changes the bytes fails here."""
    assert reference_crc16(b"123456789") == 0x29B1
    header = bytes([0b111110_00, 9, 25])  # version-4 tag + mtcnn, model set 9, length 25
    crc = reference_crc16(header + BASE.base_payload).to_bytes(2, "big")
    assert bitstream.pack(BASE) == header + BASE.base_payload + crc
    assert bitstream.pack(BASE).hex().endswith("33fd")
    base = bitstream.pack(BASE)
    e = bitstream.pack(LEARNED_FULL)[len(base) :]
    assert e[:3].hex() == "4459c2" and e[3:-4] == b"latent" * 50 and len(e) == 3 + 300 + 4
    import zlib

    assert e[-4:] == zlib.crc32(base + e[:-4]).to_bytes(4, "big")


def as_version_3(data: bytes) -> bytes:
    """A version-4 file with the version-3 tag, its CRCs recomputed (version 3 is version 4 with codecs 1..4)."""
    from sfc_tf import fuzzing

    return fuzzing.reseal(bytes([0b111101_00 | data[0] & 3]) + data[1:])


def test_version_3_files_are_read_with_the_codecs_version_3_knows():
    for sfc in (
        BASE,
        LEARNED_FULL,
        dataclasses.replace(FULL, enhancement=dataclasses.replace(FULL.enhancement, codec=1)),
    ):
        data = as_version_3(bitstream.pack(sfc))
        assert bitstream.unpack(data) == sfc and bitstream.info(data)["format_version"] == 3
    assert bitstream.info(bitstream.pack(FULL))["format_version"] == 4
    with pytest.raises(BitstreamError, match="unknown enhancement codec id 5 .format version 3"):
        bitstream.unpack(as_version_3(bitstream.pack(FULL)))  # codec 5, the headerless JPEG, came with version 4


def test_base_only_file_costs_the_record_plus_24_bits():
    record_bits = 8 * (len(BASE.base_payload) + bitstream.BASE_CRC_BYTES)
    assert 8 * len(bitstream.pack(BASE)) == record_bits + 24


def test_strip_is_a_valid_base_only_file():
    data = bitstream.pack(FULL)
    stripped = bitstream.strip_enhancement(data)
    assert stripped == bitstream.pack(BASE) and data.startswith(stripped)
    assert bitstream.unpack(stripped) == BASE
    info = bitstream.info(data)
    assert info["layers"] == ["base", "enhancement"] and info["file_bits"] == 8 * len(data)
    assert info["base_part_bits"] + info["enhancement_part_bits"] == info["file_bits"]
    assert info["prediction_mode"] == "mean_face" and info["enhancement_codec"] == "jpeg"


def test_every_truncation_fails_except_the_base_boundary():
    data = bitstream.pack(FULL)
    boundary = len(bitstream.pack(BASE))
    for cut in range(len(data)):
        if cut == boundary:
            assert bitstream.unpack(data[:cut]) == BASE
            continue
        with pytest.raises(BitstreamError):
            bitstream.unpack(data[:cut])


def test_spliced_enhancement_layers_are_refused_by_name():
    other = dataclasses.replace(FULL, base_payload=bytes(range(2, 27)))
    spliced = bitstream.pack(BASE) + bitstream.pack(other)[len(bitstream.pack(BASE)) :]
    with pytest.raises(BitstreamError, match="spliced"):
        bitstream.unpack(spliced)
    assert bitstream.unpack_base(spliced) == BASE  # the base layer alone stays usable


def test_legacy_versions_are_refused_with_their_version():
    for version in (1, 2):
        with pytest.raises(BitstreamError, match=f"format version {version}.*reads versions 3, 4"):
            bitstream.unpack(b"SF" + bytes([version]) + bytes(20))


@pytest.mark.parametrize(
    "offset,value,message", [(0, 0x53, "format tag"), (0, 0xF7, "alignment"), (1, 0, "model set 0")]
)
def test_bad_header_fields(offset, value, message):
    data = bytearray(bitstream.pack(BASE))
    data[offset] = value
    with pytest.raises(BitstreamError, match=message):
        bitstream.unpack(bytes(data))


def test_huge_declared_lengths_are_refused_before_reading():
    data = bytearray(bitstream.pack(BASE))
    data[2:3] = b"\xff\x7f"  # base length 16,383 > 4096
    with pytest.raises(BitstreamError, match="exceeds"):
        bitstream.unpack(bytes(data))
    data = bytearray(bitstream.pack(BASE))
    data[2:3] = b"\x99\x00"  # a non-minimal length encoding
    with pytest.raises(BitstreamError, match="minimally"):
        bitstream.unpack(bytes(data))


def test_enhancement_payload_limit():
    part = bytes([JPEG << 4 | NO_PREDICTION])
    huge = bitstream.pack(BASE) + part + bytes(bitstream.MAX_ENHANCEMENT_PAYLOAD + 5)
    with pytest.raises(BitstreamError, match="exceeds the limit"):
        bitstream.unpack(huge)


def test_unknown_codec_and_mode():
    with pytest.raises(BitstreamError, match="codec id"):
        bitstream.unpack(bitstream.pack(BASE) + b"\x90" + b"\x00" * 20)
    with pytest.raises(BitstreamError, match="prediction mode"):
        bitstream.unpack(bitstream.pack(BASE) + b"\x1f" + b"\x00" * 20)


def test_pack_rejects_invalid_contents():
    bad_enhancements = [
        bitstream.Enhancement(JPEG, RECONSTRUCTION, b"x"),  # residual without range
        bitstream.Enhancement(JPEG, NO_PREDICTION, b"x", MinMax(0, 1)),  # range without residual
        bitstream.Enhancement(JPEG, NO_PREDICTION, b"x", None, 7),  # model id for JPEG
        bitstream.Enhancement(LEARNED, NO_PREDICTION, b""),
    ]  # empty payload
    for bad in [
        dataclasses.replace(BASE, base_payload=b""),
        dataclasses.replace(BASE, alignment="dlib"),
        dataclasses.replace(BASE, model_set=0),
    ] + [dataclasses.replace(BASE, enhancement=e) for e in bad_enhancements]:
        with pytest.raises(ValueError):
            bitstream.pack(bad)


enhancements = st.one_of(
    st.none(),
    st.builds(
        lambda c, m, p, low, high: bitstream.Enhancement(c, m, p, MinMax(min(low, high), max(low, high))),
        st.sampled_from([1, 2, 3]),
        st.sampled_from([0, 2, 3, 4]),
        st.binary(min_size=1, max_size=400),
        st.integers(-255, 255).map(float),
        st.integers(-255, 255).map(float),
    ),
    st.builds(
        lambda c, p, i: bitstream.Enhancement(c, NO_PREDICTION, p, None, i if c in (3, 4) else 0),
        st.sampled_from([1, 2, 3, 4]),
        st.binary(min_size=1, max_size=400),
        st.integers(0, 0xFFFF),
    ),
)


@settings(max_examples=300, deadline=None)
@given(
    payload=st.binary(min_size=1, max_size=300),
    enhancement=enhancements,
    model_set=st.integers(1, 255),
    alignment=st.sampled_from(bitstream.ALIGNMENTS),
)
def test_round_trip_property(payload, enhancement, model_set, alignment):
    sfc = bitstream.SfcFile(alignment, model_set, payload, enhancement)
    data = bitstream.pack(sfc)
    assert bitstream.unpack(data) == sfc
    assert bitstream.pack(bitstream.unpack(data)) == data


@settings(max_examples=500, deadline=None)
@given(data=st.binary(max_size=400))
def test_random_bytes_parse_to_their_own_bytes_or_raise(data):
    try:
        parsed = bitstream.unpack(data)
    except BitstreamError:
        return
    assert bitstream.pack(parsed) == data


@settings(max_examples=500, deadline=None)
@given(position=st.integers(0, 10_000), flip=st.integers(1, 255), which=st.sampled_from([FULL, LEARNED_FULL]))
def test_mutations_are_detected(position, flip, which):
    data = bytearray(bitstream.pack(which))
    data[position % len(data)] ^= flip
    with pytest.raises(BitstreamError):
        bitstream.unpack(bytes(data))
