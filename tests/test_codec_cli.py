"""The scalable codec end to end (modes, mode decision, layers, binding, batches) and the sfc command line, with
the shipped base layers and untrained stand-in networks (``tiny_zoo``), so the tests do not depend on training."""

import dataclasses
import json
import os
import pathlib
import stat
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from sfc_tf import bitstream, cli, metrics
from sfc_tf.bitstream import MEAN_FACE, MMSE, NO_PREDICTION, RECONSTRUCTION
from sfc_tf.codec import ScalableCodec
from sfc_tf.enhancement import decision, minmax, registry
from sfc_tf.errors import AuthenticationError, BitstreamError, ModelMismatchError


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


def test_api_defaults_are_documented_and_one_crop_needs_its_batch_axis(codec, fixture_crops):
    """encode's default differs from sfc compress's (base only, not jpeg): its docstring says so and why; decode's
    matches sfc decompress's (full); a crop without its batch axis gets a one-line error, not a shape mismatch."""
    import inspect

    from sfc_tf import cli

    parser = cli.build_parser()
    assert parser.parse_args(["compress", "in.jpg", "out.sfc"]).enhancement == "jpeg"
    assert parser.parse_args(["decompress", "in.sfc", "out.png"]).layers == "full"
    for method in (ScalableCodec.encode, ScalableCodec.encode_crops, ScalableCodec.decode):
        assert "Args:" in method.__doc__ and "Returns:" in method.__doc__
    assert inspect.signature(ScalableCodec.encode).parameters["enhancement"].default == "none"
    assert "sfc compress" in ScalableCodec.encode.__doc__ and "--enhancement jpeg" in ScalableCodec.encode.__doc__
    assert inspect.signature(ScalableCodec.decode).parameters["layers"].default == "full"
    with pytest.raises(ValueError, match=r"crops must be a batch \(N, H, W, 3\), not shape \(160, 160, 3\)"):
        codec.encode_crops(fixture_crops[0])


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
    from sfc_tf.reconstruction import reconstructor

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


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--enhancement", "jpeg", "--quality", "abc"], "--quality: jpeg quality must be"),
        (["--enhancement", "conditional", "--quality", "99"], "--quality: conditional quality must be"),
    ],
    ids=["jpeg", "learned"],
)
def test_bad_arguments_fail_before_tensorflow_loads(flags, message, fixture_lfw_dir, tmp_path):
    """A bad argument is one line on stderr, found before TensorFlow (seconds of start-up) is imported."""
    image = str(fixture_lfw_dir / "AJ_Cook" / "AJ_Cook_0001.jpg")
    script = (
        "import sys\nfrom sfc_tf import cli\n"
        f"code = cli.run(['compress', {image!r}, {str(tmp_path / 'x.sfc')!r}, *{flags!r}])\n"
        "print('tensorflow' in sys.modules, code)"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.stdout.split() == ["False", "1"]
    assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr


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

    monkeypatch.setattr(Codec, "encode_crops", interrupted)
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


# -- outputs, errors that say where, authenticated files, a quiet start ------------------------------------------

KEY = bytes(range(32))


def test_cli_outputs_follow_the_umask(tiny_zoo, fixture_lfw_dir, tmp_path):
    image = str(fixture_lfw_dir / "AJ_Cook" / "AJ_Cook_0001.jpg")
    previous = os.umask(0o022)
    try:
        for umask in (0o022, 0o027, 0o002):
            os.umask(umask)
            out = tmp_path / f"{umask:03o}"
            assert cli.run(["compress", image, str(out / "a.sfc"), "--align", "center"]) == 0
            assert (
                cli.run(["decompress", str(out / "a.sfc"), str(out / "a.png"), "--features", str(out / "f.npy")]) == 0
            )
            assert cli.run(["strip", str(out / "a.sfc"), str(out / "b.sfc")]) == 0
            assert cli.run(["index", str(out / "a.sfc"), str(out / "i.npz")]) == 0
            for name in ("a.sfc", "a.png", "f.npy", "b.sfc", "i.npz"):
                assert stat.S_IMODE((out / name).stat().st_mode) == 0o666 & ~umask, name
            assert sorted(p.name for p in out.iterdir()) == ["a.png", "a.sfc", "b.sfc", "f.npy", "i.npz"]
    finally:
        os.umask(previous)


def test_cli_write_errors_name_the_file(tiny_zoo, fixture_lfw_dir, tmp_path, capsys):
    data = codec_file(fixture_lfw_dir)
    (tmp_path / "a.sfc").write_bytes(data)
    (tmp_path / "taken").mkdir()
    assert cli.run(["strip", str(tmp_path / "a.sfc"), str(tmp_path / "taken"), "--overwrite"]) == 1
    assert capsys.readouterr().err.strip() == f"sfc strip: cannot write {tmp_path / 'taken'}: Is a directory"
    script = (
        "import resource, signal, sys\n"
        "from sfc_tf import cli\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (10, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))\n"
        "sys.exit(cli.run(sys.argv[1:]))\n"
    )  # a file system that takes 10 bytes: the write fails half way, as on a full disk
    target = tmp_path / "small" / "b.sfc"
    result = subprocess.run(
        [sys.executable, "-c", script, "strip", str(tmp_path / "a.sfc"), str(target)], capture_output=True, text=True
    )
    assert (result.returncode, result.stderr) == (1, f"sfc strip: cannot write {target}: File too large\n")
    assert list((tmp_path / "small").iterdir()) == []  # no partial file, no temporary left behind


def codec_file(fixture_lfw_dir) -> bytes:
    codec = ScalableCodec.from_pretrained(align="center")
    return codec.encode(fixture_lfw_dir / "AJ_Cook" / "AJ_Cook_0001.jpg", "jpeg", 50)


def damaged_range_payload(codec, data: bytes) -> bytes:
    """``data`` with a byte of its base payload changed and the CRCs resealed, chosen so that range decoding fails."""
    from sfc_tf.evaluation import fuzzing

    for position in range(3, bitstream.base_part_bytes(data) - 2):
        bad = bytearray(data)
        bad[position] ^= 0xFF
        bad = fuzzing.reseal(bytes(bad))
        try:
            codec.decode(bad, "base")
        except BitstreamError:
            return bad
    raise AssertionError("no single-byte change breaks the range decoding of this file")


def test_decode_errors_name_the_file_in_a_batch(codec, analysis):
    files = codec.encode_analysis(analysis).files
    bad = damaged_range_payload(codec, files[3])
    with pytest.raises(BitstreamError, match=r"^files\[3\]: base-layer records \[0\]"):
        codec.decode_many(files[:3] + [bad] + files[4:], "base")
    with pytest.raises(BitstreamError, match=r"^x\.sfc: base layer CRC mismatch"):
        codec.decode_many([files[0][:-1] + b"\x00"], "base", names=["x.sfc"])
    with pytest.raises(BitstreamError, match=r"^base-layer records \[0\]"):
        codec.decode(bad, "base")  # one file, no name: the reason alone


def test_cli_index_and_decompress_name_a_bad_file(tiny_zoo, fixture_lfw_dir, tmp_path, capsys):
    codec = ScalableCodec.from_pretrained(align="center")
    images = sorted(fixture_lfw_dir.glob("*/*.jpg"))
    gallery = tmp_path / "gallery"
    for image, data in zip(images, codec.encode_crops(np.stack([codec.crop(p) for p in images]))):
        (gallery / image.parent.name).mkdir(parents=True, exist_ok=True)
        (gallery / image.parent.name / f"{image.stem}.sfc").write_bytes(data)
    victim = sorted(gallery.rglob("*.sfc"))[2]
    victim.write_bytes(damaged_range_payload(codec, victim.read_bytes()))
    assert cli.run(["index", str(gallery), str(tmp_path / "index.npz")]) == 1
    assert capsys.readouterr().err.startswith(f"sfc index: {victim}: base-layer records")
    assert cli.run(["decompress", str(victim), str(tmp_path / "x.png"), "--layers", "reconstruction"]) == 1
    assert capsys.readouterr().err.startswith(f"sfc decompress: {victim}: base-layer records")
    data = victim.read_bytes()
    victim.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    assert cli.run(["index", str(gallery), str(tmp_path / "index.npz")]) == 1
    assert capsys.readouterr().err.strip() == f"sfc index: {victim}: base layer CRC mismatch (corrupt file)"


def test_a_failed_learned_decode_says_why_on_one_line(codec, analysis):
    sfc = bitstream.unpack(codec.encode_analysis(analysis, "learned", 1, "reconstruction").files[0])
    longer = dataclasses.replace(
        sfc.enhancement, payload=sfc.enhancement.payload + bytes(8)
    )  # decoded short of its end
    with pytest.raises(BitstreamError) as error:
        codec.decode(bitstream.pack(dataclasses.replace(sfc, enhancement=longer)), "full")
    assert str(error.value) == (
        "learned-codec range decoding failed: the range decoder did not end at the payload's end (a damaged "
        "payload, or one this model did not code)"
    )


def test_op_error_reasons_are_one_line():
    from sfc_tf.errors import op_error_reason

    graph = (
        'Graph execution error:\n\nDetected at node foo defined at (most recent call last):\n  File "a.py", line 1,'
        ' in <module>\n\n  File "b.py", line 2, in f\n\nInput is empty.\n\t [[{{node foo}}]] [Op:__inference_f_12]'
    )
    assert op_error_reason(graph) == "Input is empty."
    assert op_error_reason("{{function_node __wrapped__X_device_/job:0}} Bad shape [Op:X]") == "Bad shape"
    assert "payload's end" in op_error_reason("... [Sanity check failed.] [Condition x == y ...")


def test_authenticated_files_are_checked_before_any_decoding(tiny_zoo, analysis, monkeypatch):
    keyed = ScalableCodec.from_pretrained(align="center", key=KEY)
    plain = ScalableCodec.from_pretrained(align="center")
    one = analysis.slice(0, 1)
    data = keyed.encode_analysis(one, "jpeg", 50, "mean_face").files[0]
    same = plain.encode_analysis(one, "jpeg", 50, "mean_face").files[0]
    assert bitstream.is_authenticated(data) and len(data) == len(same) + 16
    assert bitstream.unpack(data, KEY) == bitstream.unpack(same)
    np.testing.assert_array_equal(keyed.decode(data).image, plain.decode(same).image)
    with pytest.raises(AuthenticationError, match="give its key"):
        plain.decode(data, "base")
    with pytest.raises(AuthenticationError, match="not authenticated"):
        keyed.decode(same, "base")

    def decoding(*args):
        raise AssertionError("a changed file reached the decoder")

    monkeypatch.setattr(keyed, "_decode_parsed", decoding)
    base = keyed.encode_analysis(one).files[0]
    for i in range(len(base)):  # every single-byte change of a base-only file, at every layer
        for value in set(range(256)) - {base[i]}:
            with pytest.raises(BitstreamError):
                keyed.decode(base[:i] + bytes([value]) + base[i + 1 :], ("base", "reconstruction", "full")[value % 3])
    rng = np.random.default_rng(3)
    for _ in range(3000):  # random multi-byte changes of a file with an enhancement layer
        bad = np.frombuffer(data, np.uint8).copy()
        where = rng.choice(len(bad), int(rng.integers(1, 9)), replace=False)
        bad[where] ^= rng.integers(1, 256, len(where)).astype(np.uint8)
        with pytest.raises(BitstreamError):
            keyed.decode(bad.tobytes(), "full")


def test_cli_key_file(tiny_zoo, fixture_lfw_dir, tmp_path, capsys, monkeypatch):
    image = str(fixture_lfw_dir / "AJ_Cook" / "AJ_Cook_0001.jpg")
    key, wrong = tmp_path / "face.key", tmp_path / "other.key"
    key.write_bytes(KEY)
    wrong.write_bytes(bytes(32))
    a, b = str(tmp_path / "a.sfc"), str(tmp_path / "b.sfc")
    assert cli.run(["compress", image, a, "--align", "center", "--key_file", str(key)]) == 0
    assert bitstream.is_authenticated(pathlib.Path(a).read_bytes())
    capsys.readouterr()
    for args, message in [
        (["decompress", a, str(tmp_path / "x.png")], "the file is authenticated: give its key"),
        (["decompress", a, str(tmp_path / "x.png"), "--key_file", str(wrong)], "tag does not verify"),
        (["strip", a, b], "stripping it needs its key"),
        (["compare", a, a], "the file is authenticated: give its key"),
        (["index", a, str(tmp_path / "i.npz"), "--key_file", str(wrong)], "tag does not verify"),
    ]:
        assert cli.run(args) == 1
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and a in err and message in err, err
    assert cli.run(["decompress", a, str(tmp_path / "x.png"), "--key_file", str(key)]) == 0
    assert cli.run(["strip", a, b, "--key_file", str(key)]) == 0
    assert bitstream.unpack(pathlib.Path(b).read_bytes(), KEY).enhancement is None
    capsys.readouterr()
    assert cli.run(["info", a]) == 0
    unchecked = json.loads(capsys.readouterr().out)
    assert unchecked["authenticated"] and not unchecked["tag_verified"] and unchecked["format_version"] == 4
    assert cli.run(["info", a, "--key_file", str(key)]) == 0 and json.loads(capsys.readouterr().out)["tag_verified"]
    monkeypatch.setattr(cli, "_codec", lambda *args: pytest.fail("models were loaded"))
    (tmp_path / "short.key").write_bytes(b"0123456789")
    for bad_key, message in [(tmp_path / "short.key", "holds 10 bytes"), (tmp_path / "none.key", "cannot read")]:
        assert cli.run(["compress", image, str(tmp_path / "c.sfc"), "--key_file", str(bad_key)]) == 1
        assert message in capsys.readouterr().err


def test_cli_starts_quietly(shipped_checkpoints, fixture_lfw_dir, tmp_path):
    """compress and decompress in a fresh process print nothing on stderr (TensorFlow's start-up lines, absl's
    warnings), unless asked to; the learned codec's model is the one that logged an absl warning."""
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "SFC_TF_VERBOSE")}
    image = str(fixture_lfw_dir / "Abel_Pacheco" / "Abel_Pacheco_0001.jpg")
    sfc = str(tmp_path / "a.sfc")

    def sfc_command(*args):
        return subprocess.run([sys.executable, "-m", "sfc_tf.cli", *args], capture_output=True, text=True, env=env)

    for args in (["compress", image, sfc, "--enhancement", "learned"], ["decompress", sfc, str(tmp_path / "a.png")]):
        result = sfc_command(*args)
        assert result.returncode == 0 and result.stderr == "", result.stderr
    verbose = sfc_command("decompress", sfc, str(tmp_path / "b.png"), "--verbose")
    assert verbose.returncode == 0 and "tensorflow" in verbose.stderr


