"""The enhancement codecs, each declared once: the id and name the container gives it (``sfc_tf.bitstream``), what
its quality means (type, range, default), where it is implemented, and its rate-distortion slope for the per-face
mode decision (``sfc_tf.enhancement.decision``).

``check_quality`` turns a user's quality (a number, or its text from a command line) into the codec's, or raises a
one-line ``ValueError`` naming the range; it reads no model (a learned codec's range is its family's number of
qualities, from the registry file), so the CLI calls it before loading anything. A learned codec codes with a
family of its ``family_kind`` (``learned_family``). ``make_codec`` builds the
``ImageCodec`` of a checked quality (for a learned codec: of a checkpoint, ``(directory, rate index)``).

The slopes are dPSNR / d ln(bits) of each codec coding LFW crops directly, read off the anchor curves of
eval/results/rate_distortion*.json: JPEG 9-11 dB per e-fold between qualities 5 and 60, JPEG2000 7.4-7.6 between
ratios 200 and 25, the shipped end-to-end learned family (bls2017-original) 4.7, 4.6, 4.4 between its qualities
1 and 4 (rate_distortion_learned.json); on 200 crops (bits: the payload + 330, the base part and the
enhancement header): the headerless JPEG 7.8-8.2 between qualities 5 and 60 (the JPEG file 9.3-11.2 on the same
crops), AVIF 6.3-7.2 between 5 and 60, JPEG XL 7.8-8.9 between 10 and 70, WebP 6.7-7.0 between 0 and 70.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import numbers
from typing import TYPE_CHECKING

from sfc_tf import bitstream
from sfc_tf.enhancement import CROP_SHAPE

if TYPE_CHECKING:
    from sfc_tf.enhancement import ImageCodec
    from sfc_tf.zoo import LearnedFamily, ModelSet


@dataclasses.dataclass(frozen=True)
class Quality:
    """What a codec's quality is: a number of ``kind`` in ``low..high``, ``default`` when none is given (both None
    for a learned codec: its family has qualities 1..N, and the middle one, (N + 1) // 2, is the default)."""

    kind: type
    low: float
    high: float | None
    default: int | float | None
    meaning: str

    def describe(self, high: float | None = None) -> str:
        high = self.high if high is None else high
        return f"{self.meaning} {self.low:g}..{high:g}" if high is not None else f"{self.meaning} >= {self.low:g}"


@dataclasses.dataclass(frozen=True)
class Codec:
    """One enhancement codec."""

    codec_id: int
    summary: str  # what it is, in a few words (command-line help)
    quality: Quality
    rd_slope_db: float
    implementation: str  # "module:class" under sfc_tf.enhancement
    family_kind: str | None = None  # learned codecs: the kind of registered family (sfc_tf.zoo) they code with

    @property
    def name(self) -> str:
        return bitstream.CODECS[self.codec_id]

    @property
    def learned(self) -> bool:
        return self.family_kind is not None


