"""JPEG (Pillow/libjpeg), quality 1-100 as the rate knob, 4:2:0 chroma subsampling.

Two codecs:
  ``jpeg-file``  the paper's: a whole JPEG file with optimised Huffman tables (Pillow's ``optimize=True``)
  ``jpeg``       headerless: one byte of quality, then the entropy-coded scan. The decoder rebuilds the rest of
                 the file from the quality: libjpeg's quantisation tables at that quality, the frame of a 160x160
                 4:2:0 colour image, and Huffman tables fixed per quality (``jpeg_tables``). The encoder codes
                 libjpeg's quantised coefficients with those tables.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from sfc_tf import bitstream
from sfc_tf.enhancement import ImageCodec, jpeg_scan, jpeg_tables
from sfc_tf.errors import BitstreamError, SfcError

SOI, EOI = b"\xff\xd8", b"\xff\xd9"
# Annex K.1: the luminance and chrominance quantisation tables libjpeg scales by quality, in natural order.
LUMINANCE_TABLE = (
    [16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29]
    + [51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92, 49, 64, 78, 87, 103, 121]
    + [120, 101, 72, 92, 95, 98, 112, 100, 103, 99]
)
CHROMINANCE_TABLE = (
    [17, 18, 24, 47] + [99] * 4 + [18, 21, 26, 66] + [99] * 4 + [24, 26, 56] + [99] * 5 + [47, 66] + [99] * 38
)
# SOS of a 3-component scan: component 1 with tables 0/0, components 2 and 3 with tables 1/1, spectral 0..63.
SCAN_HEADER = bytes.fromhex("03010002110311003f00")


def read_image(data: bytes, what: str, check_geometry) -> np.ndarray:
    """Pillow's decoding of a JPEG file, its geometry checked (``check_geometry``) before the pixels are decoded."""
    try:
        with Image.open(io.BytesIO(data), formats=["JPEG"]) as image:  # reads the header only
            check_geometry(image.height, image.width, len(image.getbands()), what)
            if image.mode != "RGB":
                raise BitstreamError(f"{what} is {image.mode}, not RGB")
            return np.asarray(image)
    except BitstreamError:
        raise
    except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError... on damaged data
        raise BitstreamError(f"cannot decode {what} ({len(data)} bytes): {exc}") from exc


def write_image(image: np.ndarray, quality: int, optimize: bool) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=quality, optimize=optimize, subsampling="4:2:0")
    return buffer.getvalue()


class JpegFileCodec(ImageCodec):
    """The paper's JPEG: the whole file, optimised Huffman tables."""

    codec_id = bitstream.JPEG_FILE

    def encode(self, image: np.ndarray) -> bytes:
        return write_image(self.check_image(image), self.parameter, optimize=True)

    def decode(self, data: bytes) -> np.ndarray:
        return self.check_decoded(read_image(data, "JPEG payload", self.check_geometry), "JPEG payload")


