"""Conformance vectors (tests/fixtures/conformance): the shipped models and bitstream v4 against stored files, and
files that the last version-3 encoder wrote (``v3/``), which decode as their version-4 twins.

Decoding the stored .sfc files must give the stored features (exactly) and images; encoding the fixture faces
must give the same base layers byte for byte and equivalent enhancement layers. Against what the last v2 code
(commit 1536d5c) wrote for the same faces: the same base-layer and enhancement payloads (only the container
around them changed), and the paper's mode and base-only decoding as before up to the rounding of the old
float32 product (the dequantisation now runs in float64, so that decoding no longer depends on the batch size;
unit-norm features move by < 1e-7), i.e. at most one pixel in a hundred thousand one level apart.
"""

import json
import pathlib
import sys

import numpy as np
import pytest

from sfc_tf import bitstream
from sfc_tf.codec import ScalableCodec

VECTORS = pathlib.Path(__file__).resolve().parent / "fixtures" / "conformance"
sys.path.insert(0, str(VECTORS))
from make_vectors import MODEL_SETS, VECTOR_STREAMS, fixture_crops, learned_checkpoint_ids  # noqa: E402


def stored(name: str) -> list[bytes]:
    return [(VECTORS / f"{name}-{i}.sfc").read_bytes() for i in range(6)]


def unpacked(npz, name: str) -> list[bytes]:
    data, lengths = npz[f"{name}/bytes"].tobytes(), npz[f"{name}/lengths"]
    starts = np.concatenate([[0], np.cumsum(lengths)])
    return [data[a:b] for a, b in zip(starts[:-1], starts[1:])]


@pytest.fixture(scope="module")
def codec(shipped_checkpoints):
    return ScalableCodec.from_pretrained(align="center")


@pytest.fixture(scope="module")
def expected():
    return np.load(VECTORS / "expected.npz")


@pytest.fixture(scope="module")
def v2():
    return np.load(VECTORS / "v2_reference.npz")


@pytest.fixture(scope="module")
def codecs(shipped_checkpoints):
    return {name: ScalableCodec.from_pretrained(name, align="center") for name in MODEL_SETS.values()}


@pytest.fixture(scope="module")
def analyses(codecs, expected):
    return {name: codec.analyse(fixture_crops(), expected["facenet_features"]) for name, codec in codecs.items()}


def assert_same_faces(actual: np.ndarray, expected: np.ndarray) -> None:
    """Identical on the CPU that wrote the vectors; on another instruction set TF's convolutions may round a few
    pixels the other way (a changed checkpoint changes nearly all of them)."""
    diff = np.abs(actual.astype(int) - expected.astype(int))
    assert diff.max() <= 2 and np.count_nonzero(diff) <= diff.size // 1000


@pytest.mark.parametrize("name", VECTOR_STREAMS)
def test_encoding_gives_the_stored_files(codecs, analyses, name):
    """Base layers byte for byte (numpy and the range coder only); enhancement layers with the same codec, model
    and size within 2 % (their bytes depend on the networks' float rounding, identical on the writing CPU), 6 % for
    JPEG2000: OpenJPEG's rate allocation truncates at discrete points, and a prediction a few pixels apart can move a
    face across one (an AMX Xeon codes face 4 of thumb2-paper-jpeg2000r40 in 1,970 bytes, not 1,879: same span)."""
    model_set, (enhancement, quality, mode) = VECTOR_STREAMS[name]
    files = codecs[model_set].encode_analysis(analyses[model_set], enhancement, quality, mode).files
    if enhancement == "none":
        assert files == stored(name)
        return
    for new, old in zip(files, stored(name)):
        a, b = bitstream.unpack(new), bitstream.unpack(old)
        assert a.base_payload == b.base_payload and a.alignment == b.alignment and a.model_set == b.model_set
        assert (a.enhancement.codec, a.enhancement.model_id) == (b.enhancement.codec, b.enhancement.model_id)
        assert mode == "auto" or a.enhancement.mode == b.enhancement.mode
        assert abs(len(new) - len(old)) <= (0.06 if enhancement == "jpeg2000" else 0.02) * len(old)


