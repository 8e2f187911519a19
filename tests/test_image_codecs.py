"""The image codecs (anchors and enhancement layer) and their registry: JPEG (a file, or headerless), JPEG2000,
AVIF, JPEG XL, WebP."""

import numpy as np
import pytest

from sfc_tf import bitstream, metrics
from sfc_tf.enhancement import jpeg, jpeg_scan, jpeg_tables, registry
from sfc_tf.enhancement.registry import make_codec
from sfc_tf.errors import BitstreamError

IMAGE_CODECS = [name for name in registry.NAMES if not registry.CODECS[name].learned]
HEADERLESS = ("jpeg", "avif", "jpegxl", "webp")
# (coarse, fine) settings of each codec
RATES = {
    "jpeg": (5, 90),
    "jpeg-file": (5, 90),
    "jpeg2000": (100, 8),
    "avif": (5, 80),
    "jpegxl": (5, 90),
    "webp": (5, 90),
}


def test_the_registry_names_every_codec_of_the_container_once():
    assert sorted(registry.CODECS[name].codec_id for name in registry.NAMES) == sorted(bitstream.CODECS)
    assert all(bitstream.CODECS[registry.CODECS[name].codec_id] == name for name in registry.NAMES)
    assert set(IMAGE_CODECS) == set(RATES)


@pytest.mark.parametrize("name", IMAGE_CODECS)
def test_round_trip_and_rate_knob(fixture_crops, name):
    image = fixture_crops[0]
    low, high = RATES[name]
    coarse, fine = make_codec(name, low), make_codec(name, high)
    small, large = coarse.encode(image), fine.encode(image)
    assert len(small) < len(large)
    decoded = fine.decode(large)
    assert decoded.shape == image.shape and decoded.dtype == np.uint8
    assert metrics.psnr(image, decoded) > metrics.psnr(image, coarse.decode(small)) > 20
    assert coarse.codec_id == fine.codec_id == registry.CODECS[name].codec_id
    # a decoder needs no quality: the registry's decoder of the codec id decodes any quality's payload
    np.testing.assert_array_equal(registry.decoder(coarse.codec_id).decode(large), decoded)


