"""Anchors of the rate-distortion evaluation: image codecs coding the face directly, as the files users store
(``encode`` gives the file) and as the codec's bitstream inside them (``payload_bytes``: the file without its
container). Files of AVIF, WebP, JPEG XL and HEIC as their libraries write them, and the paper's JPEG.

  AVIF      libavif + libaom (imagecodecs): ISOBMFF boxes around the AV1 OBUs; payload: the AV1 item data
  HEIC      libheif + x265 (pillow-heif): ISOBMFF boxes around HEVC; payload: the item's NAL units and the
            parameter sets of its hvcC, each with its 4-byte length
  WebP      libwebp (imagecodecs): RIFF around a VP8 frame; payload: the VP8 frame
  JPEG XL   libjxl (imagecodecs): a bare codestream, which is a .jxl file: payload = file
  JPEG      the paper's JPEG file (Pillow, optimised Huffman tables); payload: its entropy-coded scan, without
            the markers and tables (which a decoder cannot do without: the headerless JPEG implies them)
"""

from __future__ import annotations

import io

import numpy as np

from sfc_tf.enhancement import isobmff, jpeg, webp


class FileAnchor:
    """Files of one image format at one setting; ``name`` labels the curve."""

    def __init__(self, name: str, parameter, encode, decode, payload_bytes=len) -> None:
        self.name, self.parameter = name, parameter
        self._encode, self._decode, self.payload_bytes = encode, decode, payload_bytes

    def encode_many(self, images: np.ndarray) -> list[bytes]:
        return [self._encode(image) for image in images]

    def decode_many(self, files: list[bytes]) -> np.ndarray:
        return np.stack([np.asarray(self._decode(data)) for data in files])


def avif(quality: int, pixel_format: str = "yuv444", speed: int = 6) -> FileAnchor:
    import imagecodecs

    return FileAnchor(
        f"avif {pixel_format} speed {speed}",
        quality,
        lambda image: imagecodecs.avif_encode(image, level=quality, speed=speed, pixelformat=pixel_format),
        imagecodecs.avif_decode,
        lambda data: len(isobmff.primary_item(data).data),
    )


def webp_file(quality: int) -> FileAnchor:
    import imagecodecs

    return FileAnchor(
        "webp",
        quality,
        lambda image: imagecodecs.webp_encode(image, level=quality, method=webp.METHOD, lossless=False),
        imagecodecs.webp_decode,
        lambda data: len(webp.vp8_frame(data)),
    )


def jpegxl_file(quality: int) -> FileAnchor:
    import imagecodecs

    return FileAnchor(
        "jpegxl",
        quality,
        lambda image: imagecodecs.jpegxl_encode(image, level=quality, usecontainer=False),
        imagecodecs.jpegxl_decode,
    )


def jpeg_file(quality: int) -> FileAnchor:
    from sfc_tf.enhancement.registry import make_codec

    codec = make_codec("jpeg-file", quality)
    return FileAnchor(codec.name, quality, codec.encode, codec.decode, jpeg.scan_bytes)


def hevc_payload_bytes(data: bytes) -> int:
    """The HEVC bitstream of a HEIC file: its item data and the parameter-set NAL units of its hvcC (each with a
    4-byte length, as NAL units in the item data have)."""
    item = isobmff.primary_item(data)
    config = item.properties["hvcC"]
    pos, parameter_sets = 23, 0
    for _ in range(config[22]):
        count = int.from_bytes(config[pos + 1 : pos + 3], "big")
        pos += 3
        for _ in range(count):
            length = int.from_bytes(config[pos : pos + 2], "big")
            parameter_sets += 4 + length
            pos += 2 + length
    return len(item.data) + parameter_sets


def heic(quality: int) -> FileAnchor:
    import pillow_heif

    def encode(image: np.ndarray) -> bytes:
        buffer = io.BytesIO()
        pillow_heif.from_bytes("RGB", image.shape[1::-1], image.tobytes()).save(buffer, quality=quality)
        return buffer.getvalue()

    def decode(data: bytes) -> np.ndarray:
        heif = pillow_heif.open_heif(io.BytesIO(data))
        return np.array(heif)  # a copy: the array interface points into memory that goes with ``heif``

    return FileAnchor("heic", quality, encode, decode, hevc_payload_bytes)


def library_versions() -> dict[str, str]:
    """Versions of the image-codec libraries (imagecodecs bundles libavif, libaom, libjxl, libwebp and libjpeg-turbo;
    pillow-heif libheif and x265), for the result files."""
    import ctypes
    import pathlib

    import imagecodecs
    import PIL

    bundled = imagecodecs.version(dict)
    versions = {"imagecodecs": imagecodecs.__version__, "pillow": PIL.__version__}
    versions |= {name: bundled[name] for name in ("libavif", "libjxl", "libwebp", "libjpeg_turbo", "openjpeg")}
    aom = next((pathlib.Path(imagecodecs.__file__).parent.parent / "imagecodecs.libs").glob("libaom-*.so*"), None)
    if aom is not None:  # the libaom libavif was built with; imagecodecs does not report it
        version = ctypes.CDLL(str(aom)).aom_codec_version_str
        version.restype = ctypes.c_char_p
        versions["libaom"] = version().decode()
    if available("heic"):
        import pillow_heif

        info = pillow_heif.libheif_info()
        versions |= {
            "pillow_heif": pillow_heif.__version__,
            "libheif": info["libheif"],
            "x265": info["encoders"]["x265"],
        }
    return versions


def available(kind: str) -> bool:
    """Whether the library of an anchor kind is installed (HEIC's pillow-heif is an evaluation extra)."""
    import importlib.util

    return importlib.util.find_spec("pillow_heif" if kind == "heic" else "imagecodecs") is not None
