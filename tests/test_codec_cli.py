"""The scalable codec end to end (modes, mode decision, layers, binding, batches) and the sfc command line, with
the shipped base layers and untrained stand-in networks (``tiny_zoo``), so the tests do not depend on training."""

import dataclasses

import numpy as np
import pytest

from sfc_tf import bitstream, cli, metrics
from sfc_tf.bitstream import MEAN_FACE, MMSE, NO_PREDICTION, RECONSTRUCTION
from sfc_tf.codec import ScalableCodec
from sfc_tf.enhancement import decision, minmax, registry
from sfc_tf.errors import BitstreamError, ModelMismatchError


@pytest.fixture(scope="module")
def codec(tiny_zoo):
    return ScalableCodec.from_pretrained(align="center")


@pytest.fixture(scope="module")
def analysis(codec, fixture_crops):
    return codec.analyse(fixture_crops)


@pytest.mark.parametrize(
    "enhancement,quality",
    [
        ("jpeg", 90),
        ("jpeg-file", 90),
        ("jpeg2000", 8),
        ("avif", 80),
        ("jpegxl", 90),
        ("webp", 90),
        ("learned", 2),
        ("conditional", 2),
    ],
)
def test_layers_decode_in_order_of_fidelity(codec, fixture_lfw_dir, enhancement, quality):
    image = fixture_lfw_dir / "AJ_Cook" / "AJ_Cook_0001.jpg"
    crop = codec.crop(image)
    data = codec.encode(image, enhancement, quality)
    base, reconstruction, full = (codec.decode(data, layers) for layers in ("base", "reconstruction", "full"))
    assert base.image is None and base.feature.shape == (512,)
    np.testing.assert_array_equal(base.feature, full.feature)
    assert full.image.shape == reconstruction.image.shape == (160, 160, 3)
    if not registry.codec(enhancement).learned:  # the stand-in learned codecs are untrained
        assert metrics.psnr(crop, full.image) > max(30, metrics.psnr(crop, reconstruction.image) + 5)
    stripped = bitstream.strip_enhancement(data)
    np.testing.assert_array_equal(codec.decode(stripped, "full").image, reconstruction.image)


def test_base_only_file_is_the_record_plus_24_bits(codec, analysis):
    files = codec.encode_analysis(analysis).files
    records = codec.base_layer.encode(analysis.features)  # the features of the crops, coded again
    assert [8 * len(f) for f in files] == [8 * len(r) + 24 for r in records]


def test_base_feature_matches_the_original_features(codec, fixture_crops):
    files = codec.encode_crops(fixture_crops)
    decoded = np.stack([d.feature for d in codec.decode_many(files, "base")])
    original = codec.extractor(fixture_crops)
    assert np.all(np.sum(decoded * original, axis=1) > 0.9)  # cosine similarity to the uncoded feature


def test_paper_mode_decodes_to_reconstruction_plus_residual(codec, analysis):
    """Mode "reconstruction" is the paper's x_hat + decoded min-max residual, computed here independently."""
    from sfc_tf.enhancement.registry import make_codec

    files = codec.encode_analysis(analysis, "jpeg", 60, "reconstruction").files
    faces = np.stack([d.image for d in codec.decode_many(files)])
    jpeg = make_codec("jpeg", 60)
    x_hat = analysis.predictions.reconstruction
    for file, face, recon in zip(files, faces, x_hat):
        e = bitstream.unpack(file).enhancement
        assert e.mode == RECONSTRUCTION
        expected = np.clip(
            np.rint(recon.astype(np.float32) + minmax.denormalise(jpeg.decode(e.payload), e.span)), 0, 255
        )
        np.testing.assert_array_equal(face, expected)


@pytest.mark.parametrize(
    "enhancement,quality",
    [
        ("jpeg", 40),
        ("jpeg-file", 40),
        ("jpeg2000", 30),
        ("avif", 30),
        ("jpegxl", 30),
        ("webp", 30),
        ("learned", 1),
        ("conditional", 1),
    ],
)
def test_auto_mode_never_chooses_a_worse_mode(codec, analysis, enhancement, quality):
    """Per face, the chosen file's cost (PSNR - slope ln bits) is the best of every fixed-mode file's."""
    auto = codec.encode_analysis(analysis, enhancement, quality, "auto")
    candidates = codec.candidates(enhancement, quality, "auto")
    assert len(candidates) >= 2
    slope = registry.codec(enhancement).rd_slope_db

    def costs(files):
        faces = np.stack([d.image for d in codec.decode_many(files)])
        return decision.psnr(analysis.crops, faces) - slope * np.log(8.0 * np.array([len(f) for f in files]))

    fixed = np.stack(
        [
            costs(codec.encode_analysis(analysis, enhancement, quality, bitstream.MODES[mode]).files)
            for _, mode in candidates
        ]
    )
    chosen = costs(auto.files)
    np.testing.assert_allclose(chosen, fixed.max(axis=0), atol=1e-9)
    assert set(auto.modes) <= {mode for _, mode in candidates}


