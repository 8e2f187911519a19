"""The .sfc container (version 4, reading 3): round trips, scalability by truncation, layer binding, hostile input,
the authenticated variant."""

import dataclasses
import hashlib
import hmac
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sfc_tf import bitstream
from sfc_tf.bitstream import (
    CONDITIONAL,
    JPEG,
    JPEG_FILE,
    LEARNED,
    MEAN_FACE,
    MMSE,
    NO_PREDICTION,
    RECONSTRUCTION,
    MinMax,
)
from sfc_tf.errors import AuthenticationError, BitstreamError

BASE = bitstream.SfcFile("mtcnn", 9, bytes(range(1, 26)))
FULL = dataclasses.replace(
    BASE, enhancement=bitstream.Enhancement(JPEG, MEAN_FACE, b"\xff\xd8" + b"x" * 300, MinMax(-12.0, 40.5))
)
FULL_V3 = dataclasses.replace(FULL, enhancement=dataclasses.replace(FULL.enhancement, codec=JPEG_FILE))
KEY = bytes(range(100, 132))
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


def golden(sfc: bitstream.SfcFile, tag: int) -> bytes:
    """``sfc`` written by hand, byte by byte as docs/bitstream.md lays it out, under format tag ``tag``."""
    header = bytes([tag << 2 | bitstream.ALIGNMENTS.index(sfc.alignment), sfc.model_set, len(sfc.base_payload)])
    base = header + sfc.base_payload + reference_crc16(header + sfc.base_payload).to_bytes(2, "big")
    if sfc.enhancement is None:
        return base
    e = sfc.enhancement
    part = bytes([e.codec << 4 | e.mode]) + (e.model_id.to_bytes(2, "big") if e.codec in (3, 4) else b"")
    part += (e.span.to_bytes() if e.span else b"") + e.payload
    return base + part + zlib.crc32(base + part).to_bytes(4, "big")


def test_golden_bytes():
    """The format byte by byte (docs/bitstream.md): a change to pack or unpack that keeps them symmetric but
    changes the bytes fails here."""
    assert reference_crc16(b"123456789") == 0x29B1
    assert bitstream.pack(BASE) == bytes([0b111110_00, 9, 25]) + BASE.base_payload + bytes.fromhex("33fd")
    for sfc in (BASE, FULL, LEARNED_FULL):
        assert bitstream.pack(sfc) == golden(sfc, 0b111110)
    e = bitstream.pack(LEARNED_FULL)[len(bitstream.pack(BASE)) :]
    assert e[:3].hex() == "4459c2" and e[3:-4] == b"latent" * 50 and len(e) == 3 + 300 + 4


def test_version_3_files_are_read():
    """Version 3 is version 4's plain layout under tag 0b111101, with codec ids 1..4 only."""
    for sfc in (BASE, FULL_V3, LEARNED_FULL):
        data = golden(sfc, 0b111101)
        assert bitstream.unpack(data) == sfc and bitstream.unpack_base(data) == dataclasses.replace(
            sfc, enhancement=None
        )
        assert bitstream.info(data)["format_version"] == 3 and bitstream.strip_enhancement(data) == golden(
            BASE, 0b111101
        )
    assert bitstream.info(bitstream.pack(FULL))["format_version"] == 4
    with pytest.raises(BitstreamError, match="unknown enhancement codec id 5 in a version-3 file"):
        bitstream.unpack(golden(FULL, 0b111101))  # codec 5, the headerless JPEG, came with version 4


def test_a_conditional_layer_without_prediction_is_refused():
    """The conditional codec codes the face given a prediction: mode none is no combination of the format's, refused
    by the parser like an unknown codec (written by hand, and as a real file's mode byte would be changed)."""
    with pytest.raises(ValueError, match="conditional"):
        bitstream.pack(dataclasses.replace(BASE, enhancement=bitstream.Enhancement(CONDITIONAL, NO_PREDICTION, b"x")))
    data = bytearray(bitstream.pack(LEARNED_FULL))
    start = bitstream.base_part_bytes(bytes(data))
    assert data[start] == CONDITIONAL << 4 | MMSE
    data[start] = CONDITIONAL << 4 | NO_PREDICTION
    data[-4:] = zlib.crc32(bytes(data[:-4])).to_bytes(4, "big")
    with pytest.raises(BitstreamError, match="conditional.*cannot be none"):
        bitstream.unpack(bytes(data))


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
        with pytest.raises(BitstreamError, match=f"format version {version}.*reads versions 3 and 4"):
            bitstream.unpack(b"SF" + bytes([version]) + bytes(20))