@pytest.mark.parametrize("name", VECTOR_STREAMS)
def test_decoding_gives_the_stored_faces(codec, expected, name):
    """The default codec decodes the files of both model sets with that set's models."""
    decoded = codec.decode_many(stored(name), "full")
    np.testing.assert_array_equal(np.stack([d.feature for d in decoded]), expected["features"])
    assert_same_faces(np.stack([d.image for d in decoded]), expected[f"{name}/image"])
    single = [codec.decode(f, "base").feature for f in stored(name)]
    np.testing.assert_array_equal(np.stack(single), expected["features"])


def test_every_vector_decodes_to_the_same_pixels_alone_and_in_batches(codec):
    """A file decodes to the same bytes whatever else is in its batch (batches of 1 and 2+ rows ran other kernels:
    54 of these files differed by a grey level at the reconstruction, 37 in full)."""
    files = [p.read_bytes() for p in sorted(VECTORS.glob("*.sfc"))]
    for layers in ("reconstruction", "full"):
        alone = [codec.decode(f, layers).image for f in files]
        for size in (4, len(files)):
            batched = [
                d.image for i in range(0, len(files), size) for d in codec.decode_many(files[i : i + size], layers)
            ]
            differing = [i for i, (a, b) in enumerate(zip(alone, batched)) if not np.array_equal(a, b)]
            assert not differing, f"{layers}, batches of {size}: {len(differing)} files differ"


def test_faces_code_to_the_same_files_alone_and_in_a_batch(codec):
    """FaceNet, the predictions and the codecs at batch 1 and batch 6 (before batches of one ran other kernels, one
    JPEG and two JPEG2000 files of the paper's mode differed); mode auto codes every candidate."""
    crops = fixture_crops()
    streams = (("jpeg-file", 90, "reconstruction"), ("jpeg2000", 10.0, "reconstruction"), ("conditional", 3, "auto"))
    for stream in streams:
        together = codec.encode_crops(crops, *stream)
        assert [codec.encode_crops(c[None], *stream)[0] for c in crops] == together, stream


def test_a_conditional_layer_whose_mode_says_none_is_refused(codec):
    """A conditional layer codes the face given a prediction: its mode byte changed to none (codec byte 0x40 ->
    0x41, CRC-32 recomputed) is a combination the format does not have, refused by the parser."""
    data = bytearray(stored("thumb2-conditional3")[0])
    start = bitstream.base_part_bytes(bytes(data))
    assert data[start] == 0x40
    data[start] = 0x41
    data[-4:] = bitstream.crc32(bytes(data[:-4]))
    with pytest.raises(bitstream.BitstreamError, match="conditional.*cannot be none"):
        codec.decode(bytes(data), "full")
    assert codec.decode(bytes(data), "reconstruction").image.shape == (160, 160, 3)  # the base part is intact


# vector name -> its stream's name in v2_reference.npz (the paper's JPEG was "jpeg" before the headerless one)
V2_STREAMS = {
    "base": "base",
    "paper-jpeg-file50": "paper-jpeg50",
    "paper-jpeg2000r40": "paper-jpeg2000r40",
    "paper-learned3": "paper-learned3",
}


@pytest.mark.parametrize("name", V2_STREAMS)
def test_payloads_are_those_of_bitstream_v2(v2, name):
    """v2 records were CRC-16 + payload (v3 moved the CRC to the container); v2 learned payloads began with the
    2-byte latent shape (v3 takes it from the model)."""
    files = [bitstream.unpack(f) for f in stored(name)]
    old = V2_STREAMS[name]
    assert [b"" + f.base_payload for f in files] == [r[2:] for r in unpacked(v2, f"{old}/base_record")]
    if name != "base":
        skip = 2 if name == "paper-learned3" else 0
        assert [f.enhancement.payload for f in files] == [p[skip:] for p in unpacked(v2, f"{old}/enhancement_payload")]


@pytest.mark.parametrize("name", V2_STREAMS)
def test_base_and_paper_mode_decode_as_in_bitstream_v2(expected, v2, name):
    np.testing.assert_allclose(expected["features"], v2["features"], rtol=0, atol=1e-7)
    assert not np.array_equal(expected["features"], v2["features"])  # the vectors do hold the old decode
    image, before = expected[f"{name}/image"].astype(int), v2[f"{V2_STREAMS[name]}/image"].astype(int)
    assert np.abs(image - before).max() <= 1
    assert np.count_nonzero(image != before) <= image.size // 100_000


