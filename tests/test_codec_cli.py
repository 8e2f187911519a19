"""The scalable codec end to end and the sfc command line, with the shipped base layer and a stand-in
(untrained) reconstructor, so the test does not depend on a training run."""

import numpy as np
import pytest

from sfc_tf import bitstream, cli, metrics, reconstructor
from sfc_tf.codec import ScalableCodec
from sfc_tf.errors import BitstreamError, ModelMismatchError


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    directory = tmp_path_factory.mktemp("models")
    reconstructor.save(reconstructor.Reconstructor(512).build_for_inference(), directory / "reconstructor")
    return directory


@pytest.fixture(scope="module")
def codec(models):
    return ScalableCodec(reconstructor_dir=models / "reconstructor", align="center")


@pytest.mark.parametrize("enhancement,quality", [("jpeg", 90), ("jpeg2000", 8)])
def test_layers_decode_in_order_of_fidelity(codec, fixture_lfw_dir, enhancement, quality):
    image = fixture_lfw_dir / "AJ_Cook" / "AJ_Cook_0001.jpg"
    crop = codec.crop(image)
    data = codec.encode(image, enhancement, quality)
    base = codec.decode(data, "base")
    reconstruction = codec.decode(data, "reconstruction")
    full = codec.decode(data, "full")
    assert base.image is None and base.feature.shape == (512,)
    np.testing.assert_array_equal(base.feature, full.feature)
    assert metrics.psnr(crop, full.image) > metrics.psnr(crop, reconstruction.image) + 10
    assert metrics.psnr(crop, full.image) > 30
    stripped = bitstream.strip_enhancement(data)
    np.testing.assert_array_equal(codec.decode(stripped, "full").image, reconstruction.image)


def test_base_feature_matches_the_original_features(codec, fixture_crops):
    records = codec.encode_crops(fixture_crops)
    decoded = np.stack([d.feature for d in codec.decode_many(records, "base")])
    original = codec.extractor(fixture_crops)
    assert np.all(np.sum(decoded * original, axis=1) > 0.9)     # cosine similarity to the uncoded feature


def test_wrong_model_is_named(codec, models, fixture_crops, tmp_path):
    data = codec.encode_crops(fixture_crops[:1])[0]
    reconstructor.save(reconstructor.Reconstructor(512).build_for_inference(), tmp_path / "other")
    other = ScalableCodec(reconstructor_dir=tmp_path / "other", align="center")
    other.decode(data, "base")                                   # analysis needs only the base-layer model
    with pytest.raises(ModelMismatchError, match="reconstructor"):
        other.decode(data, "reconstruction")
    step = ScalableCodec(base_layer_path="checkpoints/base_layer/step_0.2.npz", align="center")
    with pytest.raises(ModelMismatchError, match="base_layer"):
        step.decode(data, "base")
    with pytest.raises(BitstreamError):
        codec.decode(data[:-1], "base")


def test_cli_round_trip(models, fixture_lfw_dir, tmp_path, capsys):
    common = ["--reconstructor", str(models / "reconstructor")]
    image = str(fixture_lfw_dir / "Abel_Pacheco" / "Abel_Pacheco_0001.jpg")
    other = str(fixture_lfw_dir / "Abel_Pacheco" / "Abel_Pacheco_0004.jpg")
    stranger = str(fixture_lfw_dir / "AJ_Cook" / "AJ_Cook_0001.jpg")
    out = tmp_path / "out"
    assert cli.run(["compress", image, other, stranger, str(out), "--enhancement", "jpeg", "--quality", "70",
                    "--align", "center", *common]) == 0
    files = sorted(out.glob("*.sfc"))
    assert len(files) == 3
    assert cli.run(["decompress", str(files[0]), str(tmp_path / "a.png"), *common]) == 0
    assert cli.run(["decompress", str(files[0]), str(tmp_path / "a.png"), *common]) == 1   # no overwrite
    assert "exists" in capsys.readouterr().err
    assert cli.run(["strip", str(files[0]), str(tmp_path / "base.sfc")]) == 0
    assert cli.run(["info", str(tmp_path / "base.sfc")]) == 0
    assert '"layers": [\n    "base"\n  ]' in capsys.readouterr().out
    assert cli.run(["compare", str(out / "Abel_Pacheco_0001.sfc"), str(out / "Abel_Pacheco_0004.sfc")]) == 0
    assert capsys.readouterr().out.startswith("same person")
    assert cli.run(["compare", str(out / "Abel_Pacheco_0001.sfc"), str(out / "AJ_Cook_0001.sfc")]) == 0
    assert capsys.readouterr().out.startswith("different people")


def test_cli_bad_input_exits_with_a_reason(tmp_path, capsys):
    (tmp_path / "junk.sfc").write_bytes(b"junk")
    assert cli.run(["info", str(tmp_path / "junk.sfc")]) == 1
    assert cli.run(["compress", str(tmp_path / "missing.jpg"), str(tmp_path / "x.sfc")]) == 1
    (tmp_path / "notimage.jpg").write_bytes(b"nope")
    assert cli.run(["compress", str(tmp_path / "notimage.jpg"), str(tmp_path / "y.sfc"), "--align", "center"]) == 1
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 3 and all(line.startswith("sfc ") for line in errors)
