"""Fuzzing ``ScalableCodec.decode`` with mutated real files of every enhancement kind (sfc_tf.evaluation.fuzzing).

In process with hypothesis on the stand-in models of ``tiny_zoo`` (fast); and a short run of the long harness
eval/fuzz_decode.py (atheris/libFuzzer on the shipped models) in a child process whose every decode is bounded by
libFuzzer's RSS limit and per-input timeout.
"""

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sfc_tf import bitstream, zoo
from sfc_tf.codec import LAYERS, ScalableCodec
from sfc_tf.enhancement import registry
from sfc_tf.evaluation import fuzzing

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DECODE_SECONDS = 20.0


@pytest.fixture(scope="module")
def codec(tiny_zoo):
    return ScalableCodec.from_pretrained(align="center")


@pytest.fixture(scope="module")
def corpus(codec, fixture_crops):
    analysis = codec.analyse(fixture_crops[:2])
    files = codec.encode_analysis(analysis, "none").files
    for enhancement, quality in [*fuzzing.SEED_STREAMS[1:], ("conditional", 1)]:
        for mode in ("auto", "mmse" if enhancement == "conditional" else "reconstruction"):
            files += codec.encode_analysis(analysis, enhancement, quality, mode).files
    kinds = {bitstream.unpack(f).enhancement.codec_name for f in files if bitstream.unpack(f).enhancement}
    assert kinds == set(registry.NAMES)
    return files


def test_reseal_reaches_the_payload_parsers(codec, corpus):
    """A resealed byte flip inside a payload passes both CRCs: what rejects it (if anything) is the payload's
    parser, and an unsealed flip is stopped by a CRC."""
    data = bytearray(corpus[-1])
    data[len(data) // 2] ^= 0x10
    assert bitstream.unpack(fuzzing.reseal(bytes(data))).enhancement is not None
    with pytest.raises(bitstream.BitstreamError, match="CRC"):
        bitstream.unpack(bytes(data))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    index=st.integers(0, 10_000),
    seed=st.integers(0, 2**32 - 1),
    layers=st.sampled_from(LAYERS),
    sealed=st.booleans(),
)
def test_mutated_files_are_refused_or_decode_to_a_face(codec, corpus, index, seed, layers, sealed):
    data = fuzzing.mutate(corpus[index % len(corpus)], np.random.default_rng(seed))
    start = time.monotonic()
    fuzzing.decode_checked(codec, fuzzing.reseal(data) if sealed else data, layers)
    assert time.monotonic() - start < DECODE_SECONDS


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(a=st.integers(0, 10_000), b=st.integers(0, 10_000))
def test_every_splice_is_refused_by_name(codec, corpus, a, b):
    first, second = corpus[a % len(corpus)], corpus[b % len(corpus)]
    spliced = fuzzing.splice(first, second)
    if spliced == second or bitstream.base_part_bytes(second) == len(second):
        return  # the same face, or nothing to graft
    fuzzing.decode_splice(codec, spliced)