# version-3 file (written by the last version-3 encoder) -> the version-4 vector with the same payloads
VERSION_3_FILES = {
    "base-0": "base",
    "paper-jpeg50-0": "paper-jpeg-file50",
    "paper-learned3-0": "paper-learned3",
    "auto-jpeg2000r40-0": "auto-jpeg2000r40",
    "faces-auto-learned3-0": "faces-auto-learned3",
    "thumb2-base-0": "thumb2-base",
    "thumb2-paper-jpeg50-0": "thumb2-paper-jpeg-file50",
    "thumb2-paper-jpeg2000r40-0": "thumb2-paper-jpeg2000r40",
    "thumb2-auto-jpeg2000r40-0": "thumb2-auto-jpeg2000r40",
    "thumb2-auto-learned3-0": "thumb2-auto-learned3",
}


def test_every_version_3_file_has_a_twin():
    assert sorted(p.stem for p in (VECTORS / "v3").glob("*.sfc")) == sorted(VERSION_3_FILES)


@pytest.mark.parametrize("name", VERSION_3_FILES)
def test_version_3_files_decode_as_their_version_4_twins(codec, expected, name):
    """Version 4 (plain) is version 3's layout under another tag: the same fields, the same faces."""
    old, new = (VECTORS / "v3" / f"{name}.sfc").read_bytes(), stored(VERSION_3_FILES[name])[0]
    assert old[0] >> 2 == 0b111101 and new[0] >> 2 == 0b111110
    assert bitstream.info(old)["format_version"] == 3 and bitstream.info(new)["format_version"] == 4
    assert bitstream.unpack(old) == bitstream.unpack(new)
    decoded = codec.decode(old, "full")
    np.testing.assert_array_equal(decoded.feature, expected["features"][0])
    np.testing.assert_array_equal(decoded.image, codec.decode(new, "full").image)
    assert_same_faces(decoded.image[None], expected[f"{VERSION_3_FILES[name]}/image"][:1])


def test_every_registered_learned_checkpoint_is_the_one_the_vectors_were_made_with(shipped_checkpoints):
    """Each learned checkpoint loads (its weights and tables match its meta.json) and is the one pinned beside the
    vectors; a retrained model fails here until make_vectors.py is rerun on purpose."""
    pinned = json.loads((VECTORS / "learned_checkpoints.json").read_text())
    assert learned_checkpoint_ids() == pinned and len(pinned) >= 10


def test_no_two_registered_learned_models_of_one_codec_share_a_file_id(shipped_checkpoints):
    """A file names its learned model by codec and 12 bits of the checkpoint's hash plus the rate: a decoder could
    not tell two models of one codec with the same id apart (a residual and a conditional model may share one)."""
    from sfc_tf.codec import registered_learned_models

    owners = {}
    for codec_id, model_id, family, quality in registered_learned_models():
        owner = owners.setdefault((codec_id, model_id), family.checkpoint(quality))
        assert owner == family.checkpoint(quality), f"{family.name} quality {quality} shares id {model_id:04x}"


def test_every_rate_of_the_default_conditional_family_decodes(codec, expected):
    """Each quality of the default set's conditional family, coded and decoded in full (quality 2's id equals a
    residual model's: the decoder must pick the model by codec and id)."""
    from sfc_tf import zoo

    family = zoo.learned_family(kind="conditional", for_set=codec.model_set)
    analysis = codec.analyse(fixture_crops()[:2], expected["facenet_features"][:2])
    for quality in family.qualities:
        files = codec.encode_analysis(analysis, "conditional", quality, "reconstruction").files
        faces = np.stack([d.image for d in codec.decode_many(files, "full")])
        assert faces.shape == (2, 160, 160, 3) and {bitstream.unpack(f).enhancement.codec_name for f in files} == {
            "conditional"
        }


def test_every_registered_model_set_loads_its_own_models(shipped_checkpoints):
    """Each set's reconstructor and predictor carry the ids the registry gives them (a swapped file fails here)."""
    from sfc_tf import zoo

    for model_set in zoo.model_sets().values():
        models = ScalableCodec(model_set, align="center").models
        assert models.reconstructor and models.predictor and models.base_layer  # loading checks the ids


