"""Codecs whose payload is a library's file without what a decoder can rebuild.

The encoder lets the library write its file (an AVIF, a WebP, a JPEG XL codestream), keeps only the bytes that
change from image to image, and checks that the decoder's rebuild of the file from those bytes is the library's
file, byte for byte: a library that starts writing something else stops the encoder, it never writes a payload
the decoder would rebuild wrongly. The rebuilt parts (containers, geometry, sequence headers) are constants of
the format for the crop geometry, so a payload cannot declare another geometry.
"""

from __future__ import annotations

import abc

import numpy as np

from sfc_tf.enhancement import CROP_SHAPE, ImageCodec
from sfc_tf.errors import BitstreamError, SfcError


class HeaderlessCodec(ImageCodec):
    """An image codec storing a library's file minus its rebuildable header (``strip`` and ``rebuild``). The library
    is imagecodecs, whose functions are named after the codec: ``<name>_encode`` at level ``parameter`` with
    ``options``, and ``<name>_decode``."""

    library: str  # the file format, for messages
    options: dict  # imagecodecs' encoder options besides the level

    def __init__(self, parameter, shape: tuple[int, int, int] = CROP_SHAPE):
        if tuple(shape) != CROP_SHAPE:
            raise ValueError(f"the {self.library} payload is defined for {CROP_SHAPE} crops, not {tuple(shape)}")
        super().__init__(parameter, shape)

    def write_file(self, image: np.ndarray) -> bytes:
        """The library's file of ``image`` at this codec's setting."""
        import imagecodecs

        return getattr(imagecodecs, f"{self.name}_encode")(image, level=self.parameter, **self.options)

    def read_file(self, data: bytes) -> np.ndarray:
        """The library's decoding of a file."""
        import imagecodecs

        return getattr(imagecodecs, f"{self.name}_decode")(data)

    @abc.abstractmethod
    def strip(self, data: bytes) -> bytes:
        """The payload: the file without what ``rebuild`` restores."""

    @abc.abstractmethod
    def rebuild(self, payload: bytes) -> bytes:
        """The file of a payload."""

    def encode(self, image: np.ndarray) -> bytes:
        data = self.write_file(self.check_image(image))
        payload = self.strip(data)
        if self.rebuild(payload) != data:
            raise SfcError(
                f"the installed {self.library} encoder wrote a file whose header differs from the one the format "
                f"rebuilds (see docs/bitstream.md): install the pinned imagecodecs"
            )
        return payload

    def decode(self, payload: bytes) -> np.ndarray:
        if not payload:
            raise BitstreamError(f"empty {self.library} payload")
        data = self.rebuild(payload)
        try:
            image = self.read_file(data)
        except Exception as exc:  # imagecodecs raises its own error classes, ValueError, RuntimeError...
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise BitstreamError(f"cannot decode {self.library} payload ({len(payload)} bytes): {reason}") from exc
        return self.check_decoded(np.asarray(image), f"{self.library} payload")