@pytest.mark.parametrize("name", IMAGE_CODECS)
def test_damaged_payloads_raise(fixture_crops, name):
    codec = make_codec(name, RATES[name][1])
    data = codec.encode(fixture_crops[1])
    for damaged in (b"", data[:10], data[: len(data) // 4], b"\x00" * 64, b"\xff" * 64):
        with pytest.raises(BitstreamError):
            codec.decode(damaged)


@pytest.mark.parametrize("name", HEADERLESS)
def test_headerless_payloads_hold_nothing_the_decoder_rebuilds(fixture_crops, name):
    """The payload is the library's file without its header: the decoder's rebuild is that file byte for byte, and
    the payload starts with no container, signature, geometry or table."""
    codec = make_codec(name, 40)
    payload = codec.encode(fixture_crops[2])
    if name == "jpeg":
        markers = {payload[i + 1] for i in range(1, len(payload) - 1) if payload[i] == 0xFF}
        assert payload[0] == 40 and markers <= {0x00}  # the scan only: stuffed bytes, no marker
        return
    library_file = codec.write_file(fixture_crops[2])
    assert codec.rebuild(payload) == library_file and len(payload) < len(library_file)
    start = {"avif": (b"\x12\x00", b"\x0a\x06", b"\x32"), "jpegxl": (b"\xff\x0a",), "webp": (b"RIFF",)}[name]
    assert not payload.startswith(start) and b"ftyp" not in payload[:64] and b"VP8" not in payload[:64]


def test_avif_payload_is_the_av1_frame_without_the_boxes_and_headers(fixture_crops):
    """What an AVIF file of a crop spends beyond the payload: 275 bytes of ISOBMFF, the temporal delimiter (2), the
    sequence header (8) and the frame OBU's header (1 + its LEB128 size)."""
    codec = make_codec("avif", 10)
    payload = codec.encode(fixture_crops[0])
    assert len(codec.write_file(fixture_crops[0])) - len(payload) == 275 + 2 + 8 + 1 + len(
        bitstream.leb128(len(payload))
    )


def test_headerless_jpeg_decodes_as_the_libjpeg_file_of_its_coefficients(fixture_crops):
    """The same pixels as libjpeg's own file: only the Huffman tables differ (fixed per quality)."""
    import io

    from PIL import Image

    image = fixture_crops[3]
    for quality in (1, 37, 100):
        file = jpeg.write_image(image, quality, optimize=True)
        decoded = make_codec("jpeg", quality).decode(make_codec("jpeg", quality).encode(image))
        np.testing.assert_array_equal(decoded, np.asarray(Image.open(io.BytesIO(file))))


@pytest.mark.parametrize("name", IMAGE_CODECS)
def test_encoding_with_the_decoded_images_is_encoding_then_decoding(fixture_crops, name):
    """What the mode decision measures while encoding is what a decoder gets from the payloads."""
    flat = np.full_like(fixture_crops[0], 128)  # a residual image of a perfect prediction
    images = np.concatenate([fixture_crops[:3], flat[None]])
    for quality in RATES[name]:
        codec = make_codec(name, quality)
        payloads, decoded = codec.encode_decode_many(images)
        assert payloads == codec.encode_many(images)
        np.testing.assert_array_equal(decoded, codec.decode_many(payloads))


def test_jpeg_scan_coding_is_libjpegs():
    """Decoding libjpeg's scan and coding it again with the standard tables gives libjpeg's bytes; the optimal
    tables of a scan's counts code it in as many bytes as libjpeg's optimisation pass (T.81 Annex K.2)."""
    image = np.random.default_rng(0).integers(0, 256, (160, 160, 3)).astype(np.uint8)
    for quality in (5, 50, 95):
        data = jpeg._without_jfif(jpeg.write_image(image, quality, optimize=False))
        head = jpeg.header(quality, jpeg_scan.STANDARD_TABLES, image.shape)
        assert data.startswith(head)
        coefficients = jpeg.libjpeg_coefficients(image, quality)
        assert jpeg_scan.encode(coefficients, jpeg_scan.STANDARD_TABLES) == data[len(head) : -2]
        counts = jpeg_scan.counts(coefficients)
        optimal = jpeg_scan.TableSet(
            tuple(jpeg_scan.optimal_table(dict(enumerate(counts[i]))) for i in (0, 1)),
            tuple(jpeg_scan.optimal_table(dict(enumerate(counts[i]))) for i in (2, 3)),
        )
        optimised = jpeg.write_image(image, quality, optimize=True)
        scan_start = optimised.index(b"\xff\xda") + 2 + len(jpeg.SCAN_HEADER) + 2
        assert len(jpeg_scan.encode(coefficients, optimal)) == len(optimised) - scan_start - 2


def test_every_quality_has_tables_that_code_every_symbol():
    for quality in (1, 50, 100):
        tables = jpeg_tables.tables(quality)
        assert set(tables.dc[0].codes) == set(tables.dc[1].codes) == set(jpeg_scan.DC_SYMBOLS)
        assert set(tables.ac[0].codes) == set(tables.ac[1].codes) == set(jpeg_scan.AC_SYMBOLS)
        assert all(length <= 16 for t in (*tables.dc, *tables.ac) for _, length in t.codes.values())


@pytest.mark.parametrize("quality", [0, 101, 255])
def test_headerless_jpeg_refuses_a_quality_it_has_no_tables_for(fixture_crops, quality):
    payload = make_codec("jpeg", 50).encode(fixture_crops[0])
    with pytest.raises(BitstreamError, match="quality"):
        make_codec("jpeg").decode(bytes([quality]) + payload[1:])


def test_webp_payload_declaring_a_partition_past_its_end_is_refused(fixture_crops):
    payload = bytearray(make_codec("webp", 50).encode(fixture_crops[0]))
    payload[:3] = (int.from_bytes(payload[:3], "little") | 0x7FFFF << 5).to_bytes(3, "little")
    with pytest.raises(BitstreamError, match="first partition"):
        make_codec("webp").decode(bytes(payload))


def test_jpeg2000_damage_reported_only_as_a_warning_is_refused_quietly(fixture_crops, capfd):
    codec = make_codec("jpeg2000", 20)
    data = codec.encode(fixture_crops[1])
    siz_end = 4 + int.from_bytes(data[4:6], "big")
    unknown_marker = b"\xff\x6f\x00\x04\x00\x00"  # OpenJPEG warns "Unknown marker", skips it and decodes on
    with pytest.raises(BitstreamError, match="Unknown marker"):
        codec.decode(data[:siz_end] + unknown_marker + data[siz_end:])
    assert "Traceback" not in capfd.readouterr().err


@pytest.mark.parametrize(
    "name,quality",
    [
        ("jpeg", 0),
        ("jpeg", 101),
        ("jpeg", "abc"),
        ("jpeg", 2.5),
        ("jpeg", True),
        ("jpeg-file", "50.5"),
        ("jpeg2000", 0.5),
        ("jpeg2000", float("inf")),
        ("jpeg2000", "nan"),
        ("avif", 100),
        ("avif", -1),
        ("jpegxl", 101),
        ("webp", "high"),
    ],
)
def test_bad_qualities_are_refused_with_the_range(name, quality):
    with pytest.raises(ValueError, match=f"{name} quality must be .*\\.\\."):
        registry.check_quality(name, quality)
    with pytest.raises(ValueError):
        make_codec(name, quality)


def test_qualities_are_converted_once():
    assert registry.check_quality("jpeg", "50") == 50 and registry.check_quality("jpeg", 50.0) == 50
    assert registry.check_quality("jpeg2000", "40") == 40.0 and registry.check_quality("avif", np.int64(7)) == 7
    assert {name: registry.check_quality(name) for name in IMAGE_CODECS} == {
        name: registry.CODECS[name].quality.default for name in IMAGE_CODECS
    }


def test_bad_codecs_and_inputs(fixture_crops):
    with pytest.raises(ValueError, match="unknown enhancement codec 'png'"):
        make_codec("png", 1)
    with pytest.raises(ValueError):
        make_codec("jpeg", 50).encode(fixture_crops[0].astype(np.float32))
    for name in ("avif", "jpegxl", "webp"):
        with pytest.raises(ValueError, match="160, 160, 3"):
            make_codec(name, 50, shape=(320, 320, 3))