@pytest.mark.parametrize(
    "offset,value,message",
    [(0, 0x53, "format tag"), (0, 0xF7, "alignment"), (0, 0xFB, "alignment"), (1, 0, "model set 0")],
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
        lambda c, p, i: bitstream.Enhancement(c, NO_PREDICTION, p, None, i if c == 3 else 0),
        st.sampled_from([1, 2, 3]),
        st.binary(min_size=1, max_size=400),
        st.integers(0, 0xFFFF),
    ),
    st.builds(
        lambda m, p, i: bitstream.Enhancement(CONDITIONAL, m, p, None, i),
        st.sampled_from([0, 2, 3, 4]),
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
    key=st.sampled_from([None, KEY]),
)
def test_round_trip_property(payload, enhancement, model_set, alignment, key):
    sfc = bitstream.SfcFile(alignment, model_set, payload, enhancement)
    data = bitstream.pack(sfc, key)
    assert bitstream.unpack(data, key) == sfc
    assert bitstream.pack(bitstream.unpack(data, key), key) == data


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


# -- the authenticated variant ------------------------------------------------------------------------------------


def test_authenticated_golden_bytes():
    """Tag 0b111111, then the plain layout, then HMAC-SHA-256 of every byte before it, its first 16 bytes."""
    for sfc in (BASE, FULL, LEARNED_FULL):
        body = golden(sfc, 0b111111)
        assert bitstream.pack(sfc, KEY) == body + hmac.new(KEY, body, hashlib.sha256).digest()[:16]
        assert bitstream.unpack(bitstream.pack(sfc, KEY), KEY) == sfc


def test_authentication_needs_the_right_key_both_ways():
    data, plain = bitstream.pack(FULL, KEY), bitstream.pack(FULL)
    for read in (bitstream.unpack, bitstream.unpack_base):
        with pytest.raises(AuthenticationError, match="give its key"):
            read(data)
        with pytest.raises(AuthenticationError, match="does not verify"):
            read(data, bytes(32))
        with pytest.raises(AuthenticationError, match="not authenticated"):
            read(plain, KEY)  # a key given: a file without a tag is refused (it could be a tagged one, untagged)
    assert bitstream.unpack_base(data, KEY) == BASE
    with pytest.raises(ValueError, match="at least 16 bytes"):
        bitstream.pack(FULL, b"short")


def test_strip_and_info_of_an_authenticated_file():
    data = bitstream.pack(FULL, KEY)
    with pytest.raises(AuthenticationError, match="needs its key"):
        bitstream.strip_enhancement(data)
    assert bitstream.strip_enhancement(data, KEY) == bitstream.pack(BASE, KEY)
    with pytest.raises(AuthenticationError):
        bitstream.strip_enhancement(data, bytes(32))
    unchecked, checked = bitstream.info(data), bitstream.info(data, KEY)
    assert unchecked["authenticated"] and not unchecked["tag_verified"] and checked["tag_verified"]
    assert checked["base_part_bits"] + checked["enhancement_part_bits"] + 128 == checked["file_bits"]
    assert not bitstream.info(bitstream.pack(FULL))["authenticated"]


@pytest.mark.parametrize("sfc", [BASE, FULL, LEARNED_FULL], ids=["base", "jpeg", "conditional"])
def test_every_single_byte_change_of_an_authenticated_file_is_refused(sfc):
    """Every position, every other value; every truncation; a byte inserted anywhere: none verifies."""
    data = bitstream.pack(sfc, KEY)
    changed = [data[:i] + bytes([v]) + data[i + 1 :] for i in range(len(data)) for v in range(256) if v != data[i]]
    changed += [data[:i] for i in range(len(data))] + [data[:i] + b"\x00" + data[i:] for i in range(len(data) + 1)]
    for bad in changed:
        for read in (bitstream.unpack, bitstream.unpack_base):
            with pytest.raises(BitstreamError):
                read(bad, KEY)


def test_random_multi_byte_changes_of_an_authenticated_file_are_refused():
    rng = np.random.default_rng(7)
    data = bitstream.pack(FULL, KEY)
    for _ in range(20_000):
        bad = np.frombuffer(data, np.uint8).copy()
        where = rng.choice(len(data), int(rng.integers(2, 9)), replace=False)
        bad[where] ^= rng.integers(1, 256, len(where)).astype(np.uint8)  # every chosen byte changes
        with pytest.raises(BitstreamError):
            bitstream.unpack(bad.tobytes(), KEY)