def test_long_harness_runs_bounded(tmp_path, shipped_checkpoints):
    """eval/fuzz_decode.py on the shipped models: 60 inputs, an RSS limit of 256 MB above the size with every
    registered model loaded and 20 s per input enforced by libFuzzer, 0 crashes, every splice refused, the outcome
    counts written."""
    out = tmp_path / "fuzz.json"
    result = subprocess.run(
        [
            sys.executable,
            os.path.join(REPO, "eval", "fuzz_decode.py"),
            "--runs",
            "60",
            "--output_json",
            str(out),
            "--work_dir",
            str(tmp_path / "work"),
        ],
        capture_output=True,
        text=True,
        timeout=1800,
        env={**os.environ, "SFC_TF_CHECKPOINTS": str(shipped_checkpoints)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["runs"] >= 60 and report["crashes"] == 0 and report["silent_splices"] == 0
    assert set(report["parsed_by_codec"]) == set(bitstream.CODECS.values())
    # every registered model loaded: FaceNet, the sets' base layers, a reconstructor and every learned checkpoint
    # (~40 MB each once built). Measured: 15 checkpoints 1,119 MB, 21 1,227 MB (1,302 MB on CI), 26 1,398-1,421 MB;
    # the bound (450 MB + 45 MB per checkpoint) leaves ~120-200 MB: about one more copy of the reconstructor (~140 MB)
    registered = {
        family.checkpoint(quality)[0].resolve()
        for family in zoo.learned_families().values()
        for quality in family.qualities
    }
    assert report["learned_checkpoints_loaded"] == len(registered) + 1, (  # and the untrained conditional stand-in
        "not every registered checkpoint was loaded, or more than learned._load_cached's bound (32) are registered"
    )
    # a variable-rate checkpoint (one folder, every quality) holds its larger graph, the quality an input: with 11
    # single-rate checkpoints and one 15-quality hyperprior model, 1,054 MB measured (1,335 MB with a graph per quality)
    paths = [family.checkpoint(q)[0].resolve() for family in zoo.learned_families().values() for q in family.qualities]
    variable_rate = {path for path in paths if paths.count(path) > 1}
    assert report["models_loaded_rss_mb"] < 450 + 45 * report["learned_checkpoints_loaded"] + 250 * len(variable_rate)
    assert report["rss_limit_mb"] == report["models_loaded_rss_mb"] + 256
    assert report["peak_rss_mb"] < report["rss_limit_mb"] and report["refused"] > 0 and report["decoded"] > 0


def hyperprior_hang(file: bytes) -> bytes:
    """``file`` (of the shipped hyperprior codec) with a 4-byte payload on which tfc's range decoder never returns:
    its value sits exactly at the bottom of the escape bin of the first hyper-latent symbol's table row, so after the
    escape every Elias-gamma bit decodes as 0 from the zeros past the payload's end. (A 295-byte input the long
    harness found did the same for the retired 6,500-step model.)"""
    import dataclasses

    from sfc_tf.enhancement import learned

    sfc = bitstream.unpack(file)
    path, rate = zoo.learned_family("hyperprior-conditional").checkpoint(3)
    rows = learned.load_codec((path, rate)).coder.model.coder.replay_rows
    precision, end = int(rows.precisions[0]), int(rows.ends[0])
    assert precision < 0, "the first hyper-latent row has no escape code"
    value = ((1 << 32) * int(rows.values[end - 2])) >> -precision
    payload = value.to_bytes(4, "big")
    return bitstream.pack(dataclasses.replace(sfc, enhancement=dataclasses.replace(sfc.enhancement, payload=payload)))


@pytest.mark.parametrize("enhancement, quality", [("learned", 1), ("conditional", 3)], ids=["factorized", "hyperprior"])
def test_range_decoder_hang_is_refused(enhancement, quality, shipped_checkpoints, fixture_lfw_dir):
    """Learned layers on which tensorflow-compression 2.14's range decoder never returns (the factorized one found
    by the long harness; the hyperprior's table rows depend on the symbols before them) are refused before they
    reach the op; real payloads pass the same guard and decode."""
    from sfc_tf.errors import BitstreamError

    codec = ScalableCodec.from_pretrained(align="center")
    real = codec.encode(fixture_lfw_dir / "AJ_Cook" / "AJ_Cook_0001.jpg", enhancement, quality, "reconstruction")
    assert codec.decode(real, "full").image.shape == (160, 160, 3)
    if enhancement == "learned":
        hang = (fixture_lfw_dir.parent / "fuzz" / "range_decoder_hang.sfc").read_bytes()
    else:
        hang = hyperprior_hang(real)
    start = time.time()
    with pytest.raises(BitstreamError, match="escape code that never ends"):
        codec.decode(hang, "full")
    assert time.time() - start < 60
    assert codec.decode(hang, "reconstruction").image.shape == (160, 160, 3)  # its base layer is intact