_JPEG_QUALITY = Quality(int, 1, 100, 50, "a JPEG quality")
_LEARNED_QUALITY = Quality(int, 1, None, None, "a quality index of the learned family (sfc models lists them)")
CODECS = {
    codec.name: codec
    for codec in (
        Codec(bitstream.JPEG, "headerless JPEG", _JPEG_QUALITY, 8.0, "jpeg:JpegCodec"),
        Codec(bitstream.JPEG_FILE, "the paper's (a whole JPEG file)", _JPEG_QUALITY, 10.0, "jpeg:JpegFileCodec"),
        Codec(
            bitstream.JPEG2000,
            "a raw JPEG2000 codestream",
            Quality(float, 1, 10_000, 40.0, "a JPEG2000 compression ratio"),
            7.5,
            "jpeg2000:Jpeg2000Codec",
        ),
        Codec(
            bitstream.AVIF,
            "AV1 without the AVIF container",
            Quality(int, 0, 99, 50, "an AVIF quality"),
            7.0,
            "avif:AvifCodec",
        ),
        Codec(
            bitstream.JPEGXL,
            "a JPEG XL codestream without its header",
            Quality(int, 0, 100, 50, "a JPEG XL quality"),
            8.0,
            "jpegxl:JpegXlCodec",
        ),
        Codec(
            bitstream.WEBP,
            "a WebP (VP8) frame without its container",
            Quality(int, 0, 100, 50, "a WebP quality"),
            6.8,
            "webp:WebpCodec",
        ),
        Codec(
            bitstream.LEARNED,
            "the model set's learned residual family",
            _LEARNED_QUALITY,
            4.5,
            "learned:load_codec",
            "residual",
        ),
        Codec(
            bitstream.CONDITIONAL,
            "the model set's conditional family",
            _LEARNED_QUALITY,
            4.5,
            "learned:load_codec",
            "conditional",
        ),
    )
}
NAMES = tuple(CODECS)
NO_ENHANCEMENT = "none"  # no enhancement layer: a base-only file
ENHANCEMENTS = (NO_ENHANCEMENT, *NAMES)  # what a command's --enhancement takes


def codec(name: str) -> Codec:
    if name not in CODECS:
        raise ValueError(f"unknown enhancement codec {name!r}; use one of {', '.join(NAMES)}")
    return CODECS[name]


def learned_family(
    name: str, family: str | None = None, model_set: ModelSet | int | str | None = None
) -> LearnedFamily:
    """The learned family learned codec ``name`` codes with: ``family`` by name, else model set ``model_set``'s
    default family of the codec's kind (``None``: the default model set's; ``sfc_tf.zoo``)."""
    from sfc_tf import zoo

    chosen_set = model_set if isinstance(model_set, zoo.ModelSet) else zoo.model_set(model_set)
    return zoo.learned_family(family, codec(name).family_kind, chosen_set)


def check_quality(
    name: str, value: object = None, family: str | None = None, model_set: ModelSet | int | str | None = None
) -> int | float | None:
    """Codec ``name``'s quality of ``value`` (``None``: its default), converted and range-checked; ``None`` for
    ``NO_ENHANCEMENT``, which has no quality. A learned codec's range is that of its family (``family``, or model set
    ``model_set``'s default: ``sfc_tf.zoo``)."""
    if name == NO_ENHANCEMENT:
        return None
    entry = codec(name)
    quality = entry.quality
    high = len(learned_family(name, family, model_set).rates) if entry.learned else quality.high
    if value is None:
        return (high + 1) // 2 if entry.learned else quality.default
    try:
        number = float(value) if quality.kind is float else _integer(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} quality must be {quality.describe(high)}, not {value!r}") from None
    if not math.isfinite(number) or number < quality.low or (high is not None and number > high):
        raise ValueError(f"{name} quality must be {quality.describe(high)}, not {value!r}")
    return number


def _integer(value: object) -> int:
    """An integer from an integral number or its digits (not from 2.5, "2.5" or True)."""
    if isinstance(value, str):
        return int(value.strip())
    if isinstance(value, numbers.Real) and not isinstance(value, bool) and float(value).is_integer():
        return int(value)
    raise TypeError(value)


def make_codec(name: str, parameter=None, shape: tuple[int, int, int] = CROP_SHAPE) -> ImageCodec:
    """The image codec ``name``: at quality ``parameter`` (checked; ``None``: the default), or for a learned codec
    of the checkpoint ``parameter`` (a directory, or ``(directory, rate index)`` of a variable-rate one)."""
    entry = codec(name)
    module, attribute = entry.implementation.split(":")
    implementation = getattr(importlib.import_module(f"sfc_tf.enhancement.{module}"), attribute)
    if entry.learned:
        return implementation(parameter, shape)
    return implementation(check_quality(name, parameter), shape)


def decoder(codec_id: int) -> ImageCodec:
    """The decoder of a non-learned codec's payloads (their decoding needs no quality)."""
    return make_codec(bitstream.CODECS[codec_id])
