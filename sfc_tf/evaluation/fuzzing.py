"""Mutation fuzzing of the decoder on real encoded files (tests/test_fuzz.py and the long harness eval/fuzz_decode.py).

A mutated file is *resealed*: its CRCs are recomputed where its (mutated) header puts them, so that a mutation
reaches the parsers behind the checksums (the range decoder, JPEG, JPEG2000 and learned payloads) instead of being
stopped by a CRC. Spliced files (one face's base part followed by another face's enhancement part) are not
resealed: the decoder must refuse every one of them. A decode either raises an ``SfcError`` (refused) or returns
what a valid file gives: a finite unit-norm feature and, for the image layers, a 160x160 RGB uint8 face.
"""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np

from sfc_tf import bitstream
from sfc_tf.errors import SfcError

INTERESTING_BYTES = (0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF)
# (enhancement, quality) of the seed corpus's files of every crop, in the paper's and the auto mode
SEED_STREAMS = (
    ("none", None),
    ("jpeg-file", 50),
    ("jpeg", 50),
    ("jpeg2000", 40.0),
    ("avif", 40),
    ("jpegxl", 40),
    ("webp", 40),
    ("learned", 1),
)


class FuzzFailure(AssertionError):
    """The decoder accepted a file it must refuse, or returned something no valid file gives."""


def base_part_end(data: bytes) -> int | None:
    """Where the base part's CRC ends according to the header bytes (valid or not), or None if it cannot."""
    if len(data) < 3:
        return None
    length, shift, pos = 0, 0, 2
    for pos in range(2, min(len(data), 4)):
        length |= (data[pos] & 0x7F) << shift
        shift += 7
        if not data[pos] & 0x80:
            break
    end = pos + 1 + length
    return end + bitstream.BASE_CRC_BYTES if end + bitstream.BASE_CRC_BYTES <= len(data) else None


def reseal(data: bytes) -> bytes:
    """``data`` with its CRC-16 (and, when an enhancement part follows, its CRC-32) recomputed in place."""
    out = bytearray(data)
    end = base_part_end(out)
    if end is None:
        return bytes(out)
    out[end - 2 : end] = bitstream.crc16(bytes(out[: end - 2]))
    if len(out) > end + bitstream.ENHANCEMENT_CRC_BYTES:
        out[-4:] = bitstream.crc32(bytes(out[:-4]))
    return bytes(out)


def splice(base_of: bytes, enhancement_of: bytes) -> bytes:
    """The base part of one file followed by the enhancement part of another."""
    return base_of[: bitstream.base_part_bytes(base_of)] + enhancement_of[bitstream.base_part_bytes(enhancement_of) :]


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    """One to four random edits: bit flips, interesting bytes, insertions, deletions, truncation, duplication."""
    out = bytearray(data)
    for _ in range(int(rng.integers(1, 5))):
        kind = int(rng.integers(6))
        pos = int(rng.integers(len(out) + 1))
        if kind == 0 and out:
            out[min(pos, len(out) - 1)] ^= 1 << int(rng.integers(8))
        elif kind == 1 and out:
            out[min(pos, len(out) - 1)] = INTERESTING_BYTES[int(rng.integers(len(INTERESTING_BYTES)))]
        elif kind == 2:
            out[pos:pos] = rng.integers(0, 256, int(rng.integers(1, 9))).astype(np.uint8).tobytes()
        elif kind == 3:
            del out[pos : pos + int(rng.integers(1, 9))]
        elif kind == 4:
            del out[pos:]
        else:
            out[pos:pos] = out[pos : pos + int(rng.integers(1, 65))]
    return bytes(out)


def check_decoded(decoded, layers: str) -> None:
    feature = np.asarray(decoded.feature)
    if (
        feature.shape != (512,)
        or feature.dtype != np.float32
        or not np.all(np.isfinite(feature))
        or abs(float(np.linalg.norm(feature)) - 1) > 1e-3
    ):
        raise FuzzFailure(f"decoded feature {feature.dtype} {feature.shape} is not a finite unit vector")
    if layers == "base":
        if decoded.image is not None:
            raise FuzzFailure("a base-layer decode returned an image")
    elif decoded.image is None or decoded.image.shape != (160, 160, 3) or decoded.image.dtype != np.uint8:
        raise FuzzFailure(f"{layers} decode returned {getattr(decoded.image, 'shape', None)}, not a 160x160 face")