def test_candidate_modes(codec):
    for name in registry.NAMES:
        if not registry.codec(name).learned:  # every image codec takes part in the per-face decision
            auto = codec.candidates(name, None, "auto")
            assert [m for _, m in auto] == [NO_PREDICTION, MEAN_FACE, MMSE]
            assert {c.name for c, _ in auto} == {name}
    assert [m for _, m in codec.candidates("jpeg", 50, "reconstruction")] == [RECONSTRUCTION]
    *direct, conditional = codec.candidates("conditional", 1, "auto")
    assert [m for _, m in direct] == [NO_PREDICTION, MEAN_FACE]
    assert all(c.codec_id == bitstream.LEARNED and not c.conditional for c, _ in direct)
    assert conditional[0].conditional and conditional[1] == MMSE
    *direct, residual = codec.candidates("learned", 1, "auto")
    assert [m for _, m in direct] == [NO_PREDICTION, MEAN_FACE, MMSE] and residual[1] == RECONSTRUCTION
    assert len({c.model_id for c, _ in direct}) == 1 and residual[0].model_id != direct[0][0].model_id
    [(codec_of_mean_face, _)] = codec.candidates("learned", 1, "mean_face")
    assert codec_of_mean_face is direct[0][0]


@pytest.mark.parametrize(
    "enhancement,quality",
    [("jpeg", 80), ("jpeg-file", 80), ("jpeg2000", 10), ("avif", 70), ("jpegxl", 80), ("webp", 80)],
)
def test_every_mode_round_trips(codec, analysis, enhancement, quality):
    for mode in bitstream.MODES.values():
        files = codec.encode_analysis(analysis, enhancement, quality, mode).files
        faces = [d.image for d in codec.decode_many(files)]
        assert all(bitstream.unpack(f).enhancement.mode_name == mode for f in files)
        assert min(metrics.psnr(analysis.crops, np.stack(faces))) > 28


def test_batch_and_single_decoding_give_identical_bytes(codec, analysis):
    files = codec.encode_analysis(analysis, "jpeg", 70, "reconstruction").files
    batch = codec.decode_many(files)
    for file, together in zip(files, batch):
        alone = codec.decode(file)
        np.testing.assert_array_equal(alone.image, together.image)
        np.testing.assert_array_equal(alone.feature, together.feature)
    assert codec.decode_many([], "full") == []


def test_spliced_and_damaged_files(codec, analysis):
    first, second = codec.encode_analysis(analysis, "jpeg", 50, "none").files[:2]
    boundary = bitstream.base_part_bytes(first)
    spliced = first[:boundary] + second[bitstream.base_part_bytes(second) :]
    with pytest.raises(BitstreamError, match="spliced"):
        codec.decode(spliced)
    codec.decode(spliced, "base")  # the base layer alone is intact
    damaged = first[:-10] + bytes([first[-10] ^ 1]) + first[-9:]
    assert codec.decode(damaged, "reconstruction").image.shape == (160, 160, 3)
    with pytest.raises(BitstreamError):
        codec.decode(damaged, "full")


def test_files_of_another_registered_set_decode_with_its_models(codec, analysis, tiny_zoo):
    other = ScalableCodec.from_pretrained("step0.2", align="center")
    data = other.encode_analysis(other.analyse(analysis.crops[:1]), "jpeg", 50).files[0]
    assert bitstream.unpack(data).model_set == 12
    np.testing.assert_array_equal(codec.decode(data, "base").feature, other.decode(data, "base").feature)


def test_unregistered_model_sets_are_named(codec, analysis, tiny_zoo, tmp_path):
    from sfc_tf import reconstructor

    reconstructor.save(reconstructor.Reconstructor(512).build_for_inference(), tmp_path / "mine")
    mine = ScalableCodec.from_paths(
        tiny_zoo / "base_layer" / "step_0.08.npz", tmp_path / "mine", tiny_zoo / "predictor", align="center"
    )
    assert mine.model_set.id >= 128
    data = mine.encode_analysis(mine.analyse(analysis.crops[:1])).files[0]
    with pytest.raises(ModelMismatchError, match="unregistered model set"):
        codec.decode(data, "base")
    assert mine.decode(data, "base").feature.shape == (512,)
    tampered = bytearray(codec.encode_analysis(analysis).files[0])
    tampered[1] = 77  # a set id the registry does not have
    tampered[-2:] = bitstream.crc16(bytes(tampered[:-2]))
    with pytest.raises(ModelMismatchError, match="no model set 77"):
        codec.decode(bytes(tampered), "base")