def test_a_file_of_the_faces_set_decodes_with_its_own_reconstructor(shipped_checkpoints):
    from sfc_tf.reconstruction import decoder

    faces = ScalableCodec.from_pretrained("step0.08-faces", align="center")
    paper = ScalableCodec.from_pretrained("step0.08", align="center")
    data = faces.encode_crops(fixture_crops()[:2])
    decoded = faces.decode_many(data, "reconstruction")
    assert bitstream.unpack(data[0]).model_set == faces.model_set.id != paper.model_set.id
    features = np.stack([d.feature for d in decoded])
    expected = decoder.reconstruct(faces.models.reconstructor, features)
    np.testing.assert_array_equal(np.stack([d.image for d in decoded]), expected)
    assert not np.array_equal(expected, decoder.reconstruct(paper.models.reconstructor, features))


def test_each_model_set_codes_with_its_registered_learned_families(codecs, analyses):
    """Every set codes ``learned`` with the paper's family; ours code ``conditional`` with the hyperprior codec."""
    from sfc_tf import zoo
    from sfc_tf.codec import learned_model_id

    streams = (("step0.08", "learned", "bls2017-residual"), ("step0.08-faces", "conditional", "hyperprior-conditional"))
    for model_set, name, family in streams:
        files = codecs[model_set].encode_analysis(analyses[model_set], name, 3, "reconstruction").files
        path, rate = zoo.learned_family(family).checkpoint(3)
        sha256 = json.loads((path / "meta.json").read_text())["sha256"]
        assert {bitstream.unpack(f).enhancement.model_id for f in files} == {learned_model_id(sha256, rate or 0)}


@pytest.mark.parametrize(
    "family, vector",
    [
        ("bls2017-conditional-faces-thumb2", "thumb2-conditional3-0.sfc"),
        ("hyperprior-conditional-6500", "thumb2-hyperprior6500-conditional3-0.sfc"),
    ],
)
def test_a_file_of_a_retired_model_names_it_and_where_to_get_it(shipped_checkpoints, family, vector):
    """Files coded with a retired model fail with one line naming the model and the commit that ships it."""
    from sfc_tf import zoo
    from sfc_tf.errors import ModelMismatchError

    retired = zoo.registry()["retired"]
    entry = next(e for e in retired if e["name"] == family)
    data = (VECTORS / "retired" / vector).read_bytes()  # made before it retired
    model_id, quality = next((m, q) for m, q in entry["models"] if q == 3)
    assert f"{bitstream.unpack(data).enhancement.model_id:04x}" == model_id
    codec = ScalableCodec.from_pretrained("step0.08-faces-thumb2", align="center")
    with pytest.raises(ModelMismatchError, match=f"{model_id}, quality 3 of the retired family .*{entry['commit']}"):
        codec.decode(data, "full")
    assert codec.decode(data, "reconstruction").image.shape == (160, 160, 3)  # its base layer still serves


def test_a_served_codec_refuses_the_reconstruction_of_a_set_it_does_not_serve(shipped_checkpoints):
    """A model server runs one set's reconstructor: another set's files are refused, not decoded with it."""
    from sfc_tf.errors import ModelMismatchError

    class PaperSetServer:  # stands in for a server exporting set step0.08's models; must not be asked here
        def reconstruct(self, features):
            raise AssertionError("the server was asked for another set's reconstruction")

    codec = ScalableCodec.from_pretrained("step0.08", align="center", models=PaperSetServer())
    faces_file = stored("faces-base")[0]
    assert codec.decode(faces_file, "base").feature.shape == (512,)  # the base layer needs no server
    with pytest.raises(ModelMismatchError, match="step0.08-faces"):
        codec.decode(faces_file, "reconstruction")


@pytest.mark.parametrize("prefix", MODEL_SETS)
def test_info_names_the_model_set_and_learned_model_of_a_file(shipped_checkpoints, capsys, prefix):
    from sfc_tf import cli, zoo

    model_set = zoo.model_set(MODEL_SETS[prefix])
    assert cli.run(["info", str(VECTORS / f"{prefix}paper-learned3-0.sfc")]) == 0
    info = json.loads(capsys.readouterr().out)
    family = zoo.learned_family(kind="residual", for_set=model_set).name
    assert (info["model_set"], info["model_set_name"]) == (model_set.id, model_set.name)
    assert info["enhancement_model"] == f"{family} quality 3"