def decode_checked(codec, data: bytes, layers: str) -> str:
    """``refused`` or ``decoded`` (checked); ``FuzzFailure`` for a wrong result, other exceptions are bugs."""
    try:
        decoded = codec.decode(data, layers)
    except SfcError:
        return "refused"
    check_decoded(decoded, layers)
    return "decoded"


def decode_splice(codec, data: bytes) -> None:
    """A spliced file must be refused whole (``full``), by its binding."""
    try:
        codec.decode(data, "full")
    except SfcError as exc:
        if "spliced" not in str(exc):
            raise FuzzFailure(f"splice refused for another reason: {exc}") from exc
        return
    raise FuzzFailure("a spliced file decoded silently")


@dataclasses.dataclass
class Corpus:
    files: list[bytes]
    names: list[str]


def conditional_stand_in(directory: str | pathlib.Path) -> pathlib.Path:
    """An untrained, narrow conditional FaceCodec: conditional files in a mode the shipped families are not used in
    by the corpus (MMSE), with a model of another shape."""
    from sfc_tf.enhancement import face_codec, learned

    directory = pathlib.Path(directory)
    if not (directory / "meta.json").is_file():
        learned.save(
            face_codec.FaceCodec([0.001, 0.01], conditional=True, num_filters=16),
            directory,
            input="fuzzing stand-in, untrained",
        )
    return directory


def build_corpus(
    codec, crops: np.ndarray, features: np.ndarray | None = None, conditional_dir: str | pathlib.Path | None = None
) -> Corpus:
    """Real files of ``crops``: base only; every image codec of the registry (JPEG file and headerless, JPEG2000,
    AVIF, JPEG XL, WebP) and learned in the paper's and the auto mode; one face at every quality of every residual
    learned family and its direct partner and of every conditional family (so that every registered learned
    checkpoint has a file); and (with ``conditional_dir``, a checkpoint the codec was given in ``learned_dirs``)
    conditional files of that model in the MMSE mode."""
    from sfc_tf import zoo
    from sfc_tf.codec import enhancement_layer
    from sfc_tf.enhancement import layer, registry

    analysis = codec.analyse(crops, features)
    files, names = [], []
    for enhancement, quality in SEED_STREAMS:
        for mode in ("auto",) if enhancement == "none" else ("reconstruction", "auto"):
            coded = codec.encode_analysis(analysis, enhancement, quality, mode).files
            files += coded
            names += [f"{enhancement}-{mode}-{i}" for i in range(len(coded))]
    one = codec.analyse(crops[:1], None if features is None else features[:1])
    codec_of_kind = {entry.family_kind: name for name, entry in registry.CODECS.items() if entry.learned}
    for family, entry in zoo.learned_families().items():
        if entry.kind not in codec_of_kind:
            continue  # an original family is coded as its residual partner's mode none
        name = codec_of_kind[entry.kind]
        # against the reconstruction, and against nothing where the format allows it
        modes = [
            bitstream.MODES[m]
            for m in (bitstream.RECONSTRUCTION, bitstream.NO_PREDICTION)
            if bitstream.combination_error(registry.codec(name).codec_id, m) is None
        ]
        for quality in entry.qualities:
            for mode in modes:
                files += codec.encode_analysis(one, name, quality, mode, family).files
                names.append(f"{family}{quality}-{mode}-0")
    if conditional_dir is not None:
        conditional = registry.make_codec("conditional", (conditional_dir, 0))
        predictions = analysis.predictions(bitstream.MMSE)
        coded = layer.encode(conditional, bitstream.MMSE, analysis.crops, predictions)
        for i, (payload, c) in enumerate(zip(analysis.base_payloads, coded)):
            enhancement = enhancement_layer(conditional, bitstream.MMSE, c)
            files.append(bitstream.pack(bitstream.SfcFile(codec.align, codec.model_set.id, payload, enhancement)))
            names.append(f"conditional-mmse-{i}")
    return Corpus(files, names)