def test_bad_arguments(codec, analysis):
    for enhancement, quality, mode in (
        ("png", 1, "auto"),
        ("jpeg", "abc", "auto"),
        ("jpeg", 50, "sharpest"),
        ("learned", 9, "auto"),
        ("jpeg2000", float("inf"), "auto"),
        ("avif", 100, "auto"),
    ):
        with pytest.raises(ValueError):
            codec.encode_analysis(analysis, enhancement, quality, mode)
    with pytest.raises(ValueError):
        codec.decode_many([], "pixels")


# -- the command line ---------------------------------------------------------------------------------------------


def test_cli_round_trip(tiny_zoo, fixture_lfw_dir, tmp_path, capsys):
    image = str(fixture_lfw_dir / "Abel_Pacheco" / "Abel_Pacheco_0001.jpg")
    other = str(fixture_lfw_dir / "Abel_Pacheco" / "Abel_Pacheco_0004.jpg")
    stranger = str(fixture_lfw_dir / "AJ_Cook" / "AJ_Cook_0001.jpg")
    out = tmp_path / "out"
    assert (
        cli.run(
            [
                "compress",
                image,
                other,
                stranger,
                str(out),
                "--enhancement",
                "jpeg",
                "--quality",
                "70",
                "--align",
                "center",
            ]
        )
        == 0
    )
    files = sorted(out.glob("*.sfc"))
    assert len(files) == 3 and not list(out.glob(".*"))  # no temporary files left
    assert cli.run(["decompress", str(files[0]), str(tmp_path / "a.png")]) == 0
    assert cli.run(["decompress", str(files[0]), str(tmp_path / "a.png")]) == 1  # no overwrite
    assert "exists" in capsys.readouterr().err
    assert cli.run(["strip", str(files[0]), str(tmp_path / "base.sfc")]) == 0
    assert cli.run(["info", str(tmp_path / "base.sfc")]) == 0
    assert '"layers": [\n    "base"\n  ]' in capsys.readouterr().out
    assert cli.run(["compare", str(out / "Abel_Pacheco_0001.sfc"), str(out / "Abel_Pacheco_0004.sfc")]) == 0
    assert capsys.readouterr().out.startswith("same person")
    assert cli.run(["compare", str(out / "Abel_Pacheco_0001.sfc"), str(out / "AJ_Cook_0001.sfc")]) == 0
    assert capsys.readouterr().out.startswith("different people")
    assert cli.run(["models"]) == 0
    shown = capsys.readouterr().out
    assert "step0.08 (default)" in shown and "conditional face-conditional" in shown


def test_info_names_the_codec_of_every_enhancement_layer(codec, analysis, tmp_path, capsys):
    import json

    one = analysis.slice(0, 1)
    for name in registry.NAMES:
        mode = "mmse" if name == "conditional" else "mean_face"  # the stand-in conditional family's own mode
        data = codec.encode_analysis(one, name, None, mode).files[0]
        (tmp_path / f"{name}.sfc").write_bytes(data)
        assert cli.run(["info", str(tmp_path / f"{name}.sfc")]) == 0
        info = json.loads(capsys.readouterr().out)
        assert info["enhancement_codec"] == name and info["format_version"] == bitstream.VERSION


def test_cli_bad_input_exits_with_a_reason(tiny_zoo, tmp_path, capsys):
    (tmp_path / "junk.sfc").write_bytes(b"junk")
    assert cli.run(["info", str(tmp_path / "junk.sfc")]) == 1
    assert cli.run(["compress", str(tmp_path / "missing.jpg"), str(tmp_path / "x.sfc")]) == 1
    (tmp_path / "notimage.jpg").write_bytes(b"nope")
    assert cli.run(["compress", str(tmp_path / "notimage.jpg"), str(tmp_path / "y.sfc"), "--align", "center"]) == 1
    (tmp_path / "empty").mkdir()
    assert cli.run(["compress", str(tmp_path / "empty"), str(tmp_path / "z")]) == 1
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 4 and all(line.startswith("sfc ") for line in errors)
    assert "no input files" in errors[-1]
    assert not (tmp_path / "y.sfc").exists() and not (tmp_path / "z").exists()