def test_cli_decompresses_many_files_as_one_at_a_time(tiny_zoo, fixture_lfw_dir, tmp_path, capsys):
    images = sorted(str(p) for p in fixture_lfw_dir.glob("*/*.jpg"))[:3]
    coded = tmp_path / "coded"
    assert cli.run(["compress", *images, str(coded), "--align", "center", "--quality", "60"]) == 0
    assert cli.run(["decompress", str(coded), str(tmp_path / "faces")]) == 0
    for file in sorted(coded.glob("*.sfc")):
        assert cli.run(["decompress", str(file), str(tmp_path / f"{file.stem}.png")]) == 0
        together, alone = (
            np.asarray(Image.open(p)) for p in (tmp_path / "faces" / f"{file.stem}.png", tmp_path / f"{file.stem}.png")
        )
        assert np.abs(together.astype(int) - alone).max() <= 1  # batch and single decoding: within a grey level
    assert cli.run(["decompress", str(coded), str(tmp_path / "x"), "--features", str(tmp_path / "f.npy")]) == 1
    assert "give one input" in capsys.readouterr().err
    names = sorted(coded.glob("*.sfc"))
    names[1].write_bytes(names[1].read_bytes()[:-1] + b"\x00")
    assert cli.run(["decompress", str(coded), str(tmp_path / "again")]) == 1
    error = capsys.readouterr().err
    assert error.startswith(f"sfc decompress: {names[1]}: ") and "CRC" in error and len(error.splitlines()) == 1
    assert sorted(p.name for p in (tmp_path / "again").iterdir()) == [f"{names[0].stem}.png"]