def quantisation_tables(quality: int) -> tuple[bytes, bytes]:
    """libjpeg's luminance and chrominance tables at ``quality`` (jpeg_set_quality, baseline), in zigzag order."""
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    tables = []
    for base in (LUMINANCE_TABLE, CHROMINANCE_TABLE):
        natural = np.clip((np.array(base) * scale + 50) // 100, 1, 255)
        tables.append(natural[jpeg_scan.ZIGZAG].astype(np.uint8).tobytes())
    return tables[0], tables[1]


def _segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + (len(payload) + 2).to_bytes(2, "big") + payload


def header(quality: int, tables: jpeg_scan.TableSet, shape: tuple[int, int, int]) -> bytes:
    """Everything of a baseline 4:2:0 JPEG file before its scan: SOI, DQT, SOF0, DHT, SOS (no JFIF segment)."""
    luminance, chrominance = quantisation_tables(quality)
    height, width = shape[:2]
    frame = bytes([8]) + height.to_bytes(2, "big") + width.to_bytes(2, "big") + bytes.fromhex("03012200021101031101")
    huffman = [
        t.segment_payload(kind, index) for index in (0, 1) for kind, t in ((0, tables.dc[index]), (1, tables.ac[index]))
    ]
    return (
        SOI
        + _segment(0xDB, b"\x00" + luminance)
        + _segment(0xDB, b"\x01" + chrominance)
        + _segment(0xC0, frame)
        + b"".join(_segment(0xC4, t) for t in huffman)
        + _segment(0xDA, SCAN_HEADER)
    )


def scan_bytes(data: bytes) -> int:
    """Bytes of the entropy-coded scan of a baseline JPEG file: after the SOS segment, before EOI."""
    start = data.index(b"\xff\xda")
    return len(data) - (start + 2 + int.from_bytes(data[start + 2 : start + 4], "big")) - len(EOI)


def _without_jfif(data: bytes) -> bytes:
    """A JPEG file without its leading APP0 (JFIF) segment, which only carries a pixel density."""
    if data[2:4] == b"\xff\xe0":
        return data[:2] + data[4 + int.from_bytes(data[4:6], "big") :]
    return data


def libjpeg_coefficients(image: np.ndarray, quality: int) -> np.ndarray:
    """(blocks, 64) quantised DCT coefficients (zigzag) libjpeg codes for ``image`` at ``quality`` (4:2:0), read
    back from the scan it writes with the standard Huffman tables."""
    return _libjpeg_scan(image, quality)[0]


def _libjpeg_scan(image: np.ndarray, quality: int) -> tuple[np.ndarray, bytes]:
    """``libjpeg_coefficients`` and the file they were read from."""
    data = _without_jfif(write_image(image, quality, optimize=False))
    head = header(quality, jpeg_scan.STANDARD_TABLES, image.shape)
    if not (data.startswith(head) and data.endswith(EOI)):
        raise SfcError("the installed libjpeg wrote another JPEG header than the format rebuilds")
    return jpeg_scan.decode(data[len(head) : -len(EOI)], jpeg_scan.STANDARD_TABLES, _blocks(image.shape)), data


def _blocks(shape: tuple[int, ...]) -> int:
    """8x8 blocks of a 4:2:0 colour scan of an image of ``shape``: 6 per 16x16 MCU."""
    return -(-shape[0] // 16) * -(-shape[1] // 16) * len(jpeg_scan.MCU_COMPONENTS)


class JpegCodec(ImageCodec):
    """Headerless JPEG: quality byte + scan coded with the quality's fixed Huffman tables."""

    codec_id = bitstream.JPEG

    def encode(self, image: np.ndarray) -> bytes:
        return self._payload(libjpeg_coefficients(self.check_image(image), self.parameter))

    def _payload(self, coefficients: np.ndarray) -> bytes:
        return bytes([self.parameter]) + jpeg_scan.encode(coefficients, jpeg_tables.tables(self.parameter))

    def encode_decode_many(self, images: np.ndarray) -> tuple[list[bytes], np.ndarray]:
        """The payloads, and their images decoded from libjpeg's own file: the same coefficients and quantisation
        tables as the rebuilt file (only the Huffman tables differ), so the same pixels, without walking the
        payload's scan again."""
        payloads, decoded = [], []
        for image in images:
            coefficients, data = _libjpeg_scan(self.check_image(image), self.parameter)
            payloads.append(self._payload(coefficients))
            decoded.append(read_image(data, "libjpeg's file", self.check_geometry))
        return payloads, np.stack(decoded) if decoded else np.zeros((0, *self.shape), np.uint8)

    def decode(self, data: bytes) -> np.ndarray:
        if len(data) < 2 or not 1 <= data[0] <= 100:
            raise BitstreamError(f"headerless JPEG payload: no quality 1..100 in its first byte ({len(data)} bytes)")
        quality, tables = data[0], jpeg_tables.tables(data[0])
        # libjpeg decodes a scan that ends early or runs on past its blocks without an error: the scan is walked
        # first, so such a payload is refused rather than decoded to a damaged face
        jpeg_scan.check(data[1:], tables, _blocks(self.shape))
        rebuilt = header(quality, tables, self.shape) + data[1:] + EOI
        return self.check_decoded(read_image(rebuilt, "headerless JPEG payload", self.check_geometry), "JPEG payload")