def test_cli_checks_arguments_before_loading_models(tmp_path, capsys, monkeypatch, fixture_lfw_dir):
    def no_models(*args, **kwargs):
        raise AssertionError("models were loaded")

    monkeypatch.setattr(cli, "_codec", no_models)
    image = str(fixture_lfw_dir / "AJ_Cook" / "AJ_Cook_0001.jpg")
    refused = (
        ("abc", "jpeg"),
        ("0", "jpeg"),
        ("0.5", "jpeg2000"),
        ("inf", "jpeg2000"),
        ("100", "avif"),
        ("x", "learned"),
        ("99", "learned"),  # past the last quality of the family (the registry file says how many it has)
        ("0", "conditional"),
    )
    for quality, enhancement in refused:
        assert (
            cli.run(["compress", image, str(tmp_path / "a.sfc"), "--enhancement", enhancement, "--quality", quality])
            == 1
        )
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == len(refused) and all("--quality" in line for line in errors)


def test_cli_batch_keep_going_and_resume(tiny_zoo, fixture_lfw_dir, tmp_path, capsys):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("a", "c"):
        (inputs / f"{name}.jpg").write_bytes((fixture_lfw_dir / "AJ_Cook" / "AJ_Cook_0001.jpg").read_bytes())
    (inputs / "b.jpg").write_bytes(b"not an image")
    out = tmp_path / "out"
    args = ["compress", str(inputs), str(out), "--align", "center", "--enhancement", "none"]
    assert cli.run(args) == 1  # stops at the bad second input
    assert sorted(p.name for p in out.glob("*")) == ["a.sfc"]
    assert cli.run(args + ["--skip_existing", "--keep_going"]) == 1  # codes c, reports b
    assert sorted(p.name for p in out.glob("*")) == ["a.sfc", "c.sfc"]
    assert "b.jpg" in capsys.readouterr().err
    assert cli.run(args + ["--skip_existing"]) == 1 and "b.jpg" in capsys.readouterr().err


def test_cli_ctrl_c_is_one_line_and_exit_130(tiny_zoo, fixture_lfw_dir, tmp_path, capsys, monkeypatch):
    from sfc_tf.codec import ScalableCodec as Codec

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Codec, "encode", interrupted)
    image = str(fixture_lfw_dir / "AJ_Cook" / "AJ_Cook_0001.jpg")
    assert cli.run(["compress", image, str(tmp_path / "a.sfc"), "--align", "center"]) == 130
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())


def test_cli_decompress_leaves_nothing_when_it_fails(tiny_zoo, fixture_lfw_dir, tmp_path, capsys):
    image = str(fixture_lfw_dir / "AJ_Cook" / "AJ_Cook_0001.jpg")
    assert cli.run(["compress", image, str(tmp_path / "a.sfc"), "--align", "center", "--quality", "40"]) == 0
    (tmp_path / "f.npy").write_bytes(b"keep")
    assert (
        cli.run(["decompress", str(tmp_path / "a.sfc"), str(tmp_path / "a.png"), "--features", str(tmp_path / "f.npy")])
        == 1
    )
    assert not (tmp_path / "a.png").exists() and (tmp_path / "f.npy").read_bytes() == b"keep"
    data = (tmp_path / "a.sfc").read_bytes()
    (tmp_path / "bad.sfc").write_bytes(data[:-3] + bytes([data[-3] ^ 0xFF]) + data[-2:])
    assert cli.run(["decompress", str(tmp_path / "bad.sfc"), str(tmp_path / "b.png")]) == 1
    assert not (tmp_path / "b.png").exists()
    assert (
        cli.run(["decompress", str(tmp_path / "bad.sfc"), str(tmp_path / "b.png"), "--layers", "reconstruction"]) == 0
    )  # the base layer is intact


def test_spliced_files_are_refused_by_the_cli(tiny_zoo, fixture_lfw_dir, tmp_path, capsys):
    images = [
        str(fixture_lfw_dir / "AJ_Cook" / "AJ_Cook_0001.jpg"),
        str(fixture_lfw_dir / "Abel_Pacheco" / "Abel_Pacheco_0001.jpg"),
    ]
    assert cli.run(["compress", *images, str(tmp_path), "--align", "center"]) == 0
    a, b = (bitstream.unpack((tmp_path / name).read_bytes()) for name in ("AJ_Cook_0001.sfc", "Abel_Pacheco_0001.sfc"))
    (tmp_path / "x.sfc").write_bytes(
        bitstream.pack(dataclasses.replace(a, enhancement=b.enhancement))[:-4]
        + (tmp_path / "Abel_Pacheco_0001.sfc").read_bytes()[-4:]
    )
    assert cli.run(["decompress", str(tmp_path / "x.sfc"), str(tmp_path / "x.png")]) == 1
    assert "spliced" in capsys.readouterr().err
